"""The inner step of MAML-RL: vanilla policy gradient (REINFORCE with a baseline) on a task's
trajectories, taken by the package's one :func:`~metalearn.algorithms.functional.inner_loop`.

The surrogate is pytorch-maml-rl's ``reinforce_loss``: ``-mean_b (1/len_b) sum_t
log pi(a_t | s_t) A_t``; its gradient is the REINFORCE estimate of the return's gradient.
"""

from __future__ import annotations

from torch import Tensor

from metalearn.algorithms.functional import Forward, autograd_grad, inner_loop
from metalearn.optim.update_rules import UpdateRule
from metalearn.rl.types import Trajectories
from metalearn.types import Params


def weighted_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean over each trajectory's real steps, then over trajectories; scalar from ``(T, B)``.

    Examples:
        >>> import torch
        >>> weighted_mean(torch.tensor([[1.0, 4.0], [3.0, 9.0]]), torch.tensor([[1.0, 1.0], [1.0, 0.0]]))
        tensor(3.)
    """
    return ((values * mask).sum(0) / mask.sum(0)).mean()


def log_probs(forward: Forward, params: Params, traj: Trajectories) -> Tensor:
    """``log pi(a_t | s_t)`` of the stored actions under ``params``, ``(T, B)``."""
    return forward(params, traj.obs).log_prob(traj.actions).sum(-1)


def reinforce_loss(forward: Forward, params: Params, traj: Trajectories, adv: Tensor) -> Tensor:
    """The policy-gradient surrogate ``-weighted_mean(log pi(a|s) * A)`` (a scalar).

    Args:
        forward: The policy as a pure function.
        params: Policy parameters.
        traj: Trajectories of one task.
        adv: Their advantages, ``(T, B)`` (constants).
    """
    return -weighted_mean(log_probs(forward, params, traj) * adv.detach(), traj.mask)


def adapt_policy(forward: Forward, params: Params, traj: Trajectories, adv: Tensor,
                 rule: UpdateRule, steps: int = 1, first_order: bool = False) -> Params:
    """Adapt ``params`` to one task by ``steps`` policy-gradient steps of ``rule`` on ``traj``.

    Every step uses the same trajectories (the paper takes one step; for more, roll out the
    adapted policy again and call this once per step). Differentiable with respect to
    ``params`` (second order) unless ``first_order``.

    Examples:
        >>> import torch
        >>> from metalearn.algorithms.functional import make_forward
        >>> from metalearn.optim.update_rules import sgd
        >>> from metalearn.rl.policies import GaussianMLPPolicy
        >>> policy = GaussianMLPPolicy(2, 2, hidden=(8,))
        >>> traj = Trajectories(torch.randn(3, 4, 2), torch.randn(3, 4, 2), torch.randn(3, 4),
        ...                     torch.ones(3, 4), torch.zeros(4, dtype=torch.long))
        >>> params = dict(policy.named_parameters())
        >>> adapted = adapt_policy(make_forward(policy), params, traj, torch.randn(3, 4), sgd(0.1))
        >>> sorted(adapted) == sorted(params), bool((adapted["log_std"] != params["log_std"]).any())
        (True, True)
    """

    def loss(p: Params) -> Tensor:
        return reinforce_loss(forward, p, traj, adv)

    adapted, _ = inner_loop(forward, params, None, None, rule, steps, first_order=first_order,
                            differentiate=autograd_grad, loss=loss)
    return adapted
