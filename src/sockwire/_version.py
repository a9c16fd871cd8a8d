"""The one place the version lives (read by hatchling and ``sockwire --version``)."""

__version__ = "0.1.0"
