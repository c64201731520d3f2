"""Meta-RL core: navigation dynamics, rollouts, baseline/GAE, the PG estimator, CG, TRPO, and the
second-order meta-gradient through the inner policy-gradient step."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import kl_divergence

from metalearn.algorithms.functional import make_forward
from metalearn.optim.update_rules import sgd
from metalearn.rl.envs import Navigation2D, check_horizon
from metalearn.rl.maml_trpo import (
    MAMLTRPO,
    MAMLTRPOConfig,
    conjugate_gradient,
    line_search,
    meta_iteration,
)
from metalearn.rl.policies import GaussianMLPPolicy, check_action_space
from metalearn.rl.policy_gradient import adapt_policy, reinforce_loss, weighted_mean
from metalearn.rl.returns import (
    LinearFeatureBaseline,
    advantages,
    baseline_features,
    discounted_returns,
    gae,
)
from metalearn.rl.rollout import rollout
from metalearn.rl.types import Trajectories


def g(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------- environment


def test_navigation_dynamics_and_reward_equal_a_hand_computation():
    env = Navigation2D(num_envs=2)
    env.reset_task([{"goal": [0.15, 0.0]}, {"goal": [-0.2, 0.3]}])
    assert env.reset(g(0)).tolist() == [[0.0, 0.0], [0.0, 0.0]]
    # env 0: clipped to 0.1, then 0.045 (within 0.01 of the goal: done); env 1: (-0.05, 0.2 -> 0.1)
    obs, r, done = env.step(torch.tensor([[0.7, -0.02], [-0.05, 0.2]]))
    torch.testing.assert_close(obs, torch.tensor([[0.1, -0.02], [-0.05, 0.1]]))
    torch.testing.assert_close(r, -torch.tensor([math.hypot(0.05, 0.02), math.hypot(0.15, 0.2)]))
    assert done.tolist() == [False, False]
    obs, r, done = env.step(torch.tensor([[0.045, 0.015], [0.0, 0.0]]))
    torch.testing.assert_close(obs[0], torch.tensor([0.145, -0.005]))
    torch.testing.assert_close(r[0], -torch.tensor(math.hypot(0.005, 0.005)))
    assert done.tolist() == [True, False]
    # a finished environment stands still with reward 0
    obs2, r2, done2 = env.step(torch.tensor([[0.1, 0.1], [0.1, 0.0]]))
    torch.testing.assert_close(obs2[0], obs[0])
    assert r2[0] == 0 and done2.tolist() == [True, False]


def test_navigation_tasks_are_uniform_goals_from_the_generator():
    env = Navigation2D()
    a, b = env.sample_tasks(500, g(3)), env.sample_tasks(500, g(3))
    assert a == b
    goals = torch.tensor([t["goal"] for t in a])
    assert goals.min() >= -0.5 and goals.max() <= 0.5 and goals.mean(0).abs().max() < 0.05


def test_horizon_zero_is_a_clear_error():
    with pytest.raises(ValueError, match="horizon must be a whole number of steps >= 1"):
        Navigation2D(horizon=0)
    with pytest.raises(ValueError, match="horizon"):
        check_horizon(-3)
    policy = GaussianMLPPolicy(2, 2, hidden=(4,))
    env = Navigation2D(num_envs=2)
    with pytest.raises(ValueError, match="horizon must be"):
        rollout(env, make_forward(policy), dict(policy.named_parameters()),
                env.sample_tasks(1, g(0)), 2, g(0), horizon=0)


def test_one_batched_step_equals_one_environment_at_a_time():
    tasks = Navigation2D().sample_tasks(5, g(1))
    actions = torch.randn(5, 2, generator=g(2)) * 0.2
    batched = Navigation2D(num_envs=5)
    batched.reset_task(tasks)
    batched.reset()
    obs, r, _ = batched.step(actions)
    for i, task in enumerate(tasks):
        one = Navigation2D(num_envs=1)
        one.reset_task(task)
        one.reset()
        o1, r1, _ = one.step(actions[i:i + 1])
        torch.testing.assert_close(o1[0], obs[i])
        torch.testing.assert_close(r1[0], r[i])


# ---------------------------------------------------------------- policy and rollouts


def test_discrete_action_space_names_discrete_vs_continuous():
    class Discrete:
        n, shape = 4, ()

    with pytest.raises(TypeError, match="discrete.*continuous"):
        check_action_space(Discrete())
    with pytest.raises(TypeError, match="continuous action space"):
        GaussianMLPPolicy.for_spaces(type("Box", (), {"shape": (3,)})(), Discrete())


def test_seeded_rollouts_are_reproducible():
    policy = GaussianMLPPolicy(2, 2, hidden=(8,))
    fwd, params = make_forward(policy), dict(policy.named_parameters())
    env = Navigation2D(num_envs=6, horizon=12)
    tasks = env.sample_tasks(3, g(0))
    a = rollout(env, fwd, params, tasks, 2, g(7))
    b = rollout(env, fwd, params, tasks, 2, g(7))
    c = rollout(env, fwd, params, tasks, 2, g(8))
    for name in ("obs", "actions", "rewards", "mask", "task_ids"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert not torch.equal(a.actions, c.actions)
    assert a.task_ids.tolist() == [0, 0, 1, 1, 2, 2]
    # per-task parameters: the same dict for every task is the same rollout
    d = rollout(env, fwd, [params] * 3, tasks, 2, g(7))
    torch.testing.assert_close(d.actions, a.actions)


def test_rollout_masks_steps_after_the_goal_is_reached():
    policy = GaussianMLPPolicy(2, 2, hidden=(4,), init_std=1e-6)
    with torch.no_grad():  # mean action (0.1, 0): reaches (0.3, 0) after 3 steps
        for p in policy.parameters():
            p.zero_()
        policy.mean[-1].bias.copy_(torch.tensor([0.1, 0.0]))
        policy.log_std.fill_(math.log(1e-6))
    env = Navigation2D(num_envs=1, horizon=6)
    traj = rollout(env, make_forward(policy), dict(policy.named_parameters()),
                   [{"goal": [0.3, 0.0]}], 1, g(0))
    assert traj.mask[:, 0].tolist() == [1, 1, 1, 0, 0, 0]
    assert traj.rewards[3:].abs().sum() == 0 and traj.obs[3:].abs().sum() == 0
    torch.testing.assert_close(traj.returns(), torch.tensor([-(0.2 + 0.1 + 0.0)]), atol=1e-5, rtol=0)


class NaNAtStep(Navigation2D):
    def step(self, actions):
        obs, r, done = super().step(actions)
        self.t = getattr(self, "t", 0) + 1
        if self.t == 4:
            r = r.clone()
            r[3] = float("nan")
        return obs, r, done


def test_nan_reward_names_the_task_and_the_step():
    policy = GaussianMLPPolicy(2, 2, hidden=(4,))
    env = NaNAtStep(num_envs=4, horizon=10)
    tasks = env.sample_tasks(2, g(0))
    with pytest.raises(FloatingPointError, match=r"non-finite reward at step 3 of task 1"):
        rollout(env, make_forward(policy), dict(policy.named_parameters()), tasks, 2, g(0))


def test_rollout_checks_the_environment_size():
    policy = GaussianMLPPolicy(2, 2, hidden=(4,))
    with pytest.raises(ValueError, match="num_envs=6"):
        rollout(Navigation2D(num_envs=4), make_forward(policy), dict(policy.named_parameters()),
                Navigation2D().sample_tasks(3, g(0)), 2, g(0))


# ---------------------------------------------------------------- returns, baseline, GAE


def random_trajectories(t=7, b=6, n_tasks=2, obs_dim=3, seed=0, ragged=True):
    gen = g(seed)
    lengths = torch.randint(2, t + 1, (b,), generator=gen) if ragged else torch.full((b,), t)
    mask = (torch.arange(t)[:, None] < lengths[None]).float()
    obs = torch.randn(t, b, obs_dim, generator=gen) * mask[..., None]
    return Trajectories(obs, torch.randn(t, b, 2, generator=gen) * mask[..., None],
                        torch.randn(t, b, generator=gen) * mask, mask,
                        torch.arange(n_tasks).repeat_interleave(b // n_tasks))


def test_gae_and_returns_equal_the_backward_recursion():
    traj = random_trajectories()
    values = torch.randn(traj.rewards.shape, generator=g(5))
    gamma, lam = 0.9, 0.7
    adv = gae(traj.rewards, values, traj.mask, gamma, lam)
    ret = discounted_returns(traj.rewards, traj.mask, gamma)
    v = values * traj.mask
    ref_adv, ref_ret = torch.zeros_like(adv), torch.zeros_like(ret)
    run_adv, run_ret = torch.zeros(traj.n_trajectories), torch.zeros(traj.n_trajectories)
    for t in reversed(range(traj.horizon)):
        nxt = v[t + 1] if t + 1 < traj.horizon else torch.zeros_like(v[0])
        delta = (traj.rewards[t] + gamma * nxt - v[t]) * traj.mask[t]
        run_adv = delta + gamma * lam * run_adv
        run_ret = traj.rewards[t] * traj.mask[t] + gamma * run_ret
        ref_adv[t], ref_ret[t] = run_adv, run_ret
    torch.testing.assert_close(adv, ref_adv)
    torch.testing.assert_close(ret, ref_ret)


def test_linear_baseline_is_fitted_per_task():
    traj = random_trajectories(t=30, b=8, n_tasks=2, seed=1)
    traj = Trajectories(traj.obs.double(), traj.actions.double(), traj.rewards.double(),
                        traj.mask.double(), traj.task_ids)
    feats = baseline_features(traj.obs, traj.mask)
    true = torch.randn(2, feats.shape[-1], generator=g(2), dtype=torch.float64)
    returns = torch.einsum("tbf,bf->tb", feats, true[traj.task_ids])
    baseline = LinearFeatureBaseline(reg_coeff=1e-12)
    # returns linear in each task's own features are fitted exactly (two different lines)
    torch.testing.assert_close(baseline.values(traj, returns), returns, atol=1e-6, rtol=1e-6)
    # each task's fit uses its own steps only: task 1's returns do not move task 0's values
    returns2 = returns.clone()
    returns2[:, traj.task_ids == 1] += 5.0 * traj.mask[:, traj.task_ids == 1]
    cols = traj.task_ids == 0
    torch.testing.assert_close(baseline.values(traj, returns2)[:, cols], returns[:, cols],
                               atol=1e-6, rtol=1e-6)
    # one joint fit over both tasks could not fit both lines
    pooled = Trajectories(traj.obs, traj.actions, traj.rewards, traj.mask, torch.zeros_like(traj.task_ids))
    assert (baseline.values(pooled, returns) - returns).abs().max() > 1e-2


def test_advantages_are_standardised_per_task():
    traj = random_trajectories(seed=3)
    adv = advantages(traj)
    for k in range(traj.n_tasks):
        cols = traj.task_ids == k
        real = adv[:, cols][traj.mask[:, cols] > 0]
        assert abs(float(real.mean())) < 1e-5 and abs(float(real.std(unbiased=False)) - 1) < 1e-4
    assert (adv[traj.mask == 0] == 0).all()


# ---------------------------------------------------------------- policy gradient


def test_policy_gradient_estimator_is_unbiased_on_a_linear_gaussian_bandit():
    """a ~ N(w + b, sigma^2) (constant observation 1), r = -(a - c)^2:
    J = -(mu - c)^2 - sigma^2, dJ/dw = dJ/db = -2 (mu - c), dJ/dlog sigma = -2 sigma^2."""
    torch.manual_seed(0)
    policy = GaussianMLPPolicy(1, 1, hidden=(), init_std=0.5).double()
    with torch.no_grad():
        policy.mean[0].weight.fill_(0.3)
        policy.mean[0].bias.fill_(0.1)
    fwd, params = make_forward(policy), dict(policy.named_parameters())
    n, c, mu, sigma = 200_000, 1.0, 0.4, 0.5
    obs = torch.ones(1, n, 1, dtype=torch.float64)
    actions = mu + sigma * torch.randn(1, n, 1, generator=g(0), dtype=torch.float64)
    rewards = -(actions[..., 0] - c) ** 2
    traj = Trajectories(obs, actions, rewards, torch.ones(1, n, dtype=torch.float64),
                        torch.zeros(n, dtype=torch.long))
    loss = reinforce_loss(fwd, params, traj, rewards)
    grads = dict(zip(params, torch.autograd.grad(loss, list(params.values()))))
    # the surrogate's gradient is minus the estimate of dJ
    torch.testing.assert_close(-grads["mean.0.weight"].squeeze(), torch.tensor(-2 * (mu - c), dtype=torch.float64),
                               atol=0.02, rtol=0)
    torch.testing.assert_close(-grads["mean.0.bias"].squeeze(), torch.tensor(-2 * (mu - c), dtype=torch.float64),
                               atol=0.02, rtol=0)
    torch.testing.assert_close(-grads["log_std"].squeeze(), torch.tensor(-2 * sigma**2, dtype=torch.float64),
                               atol=0.02, rtol=0)


def test_inner_step_is_one_sgd_step_on_the_reinforce_loss():
    policy = GaussianMLPPolicy(3, 2, hidden=(5,))
    fwd, params = make_forward(policy), dict(policy.named_parameters())
    traj = random_trajectories(seed=4)
    adv = advantages(traj)
    adapted = adapt_policy(fwd, params, traj, adv, sgd(0.1))
    grads = torch.autograd.grad(reinforce_loss(fwd, params, traj, adv), list(params.values()))
    for (name, p), gr in zip(params.items(), grads):
        torch.testing.assert_close(adapted[name], p - 0.1 * gr)


def test_weighted_mean_averages_each_trajectory_over_its_own_steps():
    values = torch.tensor([[2.0, 1.0], [4.0, 5.0], [6.0, 9.0]])
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0], [1.0, 0.0]])
    assert float(weighted_mean(values, mask)) == pytest.approx((4.0 + 1.0) / 2)


# ---------------------------------------------------------------- TRPO pieces


def test_conjugate_gradient_solves_a_known_spd_system():
    a = torch.randn(6, 6, generator=g(0), dtype=torch.float64)
    spd = a @ a.T + 6 * torch.eye(6, dtype=torch.float64)
    b = torch.randn(6, generator=g(1), dtype=torch.float64)
    x = conjugate_gradient(lambda v: spd @ v, b, iters=6)
    torch.testing.assert_close(x, torch.linalg.solve(spd, b))
    # fewer iterations than the dimension: an approximation that still improves on zero
    x3 = conjugate_gradient(lambda v: spd @ v, b, iters=3)
    assert (spd @ x3 - b).norm() < b.norm()


def test_line_search_accepts_only_improvement_within_the_trust_region():
    tried = []

    def evaluate(fraction):
        tried.append(fraction)
        return (0.1 if fraction > 0.5 else -fraction), fraction * 0.01

    fraction, tries = line_search(evaluate, max_kl=0.004, max_steps=15, backtrack_ratio=0.5)
    assert fraction == 0.25 and tries == 3 and tried == [1.0, 0.5, 0.25]
    assert line_search(lambda f: (1.0, 0.0), max_kl=0.01, max_steps=4) == (None, 4)


def nav_setup(n_tasks=2, n_per_task=4, horizon=8, seed=0, hidden=(8,)):
    torch.manual_seed(seed)
    policy = GaussianMLPPolicy(2, 2, hidden=hidden)
    env = Navigation2D(num_envs=n_tasks * n_per_task, horizon=horizon)
    tasks = env.sample_tasks(n_tasks, g(seed))
    return policy, env, tasks


def mean_kl(algo, train, valid, before_params):
    """Mean over tasks of the KL between the adapted policies at ``before_params`` and now."""
    kls = []
    for k in range(train.n_tasks):
        tr, va = train.task(k), valid.task(k)
        adv = algo.advantages(tr)
        now = algo.forward_fn(algo.adapt_task(tr, adv, first_order=True), va.obs)
        ref_params = adapt_policy(algo.forward_fn, before_params, tr, adv, algo.rule(), first_order=True)
        ref = algo.forward_fn(ref_params, va.obs)
        kls.append(weighted_mean(kl_divergence(now, ref).sum(-1), va.mask))
    return float(torch.stack(kls).mean().detach())


@pytest.mark.parametrize("first_order", [False, True])
def test_trpo_step_respects_the_kl_bound_and_improves_the_surrogate(first_order):
    policy, env, tasks = nav_setup()
    algo = MAMLTRPO(policy, MAMLTRPOConfig(max_kl=1e-3, first_order=first_order))
    train = rollout(env, algo.forward_fn, algo.policy_params(), tasks, 4, g(1))
    valid = rollout(env, algo.forward_fn, algo.adapt(train), tasks, 4, g(2))
    before = {k: v.detach().clone() for k, v in algo.policy_params().items()}
    metrics = algo.step(train, valid)
    assert metrics["step_fraction"] > 0, "the line search rejected every step"
    assert metrics["loss_after"] < metrics["loss_before"]
    kl = mean_kl(algo, train, valid, before)
    assert 0 < kl < 1e-3
    assert kl == pytest.approx(metrics["kl_after"], rel=1e-4)


def test_rejected_line_search_restores_the_parameters(monkeypatch):
    from metalearn.rl import maml_trpo

    def reject_after_trying(evaluate, max_kl, max_steps, ratio):
        evaluate(1.0)  # moves the parameters to the full step
        return None, max_steps

    monkeypatch.setattr(maml_trpo, "line_search", reject_after_trying)
    policy, env, tasks = nav_setup()
    algo = MAMLTRPO(policy)
    train = rollout(env, algo.forward_fn, algo.policy_params(), tasks, 4, g(1))
    valid = rollout(env, algo.forward_fn, algo.adapt(train), tasks, 4, g(2))
    before = [p.detach().clone() for p in algo.parameters()]
    metrics = algo.step(train, valid)
    assert metrics["step_fraction"] == 0.0 and metrics["kl_after"] == 0.0
    assert metrics["loss_after"] == metrics["loss_before"]
    for p, q in zip(algo.parameters(), before):
        assert torch.equal(p, q)


def test_second_order_meta_gradient_equals_finite_differences():
    """d/dtheta of the post-adaptation surrogate L(adapt(theta)) with fixed trajectories (fixed
    noise) and a fixed reference policy, against central differences in float64."""
    policy, env, tasks = nav_setup(n_tasks=2, n_per_task=3, horizon=5, hidden=(4,))
    algo = MAMLTRPO(policy)
    train = rollout(env, algo.forward_fn, algo.policy_params(), tasks, 3, g(1))
    valid = rollout(env, algo.forward_fn, algo.adapt(train), tasks, 3, g(2))
    algo.double()
    train = Trajectories(train.obs.double(), train.actions.double(), train.rewards.double(),
                         train.mask.double(), train.task_ids)
    valid = Trajectories(valid.obs.double(), valid.actions.double(), valid.rewards.double(),
                         valid.mask.double(), valid.task_ids)
    batch = [(train.task(k), algo.advantages(train.task(k)), valid.task(k),
              algo.advantages(valid.task(k))) for k in range(2)]
    _, _, old = algo._surrogates(batch, None, first_order=True)
    params = list(algo.parameters())
    loss, _, _ = algo._surrogates(batch, old, first_order=False)
    exact = torch.cat([gr.flatten() for gr in torch.autograd.grad(loss, params)])
    loss_fo, _, _ = algo._surrogates(batch, old, first_order=True)
    first = torch.cat([gr.flatten() for gr in torch.autograd.grad(loss_fo, params)])

    def value_at(vec):
        with torch.no_grad():
            torch.nn.utils.vector_to_parameters(vec, params)
        value, _, _ = algo._surrogates(batch, old, first_order=True)
        return float(value.detach())

    start = torch.nn.utils.parameters_to_vector(params).detach().clone()
    gen = g(9)
    eps = 1e-5
    for _ in range(3):
        d = torch.randn(start.shape, generator=gen, dtype=torch.float64)
        fd = (value_at(start + eps * d) - value_at(start - eps * d)) / (2 * eps)
        assert float(exact @ d) == pytest.approx(fd, rel=1e-5, abs=1e-8)
    value_at(start)
    # the second-order term matters on this problem: first order differs from finite differences
    assert (exact - first).norm() > 1e-3 * exact.norm()


@pytest.mark.parametrize("config", [MAMLTRPOConfig(), MAMLTRPOConfig(first_order=True),
                                    MAMLTRPOConfig(inner_rule="meta_sgd")],
                         ids=["trpo", "trpo-first-order", "trpo-meta-sgd"])
def test_meta_iteration_runs_and_reports_returns(config):
    policy, env, tasks = nav_setup(n_tasks=2, n_per_task=3, horizon=6)
    algo = MAMLTRPO(policy, config)
    before = [p.detach().clone() for p in algo.parameters()]
    metrics = meta_iteration(algo, env, tasks, 3, g(0))
    assert {"return_before", "return_after", "loss_before", "loss_after", "kl_after"} <= set(metrics)
    assert metrics["kl_after"] < config.max_kl
    moved = any(not torch.equal(p, q) for p, q in zip(algo.parameters(), before))
    assert moved == (metrics["step_fraction"] > 0)


def test_ppo_outer_step_needs_an_optimizer_and_moves_the_parameters():
    policy, env, tasks = nav_setup(n_tasks=2, n_per_task=3, horizon=6)
    algo = MAMLTRPO(policy, MAMLTRPOConfig(outer="ppo", ppo_epochs=3))
    with pytest.raises(ValueError, match="optimizer=torch.optim.Adam"):
        meta_iteration(algo, env, tasks, 3, g(0))
    opt = torch.optim.Adam(algo.parameters(), lr=1e-2)
    before = [p.detach().clone() for p in algo.parameters()]
    metrics = meta_iteration(algo, env, tasks, 3, g(0), optimizer=opt)
    assert metrics["loss_after"] < metrics["loss_before"]
    assert any(not torch.equal(p, q) for p, q in zip(algo.parameters(), before))


def test_meta_training_improves_post_adaptation_return_on_navigation():
    """A few MAML-TRPO iterations on tiny navigation raise the post-adaptation return."""
    policy, env, tasks = nav_setup(n_tasks=4, n_per_task=5, horizon=20, hidden=(16,))
    algo = MAMLTRPO(policy, MAMLTRPOConfig(max_kl=0.05))
    eval_tasks = env.sample_tasks(4, g(100))

    def post_return():
        train = rollout(env, algo.forward_fn, algo.policy_params(), eval_tasks, 5, g(200))
        valid = rollout(env, algo.forward_fn, algo.adapt(train), eval_tasks, 5, g(201))
        return float(valid.returns().mean())

    start = post_return()
    gen = g(5)
    for _ in range(10):
        meta_iteration(algo, env, env.sample_tasks(4, gen), 5, gen)
    assert post_return() > start


def test_linear_baseline_survives_a_feature_constant_within_a_task():
    # the oracle's task input (HalfCheetahDir: +-1 per task) duplicates the constant feature,
    # so X^T X is singular; the fit must still give finite values, as a plain solve did not
    traj = random_trajectories(t=30, b=8, n_tasks=2, seed=4)
    obs = traj.obs.clone()
    obs[..., 0] = torch.where(traj.task_ids == 0, 1.0, -1.0).to(obs.dtype)  # constant per task
    obs[..., 1] = 0.0  # and a feature that is always zero
    traj = Trajectories(obs, traj.actions, traj.rewards, traj.mask, traj.task_ids)
    feats = baseline_features(traj.obs, traj.mask)
    returns = torch.randn(traj.mask.shape, generator=g(5)) * traj.mask
    xtx = torch.einsum("tbf,tbg->fg", feats[:, traj.task_ids == 0], feats[:, traj.task_ids == 0])
    assert torch.linalg.matrix_rank(xtx.double()) < xtx.shape[0]  # the case is really singular
    values = LinearFeatureBaseline(reg_coeff=0.0).values(traj, returns)
    assert torch.isfinite(values).all()
    assert (values[traj.mask == 0] == 0).all()
