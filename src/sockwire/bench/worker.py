"""One case, one round, in a fresh interpreter: ``python -m sockwire.bench.worker``.

Each run gets a clean process so no case inherits another's state: libzmq
aborts at exit in a process that forked while its internal threads and fds
came and went, and a forked child inherits its parent's malloc arenas (which
swung multiprocessing.connection between 0.6 and 5 GB/s at 1 MiB).
Prints the figures as one JSON object, or ``{"error": ...}`` and exits 1.
"""

from __future__ import annotations

import json
import sys

from .harness import Params
from .suites import SUITES


def main(argv: list[str]) -> int:
    suite_name, case_key, params_json = argv
    params = Params(**json.loads(params_json))
    for build in SUITES.values():
        for suite in build():
            if suite.name != suite_name:
                continue
            for case in suite.cases:
                if case.key != case_key:
                    continue
                try:
                    if case.run is not None:
                        figures = case.run(params)
                    else:
                        assert suite.driver is not None
                        figures = suite.driver(case, params)
                except Exception as exc:  # noqa: BLE001  # reported to the parent as data
                    print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
                    return 1
                print(json.dumps({"ok": figures}))
                return 0
    print(json.dumps({"error": f"no case {case_key!r} in suite {suite_name!r}"}))
    return 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
