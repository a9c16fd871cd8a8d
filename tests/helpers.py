"""Prerequisite helpers: skip on a user's machine, fail under CI=true."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

import sockwire

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def need(ok: bool, reason: str) -> None:
    """Skip (fail under CI=true) unless ``ok``."""
    if ok:
        return
    if IN_CI:
        pytest.fail(f"CI requires this test to run: {reason}")
    pytest.skip(reason)


def need_root() -> None:
    need(os.geteuid() == 0, "needs root")


def need_tool(name: str) -> str:
    path = shutil.which(name)
    need(path is not None, f"needs the program {name!r} (apt-get install it)")
    assert path is not None
    return path


SYSTEM_PYTHON = "/usr/bin/python3"


@dataclass(frozen=True)
class Nobody:
    """How to run ``python -m sockwire`` as uid 65534: ``[*argv, "tour", ...]``."""

    argv: list[str]
    env: dict[str, str]
    cwd: str


@contextmanager
def as_nobody() -> Iterator[Nobody]:
    """A world-readable copy of the package, run by the system Python as uid 65534.

    Root's home is mode 0700 here and the venv's python is a shim inside it,
    so uid 65534 can run neither; the core library needs only the stdlib.
    """
    need_root()
    setpriv = need_tool("setpriv")
    need(os.access(SYSTEM_PYTHON, os.X_OK), f"needs the system Python at {SYSTEM_PYTHON}")
    root = tempfile.mkdtemp(prefix="sockwire-nobody-")
    try:
        os.chmod(root, 0o755)
        package = Path(sockwire.__file__).parent
        shutil.copytree(
            package, Path(root, "sockwire"), ignore=shutil.ignore_patterns("__pycache__")
        )
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames:
                os.chmod(os.path.join(dirpath, name), 0o755)
            for name in filenames:
                os.chmod(os.path.join(dirpath, name), 0o644)
        yield Nobody(
            argv=[
                setpriv,
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                SYSTEM_PYTHON,
                "-m",
                "sockwire",
            ],
            env={
                "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "PYTHONPATH": root,
                "PYTHONDONTWRITEBYTECODE": "1",
                "HOME": root,
            },
            cwd=root,
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)
