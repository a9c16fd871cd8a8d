"""``sockwire tour``: every claim of the seeds, demonstrated live and checked."""

from __future__ import annotations

import argparse
import os
import sys

from .exitcodes import Exit

HELP = "the live tour: every socket concept, observed and checked"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    parser.add_argument(
        "--only", nargs="+", metavar="ID", help="run only these stops (see --list)"
    )
    parser.add_argument("--list", action="store_true", help="list the stops and exit")
    parser.add_argument(
        "--brief", action="store_true", help="one line per stop (no syscalls or observations)"
    )
    parser.add_argument(
        "--color",
        choices=("auto", "always", "never"),
        default="auto",
        help="colour the verdicts (default: only on a terminal)",
    )


def run(args: argparse.Namespace) -> int:
    from ..tour.render import Human, dump_json
    from ..tour.runner import run_stops, select_stops

    try:
        specs = select_stops(args.only)
    except KeyError as exc:
        known = ", ".join(s.id for s in select_stops())
        sys.stderr.write(f"sockwire: unknown tour stop {exc.args[0]!r}; valid: {known}\n")
        return Exit.USAGE
    if args.list:
        width = max(len(s.id) for s in specs)
        for spec in specs:
            print(f"{spec.id:<{width}}  {spec.title}")
        return Exit.OK
    results = []
    if args.json:
        results = list(run_stops(specs))
        dump_json(results, sys.stdout)
    else:
        colour = args.color == "always" or (
            args.color == "auto" and sys.stdout.isatty() and "NO_COLOR" not in os.environ
        )
        human = Human(
            sys.stdout,
            colour=colour,
            brief=args.brief,
            total=len(specs),
            width=max(len(s.id) for s in specs),
        )
        count = "1 stop," if len(specs) == 1 else f"{len(specs)} stops, each"
        print(
            f"sockwire tour: {count} between real processes "
            f"(pid {os.getpid()}, uid {os.getuid()})\n"
        )
        for result in run_stops(specs):
            results.append(result)
            human.stop(result)
        human.finish(results)
    return Exit.IO if any(r.result == "fail" for r in results) else Exit.OK
