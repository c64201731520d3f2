"""Determinism on CPU: the same seed gives the same episodes, the same training curve and the same
evaluation, bit for bit, within a process and across processes (docs/reliability.md says what
differs on GPU)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from bad_inputs.corpus import split_folders

from metalearn.data import EpisodeSampler, FixedEpisodes, SinusoidTasks
from metalearn.eval import evaluate
from metalearn.presets import get_preset
from metalearn.train.checkpoint import load_checkpoint
from metalearn.train.config import apply_overrides
from metalearn.train.data import fixed_episodes
from metalearn.train.loop import load_run, train

REPO = Path(__file__).resolve().parents[1]
TINY = ["train.steps=24", "train.meta_batch=2", "train.val_every=8", "train.checkpoint_every=8",
        "train.log_every=1", "model.hidden=[16]", "data.val_episodes=4", "train.device=cpu",
        "train.tensorboard=false"]


def image_config(root: Path, algorithm: str):
    sets = ["data.dataset=folder", f"data.root={root}", "data.train_split=train", "data.val_split=val",
            "data.test_split=test", "data.n_way=2", "data.k_shot=1", "data.n_query=2", "data.image_size=16",
            "data.eval_n_way=2", "data.eval_k_shot=1", "data.eval_n_query=2",
            "data.val_episodes=4", "data.test_episodes=6", "train.steps=6", "train.meta_batch=2",
            "train.val_every=3", "train.checkpoint_every=3", "train.log_every=1", "train.device=cpu",
            "train.tensorboard=false"]
    if algorithm == "maml":
        return apply_overrides(get_preset("maml-omniglot-5w1s"), [
            *sets, "model.hidden=4", "model.out_features=2", "algorithm.inner_steps=1",
            "algorithm.eval_inner_steps=1"])
    return apply_overrides(get_preset("protonet-omniglot-5w1s"), [*sets, "model.hidden=4"])


def lines(run: Path) -> list[dict]:
    """The metrics lines without ``time_s`` (wall-clock seconds differ between any two runs)."""
    return [{k: v for k, v in json.loads(x).items() if k != "time_s"}
            for x in (run / "metrics.jsonl").read_text().splitlines()]


def states_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_same_seed_same_training_curve_and_weights(tmp_path):
    cfg = apply_overrides(get_preset("demo"), TINY)
    train(cfg, tmp_path / "a", quiet=True)
    train(cfg, tmp_path / "b", quiet=True)
    assert lines(tmp_path / "a") == lines(tmp_path / "b")  # every loss, mse and val figure, exactly
    sa, sb = (load_checkpoint(tmp_path / r / "checkpoints")["state"] for r in ("a", "b"))
    assert states_equal(sa["model"], sb["model"])
    other = apply_overrides(cfg, ["train.seed=1"])
    train(other, tmp_path / "c", quiet=True)
    assert lines(tmp_path / "c") != lines(tmp_path / "a")  # the seed matters (the test can fail)


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ["protonet"])
def test_same_seed_same_curve_and_evaluation_on_images(tmp_path, monkeypatch, algorithm):
    monkeypatch.setenv("METALEARN_CACHE", str(tmp_path / "cache"))
    cfg = image_config(split_folders(tmp_path / "data", n_classes=4, per_class=4), algorithm)
    train(cfg, tmp_path / "a", quiet=True)
    train(cfg, tmp_path / "b", quiet=True)
    assert lines(tmp_path / "a") == lines(tmp_path / "b")
    results = []
    for run in ("a", "b", "a"):
        algo, rcfg, _ = load_run(tmp_path / run)
        results.append(evaluate(algo, fixed_episodes(rcfg.data, "test"), progress=False))
    assert all(r.per_episode == results[0].per_episode for r in results)
    assert results[0].mean == results[1].mean and results[0].ci95 == results[1].ci95


def test_same_seed_same_episodes_across_processes():
    """Episodes depend on the seed only: not on the process, the hash seed or earlier draws."""
    code = ("from metalearn.data import FixedEpisodes, SinusoidTasks, EpisodeSampler, ArrayDataset\n"
            "import numpy as np, torch\n"
            "ds = ArrayDataset(np.arange(60, dtype=np.float32).reshape(30, 2), np.repeat(np.arange(6), 5))\n"
            "torch.manual_seed(123); torch.rand(7)\n"
            "b = EpisodeSampler(ds, 3, 2, 2, seed=5).sample_batch(4)\n"
            "print(FixedEpisodes(SinusoidTasks(), None, 5, 10, 20, seed=3).fingerprint,"
            " FixedEpisodes(ds, 3, 1, 2, 20, seed=3).fingerprint, b.support_x.sum().item(), b.query_x.sum().item())")
    outs = set()
    for hash_seed in ("0", "1"):
        env = dict(os.environ, PYTHONHASHSEED=hash_seed, PYTHONPATH=str(REPO))
        outs.add(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                                check=True, timeout=120).stdout.strip())
    import numpy as np

    from metalearn.data import ArrayDataset

    ds = ArrayDataset(np.arange(60, dtype=np.float32).reshape(30, 2), np.repeat(np.arange(6), 5))
    b = EpisodeSampler(ds, 3, 2, 2, seed=5).sample_batch(4)
    here = (f"{FixedEpisodes(SinusoidTasks(), None, 5, 10, 20, seed=3).fingerprint} "
            f"{FixedEpisodes(ds, 3, 1, 2, 20, seed=3).fingerprint} {b.support_x.sum().item()} {b.query_x.sum().item()}")
    assert outs == {here}
