"""The README's quickstart, "Patterns" and "Talking to ZeroMQ" snippets run, and print
what their comments say.

Each runs in a fresh interpreter inside an empty temporary directory (the
snippets use relative socket paths and port 0), so nothing is shared.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def _section(text: str, title: str) -> str:
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def _snippets(titles: tuple[str, ...] = ("Patterns",)) -> list[str]:
    text = README.read_text()
    return [
        code
        for title in titles
        for code in re.findall(r"```python\n(.*?)```", _section(text, title), re.S)
    ]


RUN = ("Library quickstart", "Patterns", "Talking to ZeroMQ")


def test_the_section_has_a_quickstart_for_each_pattern() -> None:
    code = "\n".join(_snippets())
    for name in ("sockwire.serve", "sockwire.connect", "Req(", "Rep(", "Pub(", "Sub(", "Push("):
        assert name in code
    assert "Pull(" in code


@pytest.mark.timeout(120)
@pytest.mark.parametrize("index", range(len(_snippets(RUN))))
def test_snippet_runs_and_prints_what_it_says(index: int) -> None:
    code = _snippets(RUN)[index]
    expected = [
        m.group(1).strip() for m in re.finditer(r"print\(.*\)[ \t]+#[ \t]+(.*)$", code, re.M)
    ]
    with tempfile.TemporaryDirectory(prefix="sw-readme-") as cwd:
        proc = subprocess.run(
            [sys.executable, "-c", code],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=100,
            check=False,
        )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    for want in expected:
        assert want in lines, f"{want!r} not printed; got {lines}"
