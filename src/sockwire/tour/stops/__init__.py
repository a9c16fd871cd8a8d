"""Every tour stop, registered by importing its module (tour order = import order)."""

from . import domains, types, connection, transfer, datagram  # noqa: F401  # isort: skip
