"""``sockwire --help`` and ``sockwire CMD --help`` import argparse and the command, no more.

Start-up time is measured by ``sockwire bench startup`` (never judged here);
this test holds the cause in place: which modules the help path may load.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from sockwire.cli.main import COMMANDS

pytestmark = pytest.mark.timeout(60)

#: what the help path may import from sockwire: the entry point, the command, its options
ALLOWED = {
    "sockwire",
    "sockwire._version",
    "sockwire.cli",
    "sockwire.cli.main",
    "sockwire.cli.exitcodes",
    "sockwire.cli.options",
}
#: standard modules that cost milliseconds each and no help text needs
HEAVY = {"logging", "dataclasses", "ssl", "ipaddress", "threading", "inspect", "asyncio"}

_PROBE = """
import json, sys
from sockwire.cli.main import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print(json.dumps(sorted(sys.modules)))
"""


def _modules_after(*argv: str) -> set[str]:
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, *argv],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert "usage:" in proc.stdout, proc.stderr
    return set(json.loads(proc.stdout.splitlines()[-1]))


@pytest.mark.parametrize("command", ["", *COMMANDS])
def test_help_imports_no_library_module(command: str) -> None:
    argv = [command, "--help"] if command else ["--help"]
    loaded = _modules_after(*argv)
    ours = {m for m in loaded if m == "sockwire" or m.startswith("sockwire.")}
    allowed = ALLOWED | ({f"sockwire.cli.{command}_cmd"} if command else set())
    assert ours <= allowed, f"`sockwire {command} --help` imported {sorted(ours - allowed)}"
    assert not loaded & HEAVY, f"`sockwire {command} --help` imported {sorted(loaded & HEAVY)}"


def test_the_package_imports_lazily() -> None:
    code = (
        "import sys, sockwire; before = set(sys.modules); sockwire.Socket; sockwire.MsgFlag;"
        "from sockwire import trace, parse; print(sorted(before & {'sockwire.sock', "
        "'sockwire.address'}), sockwire.Socket.__module__, trace.__name__, parse.__module__)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
    )
    assert proc.stdout.split() == ["[]", "sockwire.sock", "sockwire.trace", "sockwire.address"]
