"""Returns, the linear feature baseline and GAE, vectorised over time and trajectories.

The baseline is rllab's ``LinearFeatureBaseline`` as used by the MAML paper and pytorch-maml-rl:
a ridge regression of the discounted returns on ``(obs, obs^2, t/100, (t/100)^2, (t/100)^3, 1)``,
fitted to each task's own trajectories (here all tasks at once, by one batched solve).
Generalised advantage estimation (Schulman et al. 2016) is computed as one matrix product with
the ``(T, T)`` matrix of discount powers instead of a backward loop over time steps.
"""

from __future__ import annotations

import torch
from torch import Tensor

from metalearn.rl.types import Trajectories


def discount_matrix(horizon: int, factor: float, dtype: torch.dtype = torch.float32) -> Tensor:
    """``D[t, s] = factor ** (s - t)`` for ``s >= t``, else 0; ``(horizon, horizon)``.

    ``D @ x`` is the discounted sum of ``x`` from each step onwards.

    Examples:
        >>> discount_matrix(3, 0.5).tolist()
        [[1.0, 0.5, 0.25], [0.0, 1.0, 0.5], [0.0, 0.0, 1.0]]
    """
    t = torch.arange(horizon, dtype=dtype)
    lag = t[None, :] - t[:, None]
    return torch.where(lag >= 0, factor ** lag.clamp(min=0), torch.zeros((), dtype=dtype))


def discounted_returns(rewards: Tensor, mask: Tensor, gamma: float) -> Tensor:
    """``R_t = sum_{s >= t} gamma^(s - t) r_s`` over real steps; ``(T, B)`` from ``(T, B)``.

    Examples:
        >>> discounted_returns(torch.ones(3, 1), torch.ones(3, 1), 0.5).flatten().tolist()
        [1.75, 1.5, 1.0]
    """
    return discount_matrix(rewards.shape[0], gamma, rewards.dtype) @ (rewards * mask)


def gae(rewards: Tensor, values: Tensor, mask: Tensor, gamma: float = 0.99,
        gae_lambda: float = 1.0) -> Tensor:
    """Generalised advantage estimates ``A_t = sum_l (gamma lambda)^l delta_{t+l}``, ``(T, B)``.

    ``delta_t = r_t + gamma V_{t+1} - V_t`` with ``V`` zero after the last real step (episodes
    that end, and the horizon, bootstrap with 0 as in pytorch-maml-rl).

    Args:
        rewards: ``(T, B)``.
        values: Baseline values ``(T, B)`` (treated as constants).
        mask: ``(T, B)``, 1 for real steps.
        gamma: Discount (0.99 in the paper).
        gae_lambda: GAE's lambda (1.0 in the paper: Monte-Carlo returns minus the baseline).

    Examples:
        >>> r, m = torch.ones(3, 1), torch.ones(3, 1)
        >>> gae(r, torch.zeros(3, 1), m, 0.5, 1.0).flatten().tolist()
        [1.75, 1.5, 1.0]
    """
    values = values.detach() * mask
    nxt = torch.cat([values[1:], torch.zeros_like(values[:1])])
    deltas = (rewards + gamma * nxt - values) * mask
    return discount_matrix(rewards.shape[0], gamma * gae_lambda, rewards.dtype) @ deltas


def baseline_features(obs: Tensor, mask: Tensor) -> Tensor:
    """rllab's features ``(obs, obs^2, t/100, (t/100)^2, (t/100)^3, 1)`` of real steps (zero
    elsewhere), ``(T, B, 2 * obs_dim + 4)`` from ``obs (T, B, obs_dim)`` and ``mask (T, B)``."""
    m = mask.unsqueeze(-1)
    t = torch.arange(obs.shape[0], dtype=obs.dtype).view(-1, 1, 1) * m / 100.0
    return torch.cat([obs * m, obs * obs * m, t, t**2, t**3, m], dim=-1)


class LinearFeatureBaseline:
    """Per-task ridge regression of returns on :func:`baseline_features`.

    Args:
        reg_coeff: Ridge coefficient (rllab's 1e-5); multiplied by 10, up to 5 times, while the
            solution is not finite.

    Examples:
        >>> traj = Trajectories(torch.randn(4, 2, 1), torch.zeros(4, 2, 1), torch.zeros(4, 2),
        ...                     torch.ones(4, 2), torch.tensor([0, 1]))
        >>> tuple(LinearFeatureBaseline().values(traj, torch.zeros(4, 2)).shape)
        (4, 2)
    """

    def __init__(self, reg_coeff: float = 1e-5):
        self.reg_coeff = float(reg_coeff)

    def fit(self, traj: Trajectories, returns: Tensor) -> Tensor:
        """Weights ``(n_tasks, n_features)``, task ``k`` fitted on its own real steps.

        Raises:
            FloatingPointError: the regression has no finite solution even with the largest
                ridge coefficient (non-finite observations or returns).
        """
        x = baseline_features(traj.obs, traj.mask)
        onehot = torch.nn.functional.one_hot(traj.task_ids, traj.n_tasks).to(x.dtype)  # (B, K)
        weight = traj.mask.unsqueeze(-1) * onehot  # (T, B, K): row belongs to task k
        xtx = torch.einsum("tbf,tbg,tbk->kfg", x, x, weight)
        xty = torch.einsum("tbf,tb,tbk->kf", x, returns, weight)
        eye = torch.eye(x.shape[-1], dtype=x.dtype)
        reg = self.reg_coeff
        for _ in range(5):
            # solve_ex: a singular system (a feature constant within a task, such as the
            # oracle's ±1 direction next to the constant term) is retried with more ridge
            # instead of raising
            coeffs, info = torch.linalg.solve_ex(xtx + reg * eye, xty.unsqueeze(-1))
            coeffs = coeffs.squeeze(-1)
            if not bool(info.any()) and torch.isfinite(coeffs).all():
                return coeffs
            reg *= 10
        # still singular: the minimum-norm least-squares solution (pseudo-inverse)
        coeffs = (torch.linalg.pinv(xtx + reg / 10 * eye, hermitian=True) @ xty.unsqueeze(-1)).squeeze(-1)
        if torch.isfinite(coeffs).all():
            return coeffs
        raise FloatingPointError(f"the linear baseline has no finite solution even with ridge "
                                 f"{reg / 10:g}: check the observations and rewards for NaN/inf")

    def values(self, traj: Trajectories, returns: Tensor) -> Tensor:
        """Fit to ``returns`` ``(T, B)`` and return the fitted values ``(T, B)`` (0 where masked)."""
        coeffs = self.fit(traj, returns)
        x = baseline_features(traj.obs, traj.mask)
        return torch.einsum("tbf,bf->tb", x, coeffs[traj.task_ids])


def normalize_per_task(values: Tensor, mask: Tensor, task_ids: Tensor, eps: float = 1e-8) -> Tensor:
    """Standardise ``values`` ``(T, B)`` to mean 0, std 1 over each task's real steps."""
    onehot = torch.nn.functional.one_hot(task_ids).to(values.dtype)  # (B, K)
    count = (mask @ onehot).sum(0)  # (K,)
    mean = ((values * mask) @ onehot).sum(0) / count
    centred = (values - mean[task_ids]) * mask
    var = ((centred**2) @ onehot).sum(0) / count
    return centred / (var.sqrt()[task_ids] + eps)


def advantages(traj: Trajectories, gamma: float = 0.99, gae_lambda: float = 1.0,
               baseline: LinearFeatureBaseline | None = None, normalize: bool = True) -> Tensor:
    """Advantages ``(T, B)`` of ``traj``: per-task baseline fit, GAE, then (by default) per-task
    standardisation, as pytorch-maml-rl's ``compute_advantages(normalize=True)``.

    Examples:
        >>> gen = torch.Generator().manual_seed(0)
        >>> traj = Trajectories(torch.randn(5, 4, 2, generator=gen), torch.zeros(5, 4, 2),
        ...                     torch.randn(5, 4, generator=gen), torch.ones(5, 4),
        ...                     torch.tensor([0, 0, 1, 1]))
        >>> adv = advantages(traj)
        >>> abs(float(adv[:, :2].mean())) < 1e-6, round(float(adv[:, 2:].std(unbiased=False)), 3)
        (True, 1.0)
    """
    baseline = baseline or LinearFeatureBaseline()
    returns = discounted_returns(traj.rewards, traj.mask, gamma)
    values = baseline.values(traj, returns)
    adv = gae(traj.rewards, values, traj.mask, gamma, gae_lambda)
    return normalize_per_task(adv, traj.mask, traj.task_ids) if normalize else adv
