"""Lazy public names for a package (PEP 562): imported from their module on first use.

``import metalearn`` (and the command line's ``--help``, which imports ``metalearn.cli``) must
not load torch: the package ``__init__`` files list their public names per module instead of
importing them, and :func:`lazy_exports` makes the module attributes that import on access.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping


def lazy_exports(package: str, exports: Mapping[str, tuple[str, ...]], namespace: dict,
                 submodules: tuple[str, ...] = ()) -> tuple[Callable, Callable, list[str]]:
    """The ``__getattr__``, ``__dir__`` and ``__all__`` of a package with lazy public names.

    Args:
        package: The package's ``__name__``.
        exports: Module -> the public names it defines, e.g.
            ``{"metalearn.eval": ("EvalResult", "evaluate")}``.
        namespace: The package's ``globals()``: a name imported once is stored there, so later
            lookups do not reach ``__getattr__``.
        submodules: Subpackages that ``package.<name>`` imports on access, as eager imports of
            them used to make available.

    Returns:
        ``(__getattr__, __dir__, __all__)`` to assign in the package's ``__init__``.

    Examples:
        >>> ns = {}
        >>> getattr_, dir_, all_ = lazy_exports("pkg", {"json": ("dumps",)}, ns)
        >>> getattr_("dumps")([1]), all_, "dumps" in ns
        ('[1]', ['dumps'], True)
    """
    where = {name: module for module, names in exports.items() for name in names}

    def __getattr__(name: str):
        if name in submodules:
            return importlib.import_module(f"{package}.{name}")
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value  # later lookups skip __getattr__
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *where})

    return __getattr__, __dir__, sorted(where)


def require(module: str, extra: str):
    """Import an optional dependency, or fail with the pip command that installs it.

    Args:
        module: The module to import, e.g. ``"tokenizers"``.
        extra: The metalearn extra that brings it, e.g. ``"text"``.

    Raises:
        ImportError: ``module`` is not installed; the message names
            ``pip install 'metalearn[EXTRA]'``.

    Examples:
        >>> require("json", "none").__name__
        'json'
    """
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ImportError(f"{module} is not installed: it comes with `pip install 'metalearn[{extra}]'` "
                          f"(or `pip install {module}`)") from e
