"""Every tour stop, registered by importing its module (tour order = import order)."""

from . import domains, types  # noqa: F401

from . import messages  # noqa: F401  # isort: skip (tour order = import order)
