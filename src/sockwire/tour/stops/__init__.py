"""Every tour stop, registered by importing its module (tour order = import order)."""

from . import domains, types, connection  # noqa: F401  # isort: skip
