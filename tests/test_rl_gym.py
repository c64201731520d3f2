"""The gymnasium/MuJoCo side of metalearn.rl: HalfCheetahVel/Dir rewards, the vector adapter,
the gymnasium navigation wrapper, and the error when the `rl` extra is missing."""

from __future__ import annotations

import importlib
import subprocess
import sys

import numpy as np
import pytest
import torch

from metalearn.algorithms.functional import make_forward
from metalearn.rl.envs import ENVIRONMENTS, Navigation2D
from metalearn.rl.policies import GaussianMLPPolicy
from metalearn.rl.rollout import rollout


def _gym_envs():
    """metalearn.rl.gym_envs, or a visible skip naming what could not be imported."""
    for module in ("gymnasium", "mujoco"):
        try:
            importlib.import_module(module)
        except ImportError as e:
            pytest.skip(f"{module} does not import here ({e}); install it with "
                        "`pip install 'metalearn[rl]'` to run the MuJoCo tests")
    try:
        return importlib.import_module("metalearn.rl.gym_envs")
    except ImportError as e:
        pytest.skip(f"gymnasium's MuJoCo environments do not import here: {e}")


def test_missing_extra_names_the_pip_command():
    # a fresh interpreter in which gymnasium cannot be imported
    code = ("import sys; sys.modules['gymnasium'] = None\n"
            "try:\n    import metalearn.rl.gym_envs\nexcept ImportError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install 'metalearn[rl]'" in out.stdout


def test_navigation_gymnasium_wrapper_matches_the_vectorised_env():
    gym_envs = _gym_envs()
    env = gym_envs.Navigation2DEnv({"goal": [0.2, -0.1]}, horizon=3)
    vec = Navigation2D(num_envs=1)
    vec.reset_task({"goal": [0.2, -0.1]})
    vec.reset()
    obs, _ = env.reset(seed=0)
    assert env.action_space.shape == (2,) and obs.tolist() == [0.0, 0.0]
    for t, action in enumerate([[0.5, 0.0], [0.05, -0.2], [0.0, 0.0]]):
        obs, reward, terminated, truncated, _ = env.step(np.array(action))
        vobs, vr, vdone = vec.step(torch.tensor([action]))
        assert obs.tolist() == vobs[0].tolist() and reward == pytest.approx(float(vr[0]))
        assert terminated == bool(vdone[0]) and truncated == (t == 2)


@pytest.mark.parametrize("kind", ["vel", "dir"])
def test_halfcheetah_reward_is_the_task_reward(kind):
    gym_envs = _gym_envs()
    cls = gym_envs.HalfCheetahVelEnv if kind == "vel" else gym_envs.HalfCheetahDirEnv
    tasks = cls.sample_tasks(50, torch.Generator().manual_seed(0))
    if kind == "vel":
        v = [t["velocity"] for t in tasks]
        assert 0 <= min(v) and max(v) <= 2
    else:
        assert {t["direction"] for t in tasks} == {-1.0, 1.0}
    env = cls(tasks[0])
    env.reset(seed=1)
    rng = np.random.default_rng(0)
    for _ in range(5):
        action = rng.uniform(-1, 1, 6)
        x_before = float(env.data.qpos[0])
        obs, reward, terminated, _, info = env.step(action)
        v = (float(env.data.qpos[0]) - x_before) / env.dt
        assert v == pytest.approx(info["x_velocity"])
        forward = -abs(v - tasks[0]["velocity"]) if kind == "vel" else tasks[0]["direction"] * v
        assert reward == pytest.approx(forward - 0.05 * float(np.sum(action**2)), rel=1e-6)
        assert obs.dtype == np.float32 and obs.shape == (17,) and not terminated


def test_halfcheetah_vector_rollout_is_seeded_and_per_task():
    _gym_envs()
    env = ENVIRONMENTS["halfcheetah-vel"](num_envs=4, horizon=5)
    try:
        tasks = env.sample_tasks(2, torch.Generator().manual_seed(0))
        policy = GaussianMLPPolicy(env.obs_dim, env.act_dim, hidden=(8,))
        fwd, params = make_forward(policy), dict(policy.named_parameters())
        a = rollout(env, fwd, params, tasks, 2, torch.Generator().manual_seed(3))
        b = rollout(env, fwd, params, tasks, 2, torch.Generator().manual_seed(3))
        assert a.obs.shape == (5, 4, 17) and a.actions.shape == (5, 4, 6)
        assert torch.equal(a.obs, b.obs) and torch.equal(a.rewards, b.rewards)
        assert [t["velocity"] for t in env.envs.get_attr("task")] == \
            [tasks[0]["velocity"]] * 2 + [tasks[1]["velocity"]] * 2
        assert a.mask.all()
    finally:
        env.close()
