"""Messaging patterns over Channels: req/rep, pub/sub, push/pull.

Each pattern is a sans-IO state machine (``ReqCore``, ``PubCore``, ...; the
transition tables are at the top of each module) driven by the blocking
driver in :mod:`.driver`; the wire format is :mod:`.wire` (docs/PROTOCOL.md
sections 7 and 8). The bound side (Rep, Pub, Push) serves many peers; the
connecting side (Req, Sub, Pull) reconnects with backoff. Heartbeats
(:class:`Liveness`) declare a silent peer dead; every queue has a bound.
Endpoints: ``unix:``, ``unix+seqpacket:``, ``tcp://`` (and ``tls+tcp://``,
or ``?authfile=``, through the security seam); req/rep also over
``unix+dgram:`` and ``udp://``.
"""

from __future__ import annotations

from .link import Liveness
from .pubsub import Policy, Pub, PubStats, Sub, SubscriberStats, SubStats
from .pushpull import Pull, PullStats, Push, PushStats
from .reqrep import Rep, RepStats, Req, ReqStats

__all__ = [
    "Liveness",
    "Policy",
    "Pub",
    "PubStats",
    "Pull",
    "PullStats",
    "Push",
    "PushStats",
    "Rep",
    "RepStats",
    "Req",
    "ReqStats",
    "Sub",
    "SubStats",
    "SubscriberStats",
]
