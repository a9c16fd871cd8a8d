"""The README's endpoint and option tables agree with the scheme registry.

When this fails after adding a scheme or an option, run
``.venv/bin/python tools/endpoint_tables.py --write`` and review the diff.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from sockwire.address import SCHEMES

ROOT = Path(__file__).resolve().parent.parent


def _tables() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "endpoint_tables", ROOT / "tools/endpoint_tables.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_tables_are_the_registry() -> None:
    tables = _tables()
    current = tables.readme_block((ROOT / "README.md").read_text())
    assert current, "README.md lost its generated endpoint tables block"
    assert current == tables.block(), (
        "README.md and the scheme registry disagree: run "
        ".venv/bin/python tools/endpoint_tables.py --write"
    )


def test_every_scheme_and_option_is_in_the_readme() -> None:
    block = _tables().readme_block((ROOT / "README.md").read_text())
    for name, spec in SCHEMES.items():
        assert f"| `{name}` |" in block, name
        for option in spec.options:
            assert f"| `{option}` |" in block, (name, option)
