"""The factored Hessian-vector product of MAML-TRPO (``J^T H J``) against the third-order one,
finite differences of the KL's gradient, and a whole TRPO step."""

from __future__ import annotations

import pytest
import torch
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from metalearn.rl.envs import Navigation2D
from metalearn.rl.maml_trpo import MAMLTRPO, MAMLTRPOConfig
from metalearn.rl.policies import GaussianMLPPolicy
from metalearn.rl.rollout import rollout
from metalearn.rl.types import Trajectories

CONFIGS = [{}, {"inner_rule": "meta_sgd"}, {"first_order": True}, {"inner_steps": 2}]
IDS = ["sgd", "meta-sgd", "first-order", "two-steps"]


def g(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def as_double(t: Trajectories) -> Trajectories:
    return Trajectories(t.obs.double(), t.actions.double(), t.rewards.double(), t.mask.double(),
                        t.task_ids)


def problem(hvp: str, seed: int = 0, **config):
    """A tiny float64 navigation problem: the algorithm and its per-task (train, adv, valid, adv)."""
    torch.manual_seed(seed)
    algo = MAMLTRPO(GaussianMLPPolicy(2, 2, hidden=(6,)), MAMLTRPOConfig(hvp=hvp, **config))
    env = Navigation2D(num_envs=2 * 3, horizon=6)
    tasks = env.sample_tasks(2, g(seed))
    train = rollout(env, algo.forward_fn, algo.policy_params(), tasks, 3, g(1))
    valid = rollout(env, algo.forward_fn, algo.adapt(train), tasks, 3, g(2))
    algo.double()
    train, valid = as_double(train), as_double(valid)
    batch = [(train.task(k), algo.advantages(train.task(k)), valid.task(k),
              algo.advantages(valid.task(k))) for k in range(2)]
    return algo, batch, train, valid


def hvp_of(algo, batch, v):
    params = [p for p in algo.parameters() if p.requires_grad]
    adapted = []
    _, kl, _ = algo._surrogates(batch, None, algo.config.first_order, adapted=adapted)
    return algo.kl_hvp(kl, params, adapted)(v)


@pytest.mark.parametrize("config", CONFIGS, ids=IDS)
def test_factored_hvp_equals_the_third_order_one_and_finite_differences(config):
    algo, batch, _, _ = problem("factored", **config)
    params = [p for p in algo.parameters() if p.requires_grad]
    n = sum(p.numel() for p in params)
    vs = torch.randn(3, n, generator=g(7), dtype=torch.float64)
    factored = torch.stack([hvp_of(algo, batch, v) for v in vs])
    algo.config.hvp = "autograd"
    third = torch.stack([hvp_of(algo, batch, v) for v in vs])
    torch.testing.assert_close(factored, third, rtol=1e-9, atol=1e-12)
    assert third.abs().max() > 1e-2  # a real curvature, not zeros on both sides

    # central differences of the KL's gradient (the reference policies fixed at theta_0)
    _, _, old = algo._surrogates(batch, None, first_order=True)
    start = parameters_to_vector(params).detach().clone()

    def kl_grad_at(vec):
        with torch.no_grad():
            vector_to_parameters(vec, params)
        _, kl, _ = algo._surrogates(batch, old, algo.config.first_order)
        return parameters_to_vector(torch.autograd.grad(kl, params))

    if config.get("first_order"):
        return  # first order differentiates a graph with the inner gradient held constant,
        # not the KL as a function of theta: there is nothing to difference
    eps = 1e-5
    for v, hv in zip(vs, factored):
        fd = (kl_grad_at(start + eps * v) - kl_grad_at(start - eps * v)) / (2 * eps)
        torch.testing.assert_close(hv, fd, rtol=1e-5, atol=1e-8)
    kl_grad_at(start)


@pytest.mark.parametrize("config", CONFIGS, ids=IDS)
def test_a_trpo_step_is_the_same_with_either_hvp(config):
    # damping 1e-2 keeps conjugate gradient well conditioned: with 1e-5 the tiny problem's
    # condition number (~1e5) amplifies the last-bit differences of the two HVPs to ~1e-4
    results = []
    for mode in ("factored", "autograd"):
        algo, _, train, valid = problem(mode, cg_damping=1e-2, **config)
        metrics = algo.step(train, valid)
        results.append((metrics, parameters_to_vector(algo.parameters()).detach()))
    (m_fac, p_fac), (m_auto, p_auto) = results
    assert m_fac["step_fraction"] > 0 and m_fac["ls_tries"] == m_auto["ls_tries"]
    for key in ("loss_before", "loss_after", "kl_after", "step_fraction", "grad_norm"):
        assert m_fac[key] == pytest.approx(m_auto[key], rel=1e-7, abs=1e-10), key
    torch.testing.assert_close(p_fac, p_auto, rtol=1e-7, atol=1e-10)


def test_unknown_hvp_mode_names_the_choices():
    with pytest.raises(ValueError, match="'factored' or 'autograd'"):
        MAMLTRPO(GaussianMLPPolicy(2, 2, hidden=(4,)), MAMLTRPOConfig(hvp="exact"))
