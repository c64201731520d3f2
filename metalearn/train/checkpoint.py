"""Full-state checkpoints as safetensors + JSON, written atomically, loaded without running code.

A checkpoint ``TAG`` in a folder is two files: ``TAG.json`` (format, step, the resolved config and
the non-tensor part of the state, with tensors replaced by references) and
``TAG-<step>.safetensors`` (every tensor). The JSON names its tensors file and both carry the
same random ``save_id``, so a half-written checkpoint is detected. Each file is written to a
temporary name, flushed, ``fsync``-ed and renamed over the old one; the JSON is renamed last, so
a crash at any moment leaves the previous checkpoint loadable. Loading reads JSON and
safetensors only: nothing is unpickled, no code runs.
"""

from __future__ import annotations

import copy
import json
import os
import uuid
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save as save_safetensors
from torch import Tensor

FORMAT = "metalearn-checkpoint/1"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, incomplete or does not fit the model; the message names the fix."""


def flatten_state(obj: Any, tensors: dict[str, Tensor], prefix: str = "s") -> Any:
    """Split a nested state (dicts, lists, tuples, tensors, numbers, strings) into a JSON tree
    and a flat ``name -> tensor`` dict. Dict keys keep their type (optimizer states use ints)."""
    if isinstance(obj, Tensor):
        tensors[prefix] = obj.detach().to("cpu", copy=True).contiguous()
        return {"__tensor__": prefix}
    if isinstance(obj, dict):
        items = []
        for i, (k, v) in enumerate(obj.items()):
            if not isinstance(k, (str, int)):
                raise TypeError(f"cannot checkpoint a dict key of type {type(k).__name__}")
            items.append([k, flatten_state(v, tensors, f"{prefix}.{i}")])
        return {"__dict__": items}
    if isinstance(obj, (list, tuple)):
        out = [flatten_state(v, tensors, f"{prefix}.{i}") for i, v in enumerate(obj)]
        return {"__tuple__": out} if isinstance(obj, tuple) else out
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot checkpoint a value of type {type(obj).__name__} at {prefix}")


def unflatten_state(tree: Any, tensors: dict[str, Tensor]) -> Any:
    """Inverse of :func:`flatten_state`."""
    if isinstance(tree, dict):
        if "__tensor__" in tree:
            return tensors[tree["__tensor__"]]
        if "__tuple__" in tree:
            return tuple(unflatten_state(v, tensors) for v in tree["__tuple__"])
        return {k: unflatten_state(v, tensors) for k, v in tree["__dict__"]}
    if isinstance(tree, list):
        return [unflatten_state(v, tensors) for v in tree]
    return tree


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    try:  # make the rename itself durable
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def save_checkpoint(folder: str | os.PathLike, tag: str, state: dict, *, step: int,
                    config: dict, extra: dict | None = None) -> Path:
    """Write checkpoint ``tag`` atomically and remove the tensors file it replaces.

    Args:
        folder: Checkpoint folder (created if missing).
        tag: ``"last"`` or ``"best"``.
        state: Nested state: ``{"model": state_dict, "optimizer": ..., ...}``.
        step: Number of completed meta-training steps.
        config: The resolved run config as a dict.
        extra: JSON-serialisable information stored next to the state (validation result...).

    Returns:
        Path of the JSON file.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob(f".{tag}[.-]*.tmp"):  # left by a write that was killed (one writer per folder)
        stale.unlink(missing_ok=True)
    tensors: dict[str, Tensor] = {}
    tree = flatten_state(state, tensors)
    save_id = uuid.uuid4().hex
    tensor_name = f"{tag}-{step:08d}.safetensors"
    _atomic_write(folder / tensor_name, save_safetensors(tensors, metadata={"save_id": save_id}))
    meta = {"format": FORMAT, "step": step, "save_id": save_id, "tensors": tensor_name,
            "config": config, "extra": extra or {}, "state": tree}
    json_path = folder / f"{tag}.json"
    _atomic_write(json_path, json.dumps(meta, indent=1).encode())
    for old in folder.glob(f"{tag}-*.safetensors"):
        if old.name != tensor_name:
            old.unlink(missing_ok=True)
    return json_path


def load_checkpoint(folder: str | os.PathLike, tag: str = "last") -> dict:
    """Read checkpoint ``tag``: a dict with ``step``, ``config``, ``extra`` and ``state``.

    Tensors are returned on the CPU. Only JSON and safetensors are read (no pickle).

    Raises:
        CheckpointError: the checkpoint is missing, from another format, or incomplete.
    """
    folder = Path(folder)
    json_path = folder / f"{tag}.json"
    if not json_path.is_file():
        raise CheckpointError(f"no checkpoint {json_path}: train first (`metalearn train ... --out "
                              f"{folder.parent}`) or point at a run directory that has one")
    try:
        meta = json.loads(json_path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{json_path} is not valid JSON ({e}); the file is damaged") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise CheckpointError(f"{json_path} has format {found!r}, expected {FORMAT!r}; the file is "
                              "damaged or not a metalearn checkpoint")
    lacking = [k for k in ("step", "save_id", "tensors", "config", "state") if k not in meta]
    if lacking or not isinstance(meta["tensors"], str) or "/" in meta["tensors"] or "\\" in meta["tensors"]:
        raise CheckpointError(f"{json_path} lacks {lacking or ['a valid tensors file name']}; the "
                              "checkpoint is damaged: use another one or train again")
    tensor_path = folder / meta["tensors"]
    if not tensor_path.is_file():
        raise CheckpointError(f"{tensor_path} named by {json_path} is missing; the checkpoint is incomplete")
    try:
        with safe_open(str(tensor_path), framework="pt", device="cpu") as f:
            save_id = (f.metadata() or {}).get("save_id")
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is no dict)
    except Exception as e:  # SafetensorError: truncated, zero bytes, or not safetensors at all
        raise CheckpointError(f"{tensor_path} is not a readable safetensors file ({e}); the checkpoint "
                              "is damaged or incomplete: use another one or train again") from None
    if save_id != meta["save_id"]:
        raise CheckpointError(f"{tensor_path} does not belong to {json_path} (different save ids); "
                              "the checkpoint is incomplete")
    return {"step": meta["step"], "config": meta["config"], "extra": meta.get("extra", {}),
            "state": unflatten_state(meta["state"], tensors)}


def load_model_state(module: torch.nn.Module, state: dict[str, Tensor], source: str = "checkpoint") -> None:
    """``module.load_state_dict(state)`` with a clear error when the checkpoint is from another model.

    Raises:
        CheckpointError: listing missing, unexpected and mis-shaped entries.
    """
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in sorted(set(own) & set(state)) if own[k].shape != state[k].shape]
    if (missing or unexpected) and not shapes and _reads_older_keys(module, state):
        missing = unexpected = []  # a module that renamed a submodule maps the old names itself
    if missing or unexpected or shapes:
        lines = []
        if missing:
            lines.append(f"missing {len(missing)}: {', '.join(missing[:5])}")
        if unexpected:
            lines.append(f"unexpected {len(unexpected)}: {', '.join(unexpected[:5])}")
        if shapes:
            lines.append("shape mismatch: " + "; ".join(shapes[:5]))
        raise CheckpointError(f"the {source} is from a different model ({' | '.join(lines)}); "
                              "use the config saved with it (the run directory's config.json)")
    module.load_state_dict(state)


def _reads_older_keys(module: torch.nn.Module, state: dict[str, Tensor]) -> bool:
    """Whether ``module.load_state_dict(state)`` succeeds although the key names differ.

    A module may map the key names of an older version of itself in its
    ``_load_from_state_dict`` (``LearnedOptimizerMAML``: ``optimizer.*`` -> ``rule_module.*``).
    Tried on a copy, so a checkpoint that does not fit leaves ``module`` untouched.
    """
    try:
        result = copy.deepcopy(module).load_state_dict(state, strict=False)
    except RuntimeError:
        return False
    return not result.missing_keys and not result.unexpected_keys
