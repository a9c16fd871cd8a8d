"""``python -m sockwire``: the same as the ``sockwire`` command."""

from .cli.main import main

raise SystemExit(main())
