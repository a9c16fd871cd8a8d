"""UsageError: kept apart so that :mod:`.exitcodes` stays free of the error tree."""

from __future__ import annotations

from ..errors import SockwireError

__all__ = ["UsageError"]


class UsageError(SockwireError):
    """The command line asks for something that cannot work: fix the arguments.

    For mistakes argparse cannot see alone (a flag that does not fit the
    endpoint's type, a message command on a byte stream without framing).
    """
