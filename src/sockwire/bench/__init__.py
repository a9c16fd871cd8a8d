"""``sockwire bench``: sockwire and its peers measured side by side in one run.

``harness`` runs cases (two real processes, interleaved rounds, pinned
cores, median ratios), ``drivers`` holds the measurement patterns, ``peers``
and ``contenders`` the two sides, ``suites`` what is compared, ``report``
the output. Timings never enter pass/fail tests.
"""
