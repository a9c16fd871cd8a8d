"""sockwire's own contenders: Channels over each transport, and the relay command.

Kept apart from the peers so each side is easy to read. A contender that
this checkout cannot run yet is reported as missing, never silently dropped.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Sequence

from .harness import Case

__all__ = ["channel", "relay_command"]


def _channel_missing() -> str | None:
    if importlib.util.find_spec("sockwire.channel") is None:
        return "sockwire.channel is not in this checkout yet"
    return None


def channel(transport: str, *, one_core: bool = False) -> Case:
    """A sockwire Channel over ``transport``: unix, seqpacket, dgram, tcp or udp."""
    suffix = " (one core)" if one_core else ""
    key = f"sockwire-{transport}" + ("-1core" if one_core else "")
    return Case(
        key,
        f"sockwire Channel, {transport}{suffix}",
        "sockwire",
        make=None,
        missing=_channel_missing,
        one_core=one_core,
    )


def _relay_missing() -> str | None:
    from ..cli.main import COMMANDS

    return None if "relay" in COMMANDS else "`sockwire relay` is not in this checkout yet"


def relay_command(path: str, port: int) -> Sequence[str]:
    return [sys.executable, "-m", "sockwire", "relay", f"unix:{path}", f"tcp://127.0.0.1:{port}"]


relay_missing = _relay_missing
