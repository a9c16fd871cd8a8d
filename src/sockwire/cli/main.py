"""Entry point: parse arguments, run one command, turn errors into one line and an exit code.

Nothing here imports a command's module until that command is chosen, and
nothing of the library until a command runs: ``sockwire --help`` and
``sockwire CMD --help`` cost argparse and little else
(``tests/test_cli_startup.py`` holds the list of what they may not import).
Under ``--json`` every line on stderr is one JSON object (``observe.JsonStderr``).
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, NoReturn

from .._version import __version__
from .exitcodes import EPILOG, Exit

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from types import ModuleType

__all__ = ["COMMANDS", "build_parser", "main"]

# name -> (module, one-line help). Later issues add their commands here.
COMMANDS: dict[str, tuple[str, str]] = {
    "tour": ("sockwire.cli.tour_cmd", "the live tour: every socket concept, observed and checked"),
    "families": ("sockwire.cli.families_cmd", "the address families this kernel supports"),
    "listen": (
        "sockwire.cli.listen_cmd",
        "accept a peer (or receive datagrams) and bridge it to stdin/stdout, like nc -l",
    ),
    "connect": (
        "sockwire.cli.connect_cmd",
        "connect and bridge stdin/stdout to a socket, like nc",
    ),
    "relay": (
        "sockwire.cli.relay_cmd",
        "accept on one endpoint and connect each client to another, both ways",
    ),
    "send": ("sockwire.cli.send_cmd", "send messages to a datagram or seqpacket endpoint"),
    "recv": (
        "sockwire.cli.recv_cmd",
        "receive messages and show each one's sender, length, flags and truncation",
    ),
    "echo": ("sockwire.cli.echo_cmd", "an echo server for any endpoint, for testing peers"),
    "inspect": (
        "sockwire.cli.inspect_cmd",
        "the machine's sockets with their processes, or whether a socket file is live",
    ),
    "scan": (
        "sockwire.cli.scan_cmd",
        "which TCP ports of a host accept a connection, like nc -z, concurrently",
    ),
    "route": (
        "sockwire.cli.route_cmd",
        "links, addresses and routes from a NETLINK_ROUTE dump, like ip addr / ip route",
    ),
    "ping": (
        "sockwire.cli.ping_cmd",
        "ICMP echo over a raw or ICMP datagram socket, with checksums and RTT statistics",
    ),
    "bench": (
        "sockwire.cli.bench_cmd",
        "benchmarks: sockwire against stdlib, multiprocessing, pyzmq, socat, C",
    ),
}


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors use the one-line ``sockwire: ...`` form."""

    def error(self, message: str) -> NoReturn:
        if _json_run():
            _line("error", message, exit=int(Exit.USAGE))
        else:
            from ..escape import one_line

            self.print_usage(sys.stderr)
            sys.stderr.write(f"sockwire: {one_line(message)}\n")
        raise SystemExit(Exit.USAGE)


def _load(name: str) -> ModuleType:
    import importlib

    return importlib.import_module(COMMANDS[name][0])


def build_parser(chosen: str | None = None) -> argparse.ArgumentParser:
    """The parser; only ``chosen`` (if any) gets its module imported for arguments."""
    parser = _Parser(
        prog="sockwire",
        description="Socket IPC on Linux, made visible: endpoints, every socket type, "
        "framing, credentials, and a tour of how sockets really behave.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"sockwire {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, (_, help_text) in COMMANDS.items():
        command = sub.add_parser(
            name,
            help=help_text,
            description=help_text,
            epilog=EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        if name == chosen:
            module = _load(name)
            module.add_arguments(command)
            command.set_defaults(run=module.run)
            # a command whose last positional takes many values (send MSG ...) also gets
            # those after an option: argparse alone stops at the first option
            command.set_defaults(_more=getattr(module, "MORE_POSITIONALS", None))
    return parser


def _chosen(argv: Sequence[str]) -> str | None:
    for arg in argv:
        if arg in COMMANDS:
            return arg
        if not arg.startswith("-"):
            return None
    return None


def _install_log_handler() -> Callable[[], None]:
    """The library's warnings (a refused peer, say) as ``sockwire:`` lines, for this run.

    Each record is one inert line: the library escapes names it logs, and
    the line writer catches whatever else another user could have put in a
    message; under --json, one JSON object. A peer can cause one record per
    connection (another user connecting in a loop to an ``?allowed_uids=``
    server), so records are rate-limited per message template and never
    wait for stderr (:func:`sockwire.cli.observe.limited`). Returns the
    undo: main() also runs inside other programs (tests).
    """
    import logging

    class OneLine(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            try:
                from .observe import limited

                level = record.levelname.lower()
                limited("log", record.getMessage(), f"log:{record.msg}", level=level)
            except Exception:  # noqa: BLE001  # logging's own rule: report, never raise
                self.handleError(record)

    logger = logging.getLogger("sockwire")
    handler = OneLine()
    saved = (logger.level, logger.propagate)
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)
    logger.propagate = False

    def undo() -> None:
        _flush_limited()
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]

    return undo


def main(argv: Sequence[str] | None = None) -> int:
    """Run the sockwire command line; returns the exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    restore = _json_stderr() if _wants_json(args_list) else None
    try:
        return _main(args_list)
    finally:
        if restore is not None:
            restore()


def _wants_json(args: list[str]) -> bool:
    """``--json`` among the options (before a ``--``): every stderr line is JSON."""
    end = args.index("--") if "--" in args else len(args)
    return "--json" in args[:end]


def _json_run() -> bool:
    """Is this a --json run? (observe is imported only by runs that need it.)"""
    observe = sys.modules.get("sockwire.cli.observe")
    return observe is not None and bool(observe.json_mode())


def _line(event: str, text: str, **fields: object) -> None:
    from .observe import line

    line(event, text, **fields)


def _json_stderr() -> Callable[[], None]:
    """sys.stderr becomes a JsonStderr for this run; returns the undo."""
    from .observe import JsonStderr, set_json_mode

    saved = sys.stderr
    wrapper = JsonStderr(saved)
    sys.stderr = wrapper
    set_json_mode(True)

    def restore() -> None:
        set_json_mode(False)
        sys.stderr = saved
        wrapper.close()

    return restore


def _main(args_list: list[str]) -> int:
    try:
        parser = build_parser(_chosen(args_list))
        args, extra = parser.parse_known_args(args_list)  # --help exits here
        more = getattr(args, "_more", None)
        if extra and more and not any(e.startswith("-") and e != "-" for e in extra):
            setattr(args, more, [*getattr(args, more), *extra])
        elif extra:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        if getattr(args, "run", None) is None:
            parser.print_help(sys.stderr)
            return Exit.USAGE
    except (KeyboardInterrupt, Exception) as exc:  # noqa: BLE001  # every kind is mapped
        return _failed(exc)
    undo = _install_log_handler()
    try:
        return int(args.run(args))
    except (KeyboardInterrupt, Exception) as exc:  # noqa: BLE001  # every kind is mapped
        _flush_limited()  # before the error: it is the last line
        return _failed(exc)
    finally:
        undo()


def _flush_limited() -> None:
    """Write what the report lines' rate limit held back (counted), if a command used it."""
    observe = sys.modules.get("sockwire.cli.observe")
    if observe is not None:
        observe.flush_limited(everything=True)


def _failed(exc: BaseException) -> int:
    """One line and the exit code for what ended a command; anything else is a bug: raised."""
    from ..errors import SockwireError
    from .exitcodes import for_error

    if isinstance(exc, KeyboardInterrupt):
        if _json_run():
            _line("interrupted", "interrupted (Ctrl-C)", exit=int(Exit.INTERRUPTED))
        else:
            import contextlib

            with contextlib.suppress(OSError):
                sys.stderr.write("\n")
        return Exit.INTERRUPTED
    if isinstance(exc, BrokenPipeError):
        _silence_stdout()
        return Exit.BROKEN_PIPE
    if isinstance(exc, SockwireError):
        code = for_error(exc)
        fields = {"what": exc.what, "errno": exc.errno_name, "hint": exc.hint}
        _line("error", str(exc), kind=type(exc).__name__, exit=int(code), **fields)
        return code
    if isinstance(exc, OSError):  # stdin/stdout/file trouble outside a socket call
        name = exc.strerror or type(exc).__name__
        where = f" {exc.filename}" if exc.filename else ""
        _line("error", f"{name}{where}", exit=int(Exit.IO))
        return Exit.IO
    raise exc


def _silence_stdout() -> None:
    # The reader went away; point stdout at /dev/null so the interpreter's
    # final flush does not raise a second BrokenPipeError at exit.
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
