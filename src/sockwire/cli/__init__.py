"""The ``sockwire`` command: argparse subcommands over the library.

Each command is one module with ``HELP``, ``add_arguments(parser)`` and
``run(args) -> int``; only the chosen command's module is imported, so
``sockwire --help`` starts fast.
"""
