"""``sockwire bench``: sockwire and its peers side by side in one run, with ratios."""

from __future__ import annotations

import argparse
import json
import sys

from .exitcodes import Exit

HELP = "benchmarks: sockwire against stdlib, multiprocessing, pyzmq, socat, C, asyncio streams"

SUITE_NAMES = ("latency", "throughput", "relay", "memory", "startup", "zmtp", "async")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "suites", nargs="*", metavar="SUITE", help=f"suites to run: {', '.join(SUITE_NAMES)}"
    )
    parser.add_argument("--quick", action="store_true", help="small counts (under 30 s in all)")
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    parser.add_argument("--plot", metavar="FILE.png", help="draw the ratios (needs matplotlib)")
    parser.add_argument(
        "--rounds", type=int, default=None, help="interleaved rounds per case (default 5; 2 quick)"
    )


def run(args: argparse.Namespace) -> int:
    from ..bench import report
    from ..bench.harness import run_suite
    from ..bench.suites import build

    unknown = [name for name in args.suites if name not in SUITE_NAMES]
    if unknown:
        sys.stderr.write(
            f"sockwire: unknown suite {unknown[0]!r}; valid: {', '.join(SUITE_NAMES)}\n"
        )
        return Exit.USAGE
    rounds = args.rounds if args.rounds is not None else (2 if args.quick else 5)
    if not 1 <= rounds <= 50:
        sys.stderr.write("sockwire: --rounds must be from 1 to 50\n")
        return Exit.USAGE
    tty = sys.stderr.isatty()

    def progress(line: str) -> None:
        if tty:
            sys.stderr.write(f"\r\033[K{line}")
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    results = [
        run_suite(suite, quick=args.quick, rounds=rounds, progress=progress)
        for suite in build(args.suites)
    ]
    if tty:
        sys.stderr.write("\r\033[K")
    if args.json:
        doc = {
            "machine": report.machine(),
            "quick": args.quick,
            "rounds": rounds,
            "suites": {r.suite.name: r.to_dict() for r in results},
        }
        json.dump(doc, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        report.text(results, sys.stdout, rounds)
    if args.plot:
        report.plot(results, args.plot)
    return Exit.OK
