"""Channel: whole messages over any socket type, as a sans-IO core and drivers.

* :mod:`.core`: state, queues, framing state and read deadlines, pure (the
  state table is at its top);
* :mod:`.seam`: the I/O seams (plain, traced, TLS), waiting and the clock;
* :mod:`.blocking`: :class:`Channel`, the blocking driver (one receive loop);
* :mod:`.pipes`: :func:`pipe`, two Channels over a socketpair (the module is not
  called ``pipe``: it would shadow the function).

An asyncio driver is new files over the same core.
"""

from ..packet import MAX_PACKET, DatagramStats
from .blocking import Channel
from .core import CLOSE_TIMEOUT, FLUSH_AT, ChannelCore, Kind, ReadLimits, ReadTimer, State
from .pipes import pipe
from .seam import ChannelIO, SocketIO, TLSSocketIO, TracedSocketIO

__all__ = [
    "CLOSE_TIMEOUT",
    "FLUSH_AT",
    "MAX_PACKET",
    "Channel",
    "ChannelCore",
    "ChannelIO",
    "DatagramStats",
    "Kind",
    "ReadLimits",
    "ReadTimer",
    "SocketIO",
    "State",
    "TLSSocketIO",
    "TracedSocketIO",
    "pipe",
]
