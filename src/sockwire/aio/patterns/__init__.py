"""The messaging patterns for asyncio: req/rep, pub/sub, push/pull over asyncio Channels.

The same sans-IO cores, wire format and statistics as :mod:`sockwire.patterns`
(sync and async nodes talk to each other); the driver is :mod:`.node`.
"""

from __future__ import annotations

from ...patterns.link import Liveness
from ...patterns.pubsub import Policy, PubStats, SubscriberStats, SubStats
from ...patterns.pushpull import PullStats, PushStats
from ...patterns.reqrep import RepStats, ReqStats
from .pubsub import Pub, Sub
from .pushpull import Pull, Push
from .reqrep import Rep, Req

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
