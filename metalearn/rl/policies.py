"""The Gaussian MLP policy of MAML-RL (Finn et al. 2017; pytorch-maml-rl ``NormalMLPPolicy``).

A plain ``nn.Module``: adapted policies are parameter dicts evaluated through
:func:`metalearn.algorithms.functional.make_forward`, so the inner loop is the package's one
:func:`~metalearn.algorithms.functional.inner_loop`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.distributions import Normal


def check_action_space(space) -> int:
    """The action dimension of a continuous (gymnasium ``Box``-like) action space.

    Args:
        space: A gymnasium space (anything with ``shape``; ``Discrete`` has ``n`` and an empty
            shape).

    Raises:
        TypeError: a discrete action space (``Discrete``, ``MultiDiscrete``, ``MultiBinary``), which
            a Gaussian policy cannot produce.

    Examples:
        >>> class Box:
        ...     shape, dtype = (6,), "float32"
        >>> check_action_space(Box())
        6
    """
    kind = type(space).__name__
    discrete = kind in ("Discrete", "MultiDiscrete", "MultiBinary") or hasattr(space, "n") \
        or not getattr(space, "shape", None)
    if discrete:
        raise TypeError(f"the action space is discrete ({kind}: {space!r}) but GaussianMLPPolicy "
                        "needs a continuous action space (a gymnasium Box); use a continuous "
                        "version of the environment or a categorical policy")
    return int(math.prod(space.shape))


class GaussianMLPPolicy(nn.Module):
    """``pi(a | s) = N(mu(s), diag(exp(log_std))^2)`` with an MLP mean and a learnable log-std.

    Args:
        obs_dim: Observation size.
        act_dim: Action size.
        hidden: Hidden layer widths (64-64 in the paper).
        init_std: Initial standard deviation of every action coordinate.
        min_std: The standard deviation is kept above this (pytorch-maml-rl's 1e-6), so the
            log-density stays finite.

    ``forward(obs (..., obs_dim)) -> Normal`` with ``loc`` and ``scale`` ``(..., act_dim)``.

    Examples:
        >>> from metalearn.algorithms.functional import make_forward
        >>> policy = GaussianMLPPolicy(2, 2)
        >>> pi = make_forward(policy)(dict(policy.named_parameters()), torch.zeros(5, 2))
        >>> tuple(pi.loc.shape), pi.scale[0].tolist()
        ((5, 2), [1.0, 1.0])
    """

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int] = (64, 64),
                 init_std: float = 1.0, min_std: float = 1e-6):
        super().__init__()
        sizes = [obs_dim, *hidden]
        layers: list[nn.Module] = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(a, b), nn.Tanh()]
        layers.append(nn.Linear(sizes[-1], act_dim))
        self.mean = nn.Sequential(*layers)
        self.log_std = nn.Parameter(torch.full((act_dim,), math.log(init_std)))
        self.min_log_std = math.log(min_std)
        self.obs_dim, self.act_dim = int(obs_dim), int(act_dim)

    @classmethod
    def for_spaces(cls, observation_space, action_space, **kwargs) -> GaussianMLPPolicy:
        """A policy sized for gymnasium spaces.

        Raises:
            TypeError: a discrete action space (see :func:`check_action_space`).
        """
        act_dim = check_action_space(action_space)
        return cls(int(math.prod(observation_space.shape)), act_dim, **kwargs)

    def forward(self, obs: Tensor) -> Normal:
        log_std = self.log_std.clamp(min=self.min_log_std)
        loc = self.mean(obs)
        return Normal(loc, log_std.exp().expand_as(loc))
