"""The ``metalearn`` command line (``python -m metalearn.cli`` works too)."""

from metalearn.cli.main import main

__all__ = ["main"]
