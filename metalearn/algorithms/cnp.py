"""Conditional Neural Processes for few-shot regression.

Garnelo, Rosenbaum, Maddison, Ramalho, Saxton, Shanahan, Teh, Rezende and Eslami, "Conditional
Neural Processes", ICML 2018 (arXiv:1807.01613).

A model-based meta-learner: no gradient steps at test time. The backbone embeds inputs,
``f(x)``; an encoder maps every support pair to a representation ``r_i = h([f(x_i), y_i])``;
the mean ``r = mean_i r_i`` summarises the task (invariant to the order of the support set, and
defined for any number of support points); a decoder maps each query input to a Gaussian,
``(mu, sigma) = g([f(x*), r])`` with ``sigma = min_std + (1 - min_std) softplus(.)`` (the
paper's lower bound, which keeps the likelihood finite). Meta-training minimises the Gaussian
negative log-likelihood of the query targets.

Option ``attention`` adds the deterministic path of Attentive Neural Processes (Kim, Mnih,
Schwarz, Garnelo, Eslami, Rosenbaum, Vinyals and Teh, ICLR 2019, arXiv:1901.05761): each query
attends over the support pairs, ``r* = MultiHead(q = k(f(x*)), K = k(f(x_i)), V = r_i)`` with one
key network ``k`` for both sides, and the decoder reads ``[f(x*), r, r*]``. The mean ``r`` says
what the task is; ``r*`` which support points resemble this query (for a new user, how the user
rated items like this one), which a mean over the support cannot keep.

Option ``ridge`` adds a closed-form path (the differentiable ridge-regression solver of
Bertinetto, Henriques, Torr and Vedaldi, "Meta-learning with differentiable closed-form
solvers", ICLR 2019, here for regression): learned features ``phi(f(x))`` of the support are
regressed on the centred targets, ``w = (Phi^T Phi + lambda I)^-1 Phi^T (y - mean(y))`` with a
meta-learned ``lambda``, and the query's ridge prediction ``p* = mean(y) + phi(f(x*)) w`` is both
a decoder input and the base the decoder corrects (``mu = p* + g(...)``). A mean of encodings
can only approximate such a fit; for a new user in recommendation it is matrix factorisation's
user-vector fit over item features that meta-training learns.

The predictor returns the mean, so :func:`metalearn.eval.evaluate` scores the MSE like any other
regression method; ``predictor.variance(query_x)`` and ``predictor.distribution(query_x)`` give
the predictive uncertainty.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from metalearn.algorithms.metric_common import embed_support_query, episodes_of, flatten_features
from metalearn.types import Episode, EpisodeBatch


@dataclass
class CNPConfig:
    """Hyperparameters of :class:`CNP` (defaults: 128-unit MLPs, as in the paper's 1-D regression)."""

    hidden: int = 128
    """Width of the encoder and decoder layers (and of the representation ``r``)."""
    encoder_layers: int = 3
    """Linear layers of the encoder ``h`` (ReLU between them)."""
    decoder_layers: int = 3
    """Linear layers of the decoder ``g`` (ReLU between them)."""
    y_dim: int = 1
    """Size of a target ``y``."""
    min_std: float = 0.01
    """Lower bound of the predicted standard deviation."""
    feature_dim: int | None = None
    """Output size of a backbone without ``out_dim``/``out_features``; else ``None``."""
    film: bool = False
    """Also modulate each hidden decoder layer by the task: ``h <- (1 + gamma(r)) * h + beta(r)``
    (FiLM, Perez et al. 2018), as TaNP's task-adaptive decoder does (Lin et al. 2021). The
    prediction is then a task-weighted sum of query features, which can express a
    matrix-factorisation user vector; a plain CNP's decoder sees ``r`` only concatenated."""
    attention: bool = False
    """Add the attentive deterministic path of Attentive Neural Processes (Kim et al. 2019):
    each query's own summary of the support, beside the mean ``r``."""
    heads: int = 4
    """Attention heads (``attention=True``); must divide ``hidden``."""
    ridge: bool = False
    """Add the closed-form ridge-regression path (Bertinetto et al. 2019): the decoder corrects
    the query's ridge prediction from the support, fitted on learned features."""
    ridge_features: int = 32
    """Size of the ridge path's learned features (``ridge=True``)."""
    ridge_prior: bool = False
    """With ``ridge``, fit the ridge to the residuals of a learned prior prediction ``p0(f(x))``
    (what the population would rate this query: for a new user, the item's and the user
    attributes' share of the rating) and add the user's offset as a feature with a penalty of its
    own, instead of fitting the targets centred on their support mean. The prediction is then a
    Bayesian linear model's: the prior where the support says little, the user's own fit where it
    says much; without it the ridge shrinks the items' shared effects towards the user's mean."""


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def _output_size(backbone: nn.Module, given: int | None) -> int:
    if given is not None:
        return int(given)
    if getattr(backbone, "head", None) is not None:
        return int(backbone.out_features)
    if hasattr(backbone, "out_dim"):
        return int(backbone.out_dim)
    raise ValueError(f"cannot tell the output size of {type(backbone).__name__}: pass "
                     "feature_dim in the config (algorithm.feature_dim=...)")


class CNPPredictor:
    """The predictive distribution of one task given its support set (from :meth:`CNP.adapt`)."""

    def __init__(self, algo: CNP, support_x: Tensor, support_y: Tensor):
        self.algo, self.support_x, self.support_y = algo, support_x, support_y

    def distribution(self, query_x: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and variance, each ``(n, y_dim)``, for queries ``(n, *x_shape)``."""
        return self.algo.distribution(self.support_x, self.support_y, query_x)

    def variance(self, query_x: Tensor) -> Tensor:
        """Predictive variance ``(n, y_dim)`` (always > 0)."""
        return self.distribution(query_x)[1]

    def __call__(self, query_x: Tensor) -> Tensor:
        """Predictive mean ``(n, y_dim)``."""
        return self.distribution(query_x)[0]


class CNP(nn.Module):
    """Conditional Neural Process over any input backbone.

    Args:
        backbone: Embeds inputs ``(n, *x_shape) -> (n, d)``; for 1-D regression an MLP such as
            ``MLP(1, (64,), out_features=None)``.
        config: Hyperparameters; defaults to :class:`CNPConfig()`.

    Raises:
        ValueError: for non-positive sizes, ``min_std`` outside ``[0, 1)``, or a backbone
            whose output size is unknown (pass ``feature_dim``).

    Examples:
        >>> from metalearn.models import MLP
        >>> cnp = CNP(MLP(1, (16,), out_features=None), CNPConfig(hidden=16))
        >>> predictor = cnp.adapt(torch.randn(5, 1), torch.randn(5, 1))
        >>> mean, var = predictor.distribution(torch.randn(7, 1))
        >>> mean.shape, bool((var > 0).all())
        (torch.Size([7, 1]), True)
    """

    def __init__(self, backbone: nn.Module, config: CNPConfig | None = None):
        super().__init__()
        self.config = cfg = config or CNPConfig()
        for name in ("hidden", "encoder_layers", "decoder_layers", "y_dim", "heads", "ridge_features"):
            if getattr(cfg, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(cfg, name)}")
        if not 0.0 <= cfg.min_std < 1.0:
            raise ValueError(f"min_std must be in [0, 1) (the paper uses 0.1; 0.01 here), got {cfg.min_std}")
        self.backbone = backbone
        d, h = _output_size(backbone, cfg.feature_dim), cfg.hidden
        self.encoder = _mlp([d + cfg.y_dim] + [h] * cfg.encoder_layers)
        if cfg.attention and h % cfg.heads:
            raise ValueError(f"attention splits hidden={h} into heads={cfg.heads}: choose heads "
                             "that divide hidden (for example 4 with hidden=64)")
        self.key = _mlp([d, h, h]) if cfg.attention else None
        self.attend = nn.MultiheadAttention(h, cfg.heads, batch_first=True) if cfg.attention else None
        width = d + (2 * h if cfg.attention else h) + (cfg.y_dim if cfg.ridge else 0)
        self.ridge_map = _mlp([d, h, cfg.ridge_features]) if cfg.ridge else None
        # log of the ridge penalty lambda, meta-learned; starts at lambda = 1
        self.log_ridge = nn.Parameter(torch.zeros(())) if cfg.ridge else None
        if cfg.ridge_prior and not cfg.ridge:
            raise ValueError("ridge_prior is an option of the ridge path: set ridge=true as well")
        self.prior = _mlp([d, h, cfg.y_dim]) if cfg.ridge_prior else None
        # log of the penalty of the user's offset (the bias column), meta-learned; starts at 1
        self.log_ridge_bias = nn.Parameter(torch.zeros(())) if cfg.ridge_prior else None
        self.decoder = _mlp([width] + [h] * (cfg.decoder_layers - 1) + [2 * cfg.y_dim])
        if cfg.film and cfg.decoder_layers < 2:
            raise ValueError("film modulates the hidden decoder layers: set decoder_layers >= 2")
        # gamma and beta of each hidden decoder layer, from r; zero at the start (no modulation)
        self.film = nn.Linear(h, 2 * h * (cfg.decoder_layers - 1)) if cfg.film else None
        if self.film is not None:
            nn.init.zeros_(self.film.weight)
            nn.init.zeros_(self.film.bias)

    def distribution(self, support_x: Tensor, support_y: Tensor, query_x: Tensor) -> tuple[Tensor, Tensor]:
        """The predictive Gaussian of one task at its query inputs.

        Args:
            support_x: ``(n_support, *x_shape)``, at least one point.
            support_y: ``(n_support, y_dim)`` float targets.
            query_x: ``(n_query, *x_shape)``.

        Returns:
            ``(mean, variance)``, each ``(n_query, y_dim)``.

        Raises:
            ValueError: for an empty support set, integer (class) targets or a wrong ``y_dim``.
        """
        self._check(support_y)
        zs, zq = embed_support_query(self.backbone, support_x, query_x)
        zs, zq = flatten_features(zs), flatten_features(zq)
        pairs = self.encoder(torch.cat([zs, support_y.reshape(len(zs), -1)], -1))
        r = pairs.mean(0)
        parts = [zq, r.expand(len(zq), -1)]
        if self.attend is not None:
            keys = self.key(zs).unsqueeze(0)
            attended, _ = self.attend(self.key(zq).unsqueeze(0), keys, pairs.unsqueeze(0), need_weights=False)
            parts.append(attended.squeeze(0))
        base = None
        if self.ridge_map is not None:
            base = self._ridge(zs, support_y.reshape(len(zs), -1), zq)
            parts.append(base)
        out = self._decode(torch.cat(parts, -1), r)
        mean, raw = out.chunk(2, dim=-1)
        if base is not None:
            mean = base + mean
        std = self.config.min_std + (1 - self.config.min_std) * F.softplus(raw)
        return mean, std * std

    def _ridge(self, zs: Tensor, ys: Tensor, zq: Tensor) -> Tensor:
        """The ridge path's prediction ``(n_query, y_dim)`` at the queries."""
        phi_s, phi_q = self.ridge_map(zs), self.ridge_map(zq)
        if self.prior is not None:
            return self._ridge_on_prior(zs, ys, zq, phi_s, phi_q)
        centre = ys.mean(0)
        gram = phi_s.T @ phi_s + torch.exp(self.log_ridge) * torch.eye(phi_s.shape[1], dtype=zs.dtype,
                                                                      device=zs.device)
        w = torch.linalg.solve(gram, phi_s.T @ (ys - centre))
        return centre + phi_q @ w

    def _ridge_on_prior(self, zs: Tensor, ys: Tensor, zq: Tensor, phi_s: Tensor, phi_q: Tensor) -> Tensor:
        """``p0(x*) + [1, phi(x*)] w`` with ``w`` the ridge fit of the support's residuals
        ``y - p0(x)`` on ``[1, phi(x)]``, penalties ``(lambda_bias, lambda, ..., lambda)``."""
        ones_s = torch.ones(len(phi_s), 1, dtype=phi_s.dtype, device=phi_s.device)
        ones_q = torch.ones(len(phi_q), 1, dtype=phi_q.dtype, device=phi_q.device)
        a_s, a_q = torch.cat([ones_s, phi_s], -1), torch.cat([ones_q, phi_q], -1)
        penalty = torch.cat([torch.exp(self.log_ridge_bias).reshape(1),
                             torch.exp(self.log_ridge).expand(phi_s.shape[1])])
        residual = ys - self.prior(zs)
        w = torch.linalg.solve(a_s.T @ a_s + torch.diag(penalty), a_s.T @ residual)
        return self.prior(zq) + a_q @ w

    def _decode(self, h: Tensor, r: Tensor) -> Tensor:
        if self.film is None:
            return self.decoder(h)
        linears = [m for m in self.decoder if isinstance(m, nn.Linear)]
        gamma, beta = self.film(r).view(len(linears) - 1, 2, -1).unbind(1)
        for layer, g, b in zip(linears[:-1], gamma, beta):
            h = F.relu(layer(h) * (1 + g) + b)
        return linears[-1](h)

    def _check(self, support_y: Tensor) -> None:
        if support_y.shape[0] == 0:
            raise ValueError("the support set is empty: a CNP needs at least one (x, y) pair "
                             "per task to condition on; sample tasks with k_shot >= 1")
        if not torch.is_floating_point(support_y):
            raise ValueError("CNP is a regression method but the targets are class labels: use "
                             "the parameter generator (algorithm=generator) for classification")
        y_dim = support_y[0].numel()
        if y_dim != self.config.y_dim:
            raise ValueError(f"targets have {y_dim} values each but the CNP was built for "
                             f"y_dim={self.config.y_dim}: set algorithm.y_dim={y_dim}")

    def meta_loss(self, batch: EpisodeBatch | Sequence[Episode]) -> tuple[Tensor, dict[str, float]]:
        """Mean Gaussian negative log-likelihood of the query targets over the tasks of ``batch``.

        Args:
            batch: Regression tasks: an :class:`EpisodeBatch` (``support_x``
                ``(n_tasks, n_support, *x_shape)``, ``support_y`` ``(n_tasks, n_support, y_dim)``,
                query likewise) or a list of episodes with different numbers of points.

        Returns:
            The loss (a scalar) and metrics ``{"loss", "mse"}`` on the query sets.
        """
        nll, mse = [], []
        for ep in episodes_of(batch):
            mean, var = self.distribution(ep.support_x, ep.support_y, ep.query_x)
            target = ep.query_y.reshape(mean.shape)
            nll.append(F.gaussian_nll_loss(mean, target, var, full=True))
            mse.append(F.mse_loss(mean.detach(), target))
        loss = torch.stack(nll).mean()
        return loss, {"loss": loss.item(), "mse": torch.stack(mse).mean().item()}

    def adapt(self, support_x: Tensor, support_y: Tensor) -> CNPPredictor:
        """A predictor conditioned on one task's support set (no gradient steps).

        Args:
            support_x: ``(n_support, *x_shape)``.
            support_y: ``(n_support, y_dim)``.
        """
        self._check(support_y)
        return CNPPredictor(self, support_x, support_y)
