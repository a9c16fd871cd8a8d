"""Domains: the address families, and what a name means in UNIX and INET."""

from __future__ import annotations

import contextlib

from ...errors import UnsupportedError
from ...sock import Socket, families
from ..stop import Stop, stop


@stop(
    "families",
    title="Domains: the address families this kernel really supports",
    claim="Domains (>23 families): UNIX, INET, and others (SNA, DECnet, AppleTalk, X25, "
    "IPX, ROUTE).",
)
def families_stop(t: Stop) -> None:
    every = families(include_unsupported=True)
    present = [f for f in every if f.supported]
    t.observe(
        f"Linux numbers {len(every)} address families (AF_UNIX=1 .. AF_MCTP=45); "
        f"socket() on this kernel knows {len(present)} of them: "
        + ", ".join(f.name for f in present)
    )
    for name in ("AF_SNA", "AF_DECnet", "AF_APPLETALK", "AF_X25", "AF_IPX"):
        info = next(f for f in every if f.name == name)
        verdict = "supported" if info.supported else "EAFNOSUPPORT: not built into this kernel"
        t.observe(f"{name} ({info.number}): {verdict}")
    for family, kind in ((1, 1), (2, 1), (16, 3), (12, 5)):  # UNIX, INET, NETLINK, DECnet
        # the syscall line shows EAFNOSUPPORT for DECnet; the observation is above
        with contextlib.suppress(UnsupportedError):
            Socket(family, kind).close()
    capped = [f.name for f in present if f.needs_capability]
    if capped:
        t.observe("present but needing a capability here (EPERM): " + ", ".join(capped))
    names = {f.name for f in present}
    t.check(len(every) > 23, "more than 23 families in the API")
    t.check(
        {"AF_UNIX", "AF_INET", "AF_NETLINK"} <= names,
        "UNIX, INET and NETLINK (the ROUTE domain) to be supported",
    )
