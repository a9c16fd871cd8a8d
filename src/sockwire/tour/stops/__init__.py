"""Every tour stop, registered by importing its module.

Tour order is the order of ``MODULES``, then definition order within a module.
"""

from __future__ import annotations

import importlib

MODULES = ("domains", "types", "connection", "transfer", "datagram", "unix", "messages")

for _name in MODULES:
    importlib.import_module(f"{__name__}.{_name}")
