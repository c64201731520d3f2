"""Import the peer libraries (learn2learn, higher, easyfsl) inside benchmarks/.venv-peers.

The venv (built by ``benchmarks/peers/setup.sh``) holds the CPU build of torch 2.13.0 and the
PyPI build of torchvision 0.28.0, whose compiled operators link CUDA libraries and therefore do
not load against a CPU torch. torchvision's Python code then fails at import time with
``operator torchvision::nms does not exist``, because it registers fake (meta) kernels for
operators that its C++ library would have defined. :func:`install_torchvision_shim` defines the
schemas of those operators (without any kernel) before torchvision is imported, which is enough
for torchvision's Python parts and for learn2learn/easyfsl to import. No benchmark calls the
compiled operators (NMS, RoI align, ...); calling one raises ``NotImplementedError``.

Usage, from a script run with ``benchmarks/.venv-peers/bin/python``::

    sys.path.insert(0, "benchmarks/peers")  # or run the script from benchmarks/peers
    from shim import import_learn2learn, import_higher, import_easyfsl
    l2l = import_learn2learn()
"""

from __future__ import annotations

import sys
from types import ModuleType

import torch

# Operators that torchvision's Python code looks up at import time (the recipe in
# /work/shared/research/cpu-performance.md); the schemas are those of torchvision's csrc.
_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)

_library: torch.library.Library | None = None  # kept alive: dropping it unregisters the ops


def _op_exists(name: str) -> bool:
    try:
        getattr(torch.ops.torchvision, name)
    except (AttributeError, RuntimeError):
        return False
    return True


def install_torchvision_shim() -> None:
    """Declare torchvision's missing operator schemas so ``import torchvision`` works on CPU torch.

    Idempotent. Does nothing for an operator that already exists, so it is harmless with a
    torchvision whose compiled library loads (a matching CPU or CUDA build).

    Raises:
        RuntimeError: if torchvision was imported before the shim (import order matters).
    """
    global _library
    missing = [s for s in _SCHEMAS if not _op_exists(s.split("(", 1)[0])]
    if not missing:
        return
    if "torchvision" in sys.modules:
        raise RuntimeError(
            "torchvision was imported before install_torchvision_shim(); call the shim (or "
            "import_learn2learn/import_easyfsl) before anything imports torchvision."
        )
    if _library is None:
        _library = torch.library.Library("torchvision", "DEF")  # noqa: TOR901 (no kernel needed)
    for schema in missing:
        _library.define(schema)


def import_learn2learn() -> ModuleType:
    """Return the ``learn2learn`` module (0.2.0 in the peers venv), installing the shim first."""
    install_torchvision_shim()
    import learn2learn

    return learn2learn


def import_higher() -> ModuleType:
    """Return the ``higher`` module (0.2.1 in the peers venv); it does not need torchvision."""
    import higher

    return higher


def import_easyfsl() -> ModuleType:
    """Return the ``easyfsl`` package with ``easyfsl.methods`` loaded, installing the shim first."""
    install_torchvision_shim()
    import easyfsl
    import easyfsl.methods  # noqa: F401 (not imported by easyfsl/__init__)

    return easyfsl
