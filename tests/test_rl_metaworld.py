"""The Meta-World ML1 adapter: train/test goal splits, seeded rollouts, per-environment tasks,
success, the oracle's goal vector, train -> eval through the command line, and bad input."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import pytest
import torch
from test_rl_run import _cli
from torch.distributions import Normal

from metalearn.algorithms.functional import make_forward
from metalearn.rl.baselines import TaskObservation
from metalearn.rl.config import RLRunConfig, apply_rl_overrides
from metalearn.rl.envs import Navigation2D
from metalearn.rl.evaluate import test_tasks, validation_tasks
from metalearn.rl.loop import build_env
from metalearn.rl.policies import GaussianMLPPolicy
from metalearn.rl.rollout import rollout
from metalearn.train.config import ConfigError
from metalearn.train.runlog import read_metrics

TINY = ["env.horizon=10", "env.num_envs=2", "train.meta_iterations=2", "train.meta_batch=2",
        "train.trajectories=2", "train.val_tasks=2", "policy.hidden=[8]", "train.eval_every=2",
        "train.checkpoint_every=1", "train.tensorboard=false", "eval.test_tasks=2",
        "eval.trajectories=2", "eval.steps=[1]"]


def _metaworld():
    """metalearn.rl.metaworld_envs, after a visible skip when metaworld does not import."""
    try:
        importlib.import_module("metaworld")
    except ImportError as e:  # metaworld pins its own mujoco (3.3.0 for metaworld 3.1.1)
        pytest.skip(f"metaworld does not import here ({e}); install it with "
                    "`pip install 'metalearn[metaworld]'` to run the Meta-World tests")
    return importlib.import_module("metalearn.rl.metaworld_envs")


def _cfg(*more: str) -> RLRunConfig:
    return apply_rl_overrides(RLRunConfig(), ["env.name=ml1-reach-v3", *TINY, *more])


def test_test_tasks_come_from_sample_test_tasks_when_the_env_has_them():
    class HeldOut(Navigation2D):
        def sample_test_tasks(self, n, generator):
            return [{"goal": [float(torch.rand(1, generator=generator)) + 10, 0.0]} for _ in range(n)]

    cfg = RLRunConfig()
    env = HeldOut()
    held_out = test_tasks(cfg, env)
    assert len(held_out) == cfg.eval.test_tasks and all(t["goal"][0] >= 10 for t in held_out)
    assert held_out == test_tasks(cfg, env)  # fixed by eval.test_seed
    assert all(-0.5 <= t["goal"][0] <= 0.5 for t in validation_tasks(cfg, env))
    assert test_tasks(cfg, TaskObservation(env)) == held_out  # the oracle's wrapper keeps them
    assert all(-0.5 <= t["goal"][0] <= 0.5 for t in test_tasks(cfg, Navigation2D()))


def test_missing_metaworld_names_the_pip_command():
    code = ("import sys; sys.modules['metaworld'] = None\n"
            "from metalearn.rl.config import RLRunConfig, apply_rl_overrides\n"
            "from metalearn.rl.loop import build_env\n"
            "try:\n    build_env(apply_rl_overrides(RLRunConfig(), ['env.name=ml1-reach-v3']), 1)\n"
            "except Exception as e:\n    print(type(e).__name__, e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("ConfigError") and "pip install 'metalearn[metaworld]'" in out.stdout


def test_unknown_environment_names_the_ml1_family():
    for name in ("ml1-", "ml2-reach-v3"):
        with pytest.raises(ConfigError, match=r"is no environment.*ml1-<task>.*ml1-reach-v3"):
            _cfg(f"env.name={name}")


def test_bad_task_name_and_horizon_are_clear_errors():
    _metaworld()
    with pytest.raises(ConfigError, match=r"env.name=ml1-reach-v9: 'reach-v9' is no Meta-World v3 "
                                          r"task; available .*pick-place-v3.*reach-v3"):
        build_env(_cfg("env.name=ml1-reach-v9"), 1)
    with pytest.raises(ConfigError, match="horizon 501 is longer than Meta-World's max_path_length 500"):
        build_env(_cfg("env.horizon=501"), 1)


def test_train_and_test_goals_are_disjoint_and_eval_draws_test_goals():
    mw = _metaworld()
    env = mw.MetaWorldML1("reach-v3", num_envs=1, horizon=10)
    train = torch.stack([env.task_vector({"ml1": "reach-v3", "split": "train", "index": i}) for i in range(50)])
    test = torch.stack([env.task_vector({"ml1": "reach-v3", "split": "test", "index": i}) for i in range(50)])
    assert torch.cdist(train, test).min() > 1e-3 and torch.cdist(train, train).fill_diagonal_(1).min() > 1e-3
    # the vector is the goal the environment pursues after set_task
    env.reset_task({"ml1": "reach-v3", "split": "test", "index": 7})
    env.reset(torch.Generator().manual_seed(0))
    assert torch.allclose(torch.as_tensor(env.envs[0]._target_pos, dtype=torch.float32), test[7])

    drawn = env.sample_tasks(120, torch.Generator().manual_seed(0))
    assert {t["split"] for t in drawn} == {"train"} and {t["index"] for t in drawn} == set(range(50))
    assert len({t["index"] for t in drawn[:50]}) == 50  # each goal once per pass over the list
    cfg = _cfg("eval.test_tasks=40")
    for wrapped in (build_env(cfg, 1), build_env(_cfg("eval.test_tasks=40", "method=oracle"), 1)):
        held_out = test_tasks(cfg, wrapped)
        assert len(held_out) == 40 and {t["split"] for t in held_out} == {"test"}
        assert len({t["index"] for t in held_out}) == 40
        assert {t["split"] for t in validation_tasks(cfg, wrapped)} == {"train"}
    assert json.loads(json.dumps(held_out)) == held_out


def test_seeded_rollouts_are_reproducible_with_the_right_shapes():
    mw = _metaworld()
    env = mw.MetaWorldML1("reach-v3", num_envs=4, horizon=8)
    tasks = env.sample_tasks(2, torch.Generator().manual_seed(0))
    policy = GaussianMLPPolicy(env.obs_dim, env.act_dim, hidden=(8,))
    fwd, params = make_forward(policy), dict(policy.named_parameters())
    a, b, c = (rollout(env, fwd, params, tasks, 2, torch.Generator().manual_seed(s)) for s in (3, 3, 4))
    assert (env.obs_dim, env.act_dim) == (39, 4)
    assert a.obs.shape == (8, 4, 39) and a.actions.shape == (8, 4, 4) and a.rewards.shape == (8, 4)
    assert a.success.shape == (4,) and a.mask.all()
    assert torch.equal(a.obs, b.obs) and torch.equal(a.rewards, b.rewards) and torch.equal(a.actions, b.actions)
    assert not torch.equal(a.rewards, c.rewards)
    assert (a.obs[:, :, -3:] == 0).all()  # the goal is hidden from the policy (ML1)


def test_each_environment_pursues_its_own_goal():
    mw = _metaworld()
    env = mw.MetaWorldML1("reach-v3", num_envs=3, horizon=20)
    t0, t1 = ({"ml1": "reach-v3", "split": "train", "index": i} for i in (0, 1))
    env.reset_task([t0, t1, t0])
    env.reset(torch.Generator().manual_seed(0))
    actions = torch.rand(20, 4, generator=torch.Generator().manual_seed(1)) * 2 - 1
    rewards = torch.stack([env.step(a.expand(3, 4))[1] for a in actions])
    assert torch.equal(rewards[:, 0], rewards[:, 2])  # same goal, same actions: same rewards
    assert not torch.allclose(rewards[:, 0], rewards[:, 1])
    # the rewards are Meta-World's own for that goal
    single = mw.ml1_benchmark("reach-v3").train_classes["reach-v3"]()
    single.set_task(env.tasks["train"][1])
    single.reset(seed=0)
    own = [single.step(a.numpy())[1] for a in actions]
    assert rewards[:, 1].tolist() == pytest.approx(own, rel=1e-5)


def test_success_is_recorded_for_a_policy_that_reaches_the_goal():
    mw = _metaworld()
    env = mw.MetaWorldML1("reach-v3", num_envs=2, horizon=60)
    tasks = env.sample_tasks(2, torch.Generator().manual_seed(0))
    goals = [env.task_vector(t) for t in tasks]

    def reach(p, obs):  # move the hand (obs[:, :3]) to p["goal"]; gripper open
        step = (10 * (p["goal"] - obs[:, :3])).clamp(-1, 1)
        return Normal(torch.cat([step * p["gain"], torch.zeros(len(obs), 1)], 1), 1e-4)

    gen = torch.Generator().manual_seed(0)
    moving = rollout(env, reach, [{"goal": g, "gain": torch.ones(())} for g in goals], tasks, 1, gen)
    still = rollout(env, reach, [{"goal": g, "gain": torch.zeros(())} for g in goals], tasks, 1, gen)
    assert moving.success.tolist() == [1.0, 1.0] and still.success.tolist() == [0.0, 0.0]
    assert (moving.returns() > still.returns()).all()
    # the oracle sees the goal appended to the observation
    oracle_env = TaskObservation(env)
    oracle_env.reset_task(tasks)
    obs = oracle_env.reset(torch.Generator().manual_seed(0))
    assert oracle_env.obs_dim == 42 and torch.equal(obs[:, 39:], torch.stack(goals))


def test_train_then_eval_ml1_reach_through_the_command_line(tmp_path):
    _metaworld()
    sets = [a for s in TINY for a in ("--set", s)]
    out = tmp_path / "ml1"
    r = _cli("train", "--preset", "maml-trpo-ml1-reach", *sets, "--out", str(out), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "MAML-TRPO on ml1-reach-v3 (horizon 10), 2 meta-iterations" in r.stdout
    assert "done: 2 meta-iterations" in r.stdout
    train_lines = [m for m in read_metrics(out / "metrics.jsonl") if m["kind"] == "train"]
    assert [m["step"] for m in train_lines] == [1, 2]
    assert all(0 <= m["success_before"] <= 1 and 0 <= m["success_after"] <= 1 for m in train_lines)

    r = _cli("eval", str(out), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "2 fixed ml1-reach-v3 tasks" in r.stdout and "success" in r.stdout
    record = json.loads((out / "eval_test.json").read_text())
    assert record["env"] == "ml1-reach-v3" and set(record["returns"]) == {"0", "1"}
    for res in record["returns"].values():
        assert res["n"] == 2 and len(res["success"]["per_task"]) == 2
