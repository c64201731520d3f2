"""No code execution from files: pickles are refused wherever a file is accepted, configs are data."""

from __future__ import annotations

import ast
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from bad_inputs.corpus import image_folder, image_run

from metalearn.data import ImageFolder
from metalearn.models import BACKBONES
from metalearn.models.weights import load_backbone
from metalearn.train.checkpoint import CheckpointError, load_checkpoint
from metalearn.train.config import ConfigError, RunConfig, apply_overrides

PACKAGE = Path(__file__).resolve().parents[1] / "metalearn"


class Payload:
    """Unpickling this runs ``os.system("touch MARKER")``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".bin"])
def test_a_planted_pickle_backbone_is_refused(tmp_path, suffix):
    marker = tmp_path / "pwned"
    path = tmp_path / f"backbone{suffix}"
    good = BACKBONES["conv4"](hidden=4).state_dict()
    torch.save({"state_dict": good, "extra": Payload(marker)}, path)
    assert not marker.exists()
    with pytest.raises(Exception, match="(?i)weights only load failed|unsupported global"):
        load_backbone(BACKBONES["conv4"](hidden=4), path)
    assert not marker.exists()
    # the same file without the payload loads: the refusal is about the code, not the format
    torch.save({"state_dict": good}, path)
    assert load_backbone(BACKBONES["conv4"](hidden=4), path) is not None


def test_a_pickle_in_place_of_checkpoint_tensors_is_refused(tmp_path):
    run = image_run(tmp_path)
    tensors = next((run / "checkpoints").glob("best-*.safetensors"))
    torch.save({"w": Payload(tmp_path / "pwned")}, tensors)
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_checkpoint(run / "checkpoints", "best")
    assert not (tmp_path / "pwned").exists()


def test_a_planted_object_array_in_the_cache_is_never_unpickled(tmp_path):
    root = image_folder(tmp_path / "imgs", {"a": 2, "b": 2})
    cache = tmp_path / "cache"
    expected = ImageFolder(root, image_size=8, channels=1, cache=cache).gather(torch.arange(4)).clone()
    npy = next(cache.glob("*.npy"))
    meta = json.loads(next(cache.glob("*.json")).read_text())
    evil = np.empty(1, dtype=object)
    evil[0] = Payload(tmp_path / "pwned")
    np.save(npy, evil, allow_pickle=True)
    # keep size and checksum "right" so only allow_pickle=False stands between the file and pickle
    from metalearn.data.cache import sha256_file

    meta.update(nbytes=npy.stat().st_size, sha256=sha256_file(npy))
    next(cache.glob("*.json")).write_text(json.dumps(meta))
    with pytest.warns(UserWarning, match="unreadable cache|rebuilding"):
        again = ImageFolder(root, image_size=8, channels=1, cache=cache)
    assert not (tmp_path / "pwned").exists()
    assert torch.equal(again.gather(torch.arange(4)), expected)


def test_config_values_are_data_never_evaluated(tmp_path):
    marker = tmp_path / "pwned"
    expr = f"__import__('os').system('touch {marker}')"
    with pytest.raises(ConfigError):
        apply_overrides(RunConfig(), [f"train.steps={expr}"])
    cfg = apply_overrides(RunConfig(), [f"name={expr}"])  # a string field keeps the text verbatim
    assert cfg.name == expr
    with pytest.raises(ConfigError):
        RunConfig.from_dict({"train": {"lr": expr}})
    assert not marker.exists()


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
            owner = f.value.id if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) else ""
            yield node, owner, name


def test_the_package_has_no_unsafe_loader():
    """Static guard: no eval/exec, no pickle/yaml/marshal loads, ``torch.load`` only with
    ``weights_only=True``, ``np.load`` never with ``allow_pickle=True``."""
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node, owner, name in _calls(tree):
            where = f"{path.relative_to(PACKAGE.parent)}:{node.lineno}"
            kw = {k.arg: k.value for k in node.keywords}
            if isinstance(node.func, ast.Name) and name in ("eval", "exec"):
                problems.append(f"{where}: {name}()")
            if owner in ("pickle", "marshal", "dill", "cloudpickle", "yaml") and name in ("load", "loads"):
                problems.append(f"{where}: {owner}.{name}")
            if owner == "torch" and name == "load":
                ok = isinstance(kw.get("weights_only"), ast.Constant) and kw["weights_only"].value is True
                if not ok:
                    problems.append(f"{where}: torch.load without weights_only=True")
            if owner == "np" and name == "load":
                ap = kw.get("allow_pickle")
                if isinstance(ap, ast.Constant) and ap.value is True:
                    problems.append(f"{where}: np.load(allow_pickle=True)")
    assert problems == []
