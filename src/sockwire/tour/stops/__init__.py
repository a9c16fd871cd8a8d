"""Every tour stop, registered by importing its module (tour order = import order)."""

from . import domains, types  # noqa: F401

from . import unix  # noqa: F401  # isort: skip
