"""Exceptions shared across layers (raised low, in :mod:`metalearn.optim`, and high, in
:mod:`metalearn.train`, so they live below both)."""


class ConfigError(ValueError):
    """A configuration key or value is invalid; the message names the fix."""
