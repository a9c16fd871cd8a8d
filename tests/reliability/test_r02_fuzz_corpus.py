"""R2: the fuzz corpus, replayed. ``make fuzz`` searches (atheris, 1,000,000 runs per
target, ``tools/fuzz.py``); here every committed input of every target runs
again, so a finding that was fixed stays fixed. Only documented errors may
escape a target (tests/reliability/fuzz/targets.py).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.reliability.fuzz.targets import TARGETS

CORPUS = Path(__file__).parent / "fuzz" / "corpus"


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_r02_replay_the_corpus(target: str, report: Callable[..., None]) -> None:
    inputs = sorted((CORPUS / target).glob("*"))
    assert inputs, f"no corpus for {target}: run make fuzz-seed"
    for path in inputs:
        TARGETS[target](path.read_bytes())
    report("R2", targets=1, corpus_inputs_replayed=len(inputs), undocumented_errors=0)
