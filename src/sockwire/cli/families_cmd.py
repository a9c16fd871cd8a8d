"""``sockwire families``: the address families this kernel supports, probed live."""

from __future__ import annotations

import argparse
import json
import sys

HELP = "the address families this kernel supports"


DESCRIPTION = """\
Probe every address family with socket() for each type (stream, dgram,
seqpacket, raw) and list those this kernel knows: what works, and which
need a capability (EPERM/EACCES). --all adds the families it lacks. Raw
INET sockets are probed with a real protocol (ICMP; protocol 0 is refused
even for root); a type the kernel silently turns into another (AF_UNIX
SOCK_RAW becomes SOCK_DGRAM) is not listed as working.

--json: {"families": [{"number", "name", "supported", "needs_capability",
"types": {"SOCK_STREAM": "ok", the errno name, or "is SOCK_DGRAM", ...}}]}.
Exit status 0 (the probe itself cannot fail); 2 for bad arguments.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = DESCRIPTION
    parser.add_argument("--json", action="store_true", help="one JSON document")
    parser.add_argument(
        "--all", action="store_true", help="also list the families this kernel lacks"
    )


def run(args: argparse.Namespace) -> int:
    from ..sock import families

    infos = families(include_unsupported=args.all)
    if args.json:
        doc = [
            {
                "number": f.number,
                "name": f.name,
                "supported": f.supported,
                "needs_capability": f.needs_capability,
                "types": f.types,
            }
            for f in infos
        ]
        json.dump({"families": doc}, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    width = max((len(f.name) for f in infos), default=10)
    for f in infos:
        if not f.supported:
            status = "not supported by this kernel"
        elif f.needs_capability:
            status = "needs a capability: " + ", ".join(
                f"{t} {e}" for t, e in f.types.items() if e != "EAFNOSUPPORT"
            )
        else:
            status = ", ".join(t.removeprefix("SOCK_") for t, e in f.types.items() if e == "ok")
        print(f"{f.number:>3}  {f.name:<{width}}  {status}")
    return 0
