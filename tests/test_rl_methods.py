"""The meta-RL baselines through the run machinery: ``method=multitask|random|oracle`` train and
evaluate with the same commands and test tasks as MAML-TRPO."""

from __future__ import annotations

import json

import pytest
import torch

from metalearn.cli import main
from metalearn.rl.baselines import MultiTaskPolicy, OraclePolicy, RandomInit
from metalearn.rl.loop import build_env, build_rl_algorithm, load_rl_run

TINY = ["--set", "train.meta_iterations=2", "--set", "train.meta_batch=2", "--set", "train.trajectories=2",
        "--set", "train.val_tasks=2", "--set", "eval.test_tasks=3", "--set", "eval.trajectories=2",
        "--set", "env.horizon=6", "--set", "policy.hidden=[8]", "--quiet"]


@pytest.mark.parametrize("method, cls", [("multitask", MultiTaskPolicy), ("random", RandomInit),
                                         ("oracle", OraclePolicy)])
def test_a_baseline_trains_and_evaluates_like_maml(method, cls, tmp_path):
    out = tmp_path / method
    assert main(["train", "--preset", "maml-trpo-navigation2d", "--out", str(out), "--set", f"method={method}",
                 *TINY]) == 0
    algo, cfg, _ = load_rl_run(out, "last")
    assert type(algo) is cls and cfg.method == method
    assert main(["eval", str(out)]) == 0
    returns = json.loads((out / "eval_test.json").read_text())["returns"]
    assert set(returns) == {"0", "1", "3"}
    if method == "oracle":  # it sees the goal: its policy (obs + goal) is never adapted
        assert algo.policy.obs_dim == 4
    if method == "random":  # training steps change nothing: the initialisation is kept
        fresh = build_rl_algorithm(cfg, build_env(cfg, 1))  # seeded by train.seed, as the run was
        assert all(torch.equal(a, b) for a, b in zip(fresh.parameters(), algo.parameters()))


def test_an_unknown_method_names_the_choices(tmp_path, capsys):
    assert main(["train", "--preset", "maml-trpo-navigation2d", "--out", str(tmp_path / "x"),
                 "--set", "method=reptile", *TINY]) == 2
    assert "maml" in capsys.readouterr().err


def test_the_training_header_names_the_method(tmp_path, capsys):
    loud = [a for a in TINY if a != "--quiet"]
    assert main(["train", "--preset", "maml-trpo-navigation2d", "--out", str(tmp_path / "r"),
                 "--set", "method=random", *loud]) == 0
    header = capsys.readouterr().out.splitlines()[0]
    assert "a random initialisation (no training) on navigation2d" in header and "MAML" not in header
