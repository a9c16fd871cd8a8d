"""Every snippet of the README's "Patterns" section runs, and prints what its comments say.

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


def _snippets() -> list[str]:
    text = README.read_text()
    start = text.index("\n## Patterns\n")
    end = text.find("\n## ", start + 1)
    part = text[start : end if end != -1 else len(text)]
    return re.findall(r"```python\n(.*?)```", part, re.S)


def test_the_section_has_a_quickstart_for_each_pattern() -> None:
    code = "\n".join(_snippets())
    for name in ("sockwire.serve", "sockwire.connect", "Req(", "Rep(", "Pub(", "Sub(", "Push("):
        assert name in code
    assert "Pull(" in code


@pytest.mark.timeout(120)
@pytest.mark.parametrize("index", range(len(_snippets())))
def test_snippet_runs_and_prints_what_it_says(index: int) -> None:
    code = _snippets()[index]
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
