"""Show tour results: aligned text for people (colour only on a terminal), JSON for machines."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterable
from typing import Any, TextIO

from .runner import StopResult

__all__ = ["Human", "summary", "to_json"]

_COLOURS = {"pass": "\033[32m", "fail": "\033[31;1m", "skip": "\033[33m"}
_RESET = "\033[0m"
_DIM = "\033[2m"


def summary(results: Iterable[StopResult]) -> dict[str, int]:
    counts = {"pass": 0, "fail": 0, "skip": 0}
    for result in results:
        counts[result.result] += 1
    return counts


def to_json(results: list[StopResult]) -> dict[str, Any]:
    """The documented JSON shape: ``{"stops": [...], "summary": {...}}``."""
    return {"stops": [r.to_dict() for r in results], "summary": summary(results)}


def dump_json(results: list[StopResult], out: TextIO) -> None:
    json.dump(to_json(results), out, indent=2)
    out.write("\n")


class Human:
    """Prints each stop as it finishes: verdict line, then claim, syscalls, observed."""

    def __init__(self, out: TextIO, *, colour: bool, brief: bool, total: int, width: int) -> None:
        self.out = out
        self.colour = colour
        self.brief = brief
        self.total = total
        self.width = width
        self.count = 0

    def _paint(self, text: str, code: str) -> str:
        return f"{code}{text}{_RESET}" if self.colour else text

    def stop(self, result: StopResult) -> None:
        self.count += 1
        verdict = self._paint(f"{result.result.upper():<4}", _COLOURS[result.result])
        number = f"{self.count:>{len(str(self.total))}}/{self.total}"
        self.out.write(
            f"{number}  {result.id:<{self.width}}  {verdict}  {result.title}"
            f"  {self._paint(f'({result.seconds:.2f} s)', _DIM)}\n"
        )
        if result.reason:
            label = "why" if result.result == "fail" else "skipped"
            self._block(label, [result.reason])
        if not self.brief:
            self._block("claim", [result.claim])
            self._block("syscalls", result.syscalls)
            self._block("observed", result.observed)
            self.out.write("\n")
        self.out.flush()

    def _block(self, label: str, lines: list[str]) -> None:
        indent = " " * (len(str(self.total)) * 2 + 3)
        head = f"{indent}{label:<9} "
        pad = " " * len(head)
        for i, line in enumerate(lines):
            wrapped = textwrap.wrap(line, 110, subsequent_indent="    ") or [""]
            for j, part in enumerate(wrapped):
                lead = head if i == 0 and j == 0 else pad
                if i == 0 and j == 0:
                    lead = head if label else pad
                self.out.write(f"{lead}{part}\n")

    def finish(self, results: list[StopResult]) -> None:
        counts = summary(results)
        text = f"{counts['pass']} passed, {counts['fail']} failed, {counts['skip']} skipped"
        code = _COLOURS["fail"] if counts["fail"] else _COLOURS["pass"]
        self.out.write(self._paint(text, code) + "\n")
