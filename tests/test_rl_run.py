"""The meta-RL run machinery: config and presets, train -> eval through the command line, resume
equal to an uninterrupted run, a NaN that keeps the last good checkpoint, the plots, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from metalearn.eval.metrics import mean_ci95
from metalearn.presets import RL_PRESETS, describe
from metalearn.rl import envs as rl_envs
from metalearn.rl.config import RLRunConfig, apply_rl_overrides, validate_rl
from metalearn.rl.envs import Navigation2D
from metalearn.rl.loop import train_rl
from metalearn.train.checkpoint import load_checkpoint
from metalearn.train.config import ConfigError
from metalearn.train.distributed import DistributedError
from metalearn.train.loop import NonFiniteLossError
from metalearn.train.runlog import read_metrics

TINY = ["env.horizon=6", "train.meta_iterations=3", "train.meta_batch=2", "train.trajectories=3",
        "train.val_tasks=3", "policy.hidden=[8]", "train.eval_every=2", "train.checkpoint_every=1",
        "train.tensorboard=false", "eval.test_tasks=4", "eval.trajectories=3"]


def tiny(*more: str, base: RLRunConfig | None = None) -> RLRunConfig:
    return apply_rl_overrides(base or RLRunConfig(), [*TINY, *more])


def test_presets_follow_the_paper_and_load_overrides():
    cfg = RL_PRESETS["maml-trpo-navigation2d"]()
    assert (cfg.train.meta_iterations, cfg.train.meta_batch, cfg.train.trajectories) == (500, 20, 20)
    assert (cfg.env.horizon, cfg.algorithm.inner_lr, cfg.algorithm.max_kl) == (100, 0.1, 0.01)
    assert RL_PRESETS["fomaml-trpo-navigation2d"]().algorithm.first_order
    assert RL_PRESETS["maml-ppo-navigation2d"]().algorithm.outer == "ppo"
    for kind in ("vel", "dir"):
        hc = RL_PRESETS[f"maml-trpo-halfcheetah-{kind}"]()
        assert (hc.env.name, hc.env.horizon, hc.train.meta_batch) == (f"halfcheetah-{kind}", 200, 40)
        assert "horizon 200" in hc.notes
    for name, make in RL_PRESETS.items():
        validate_rl(make())
        assert describe(name)
    cfg = apply_rl_overrides(cfg, ["train.meta_iterations=7", "algorithm.first_order=true",
                                   "policy.hidden=[32,32]"])
    assert (cfg.train.meta_iterations, cfg.algorithm.first_order, cfg.policy.hidden) == (7, True, [32, 32])
    assert RLRunConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ConfigError, match=r"unknown config key 'train.meta_iteration'.*meta_iterations"):
        apply_rl_overrides(cfg, ["train.meta_iteration=3"])
    with pytest.raises(ConfigError, match="algorithm.outer must be trpo or ppo"):
        apply_rl_overrides(cfg, ["algorithm.outer=sgd"])
    with pytest.raises(ConfigError, match="three different values"):
        apply_rl_overrides(cfg, ["eval.test_seed=0"])


def _cli(*argv: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "METALEARN_NO_TUNE": "1", "OMP_NUM_THREADS": "1"}
    root = Path(__file__).resolve().parents[1]
    env["PYTHONPATH"] = str(root) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", "metalearn.cli", *argv], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=300)


def test_train_then_eval_through_the_command_line(tmp_path):
    sets = [a for s in TINY for a in ("--set", s)]
    out = tmp_path / "nav"
    r = _cli("train", "--preset", "maml-trpo-navigation2d", *sets, "--out", str(out), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "training maml-trpo-navigation2d+modified: MAML-TRPO on navigation2d" in r.stdout
    assert "done: 3 meta-iterations" in r.stdout
    for name in ("config.json", "metrics.jsonl", "learning_curve.png", "adaptation_curve.png",
                 "trajectories.png", "checkpoints/last.json", "checkpoints/best.json"):
        assert (out / name).is_file(), name
    assert (out / "trajectories.png").read_bytes()[:4] == b"\x89PNG"
    train_lines = [m for m in read_metrics(out / "metrics.jsonl") if m["kind"] == "train"]
    assert [m["step"] for m in train_lines] == [1, 2, 3]
    assert all("return_before" in m and "return_after" in m for m in train_lines)

    r = _cli("eval", str(out), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    for line in ("before adaptation:", "after 1 step:", "after 3 steps:", "4 fixed navigation2d tasks"):
        assert line in r.stdout
    record = json.loads((out / "eval_test.json").read_text())
    assert set(record["returns"]) == {"0", "1", "3"} and record["seed"] == 2
    for res in record["returns"].values():
        assert res["n"] == 4 and (res["mean"], res["ci95"]) == pytest.approx(mean_ci95(res["per_task"]))
    again = _cli("eval", str(out), "--checkpoint", "last", cwd=tmp_path)
    assert again.returncode == 0 and json.loads((out / "eval_test.json").read_text())["returns"] != {}

    listing = _cli("list", "presets", cwd=tmp_path)
    assert all(name in listing.stdout for name in RL_PRESETS)
    bad = _cli("train", "--preset", "maml-trpo-navigation2d", "--set", "env.horizon=0", cwd=tmp_path)
    assert bad.returncode == 2 and "env.horizon must be at least 1" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_evaluation_is_fixed_by_the_test_seed(tmp_path):
    from metalearn.rl.evaluate import evaluate_run

    train_rl(tiny(), tmp_path / "run", quiet=True)
    a, b = (evaluate_run(tmp_path / "run")["returns"] for _ in range(2))
    assert a == b
    other = evaluate_run(tmp_path / "run", seed=9)["returns"]
    assert other["0"]["per_task"] != a["0"]["per_task"]


@pytest.mark.parametrize("outer", ["trpo", "ppo"])
def test_resume_equals_the_uninterrupted_run_bit_for_bit(tmp_path, outer):
    cfg = tiny("train.meta_iterations=4", f"algorithm.outer={outer}")
    train_rl(cfg, tmp_path / "a", quiet=True)
    train_rl(cfg, tmp_path / "b", quiet=True, stop_after=2)
    assert load_checkpoint(tmp_path / "b" / "checkpoints")["step"] == 2
    train_rl(cfg, tmp_path / "b", quiet=True, resume=True)
    a, b = (load_checkpoint(tmp_path / r / "checkpoints") for r in "ab")
    assert a["step"] == b["step"] == 4
    for key, value in a["state"]["model"].items():
        assert torch.equal(value, b["state"]["model"][key]), key
    for name, state in a["state"]["generators"][0].items():
        assert torch.equal(state, b["state"]["generators"][0][name]), name

    def lines(run):
        return [{k: v for k, v in m.items() if k != "time_s"} for m in read_metrics(tmp_path / run / "metrics.jsonl")]

    assert lines("a") == lines("b") and len(lines("a")) == 4 + 2  # 4 train, 2 validation lines
    with pytest.raises(ConfigError, match=r"algorithm.inner_lr: 0.1 -> 0.2"):
        train_rl(tiny("algorithm.inner_lr=0.2", base=cfg), tmp_path / "b", quiet=True, resume=True)
    with pytest.raises(Exception, match="already holds a run"):
        train_rl(cfg, tmp_path / "a", quiet=True)


class _NaNNavigation(Navigation2D):
    """Returns a NaN reward at step 2 of the 5th rollout (the first of meta-iteration 3)."""

    resets = 0

    def reset(self, generator=None):
        type(self).resets += 1
        self._t = 0
        return super().reset(generator)

    def step(self, actions):
        obs, rewards, done = super().step(actions)
        self._t += 1
        if type(self).resets == 5 and self._t == 3:
            rewards = rewards.clone()
            rewards[-1] = float("nan")
        return obs, rewards, done


def test_nan_reward_names_task_and_step_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setitem(rl_envs.ENVIRONMENTS, "nan-nav", _NaNNavigation)
    monkeypatch.setattr(_NaNNavigation, "resets", 0)
    cfg = tiny("env.name=nan-nav", "train.meta_iterations=4", "train.eval_every=100")
    with pytest.raises(NonFiniteLossError, match=r"non-finite reward at step 2 of task 1 .*meta-iteration 3"
                                                 r".*last good checkpoint \(meta-iteration 2\) is kept"):
        train_rl(cfg, tmp_path / "run", quiet=True)
    assert load_checkpoint(tmp_path / "run" / "checkpoints")["step"] == 2


class _DiscreteNavigation(Navigation2D):
    class Discrete:
        n, shape = 4, ()

    action_space = Discrete()


def test_bad_input_is_a_clear_error_naming_the_fix(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="env.horizon must be at least 1, got 0"):
        tiny("env.horizon=0")
    monkeypatch.setitem(rl_envs.ENVIRONMENTS, "discrete-nav", _DiscreteNavigation)
    with pytest.raises(ConfigError, match="discrete .*needs a continuous action space"):
        train_rl(tiny("env.name=discrete-nav"), tmp_path / "d", quiet=True)
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(DistributedError, match=r"train.meta_batch=3 is not a multiple of 2 .*meta_batch=2 or 4"):
        train_rl(tiny("train.meta_batch=3"), tmp_path / "m", quiet=True)
    monkeypatch.delenv("WORLD_SIZE")
    # metalearn[rl] missing: gymnasium cannot be imported
    monkeypatch.setitem(sys.modules, "gymnasium", None)
    monkeypatch.delitem(sys.modules, "metalearn.rl.gym_envs", raising=False)
    with pytest.raises(ConfigError, match=r"env.name=halfcheetah-vel needs .*pip install 'metalearn\[rl\]'"):
        train_rl(tiny("env.name=halfcheetah-vel"), tmp_path / "h", quiet=True)
    assert not any((tmp_path / name).exists() for name in ("d", "m", "h"))
    with pytest.raises(ConfigError, match="env.name='navigation3d' is no environment. Did you mean 'navigation2d'"):
        tiny("env.name=navigation3d")
