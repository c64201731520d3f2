"""MAML-TRPO (Finn, Abbeel & Levine 2017, "Model-Agnostic Meta-Learning for Fast Adaptation of
Deep Networks", section 5.3), with a first-order and a PPO-clip outer variant.

One meta-iteration (:func:`meta_iteration`): for each task of a meta-batch, roll out the policy
(``train``), take one vanilla policy-gradient step on those trajectories (the inner step,
:func:`~metalearn.rl.policy_gradient.adapt_policy`, at 0.1 on 20 trajectories), roll out the
adapted policy (``valid``), then update the meta-parameters on the post-adaptation surrogate
``-mean_tasks weighted_mean(pi_theta'(a|s) / pi_old(a|s) * A)`` of the ``valid`` trajectories,
differentiated through the inner step (second order unless ``first_order``).

The TRPO outer step (Schulman et al. 2015) follows pytorch-maml-rl's ``MAMLTRPO.step``: the
search direction solves ``(H + damping I) x = g`` by :func:`conjugate_gradient` (10
iterations, damping 1e-5) with ``H`` the Hessian of the mean KL between the adapted policies
and their values at the current meta-parameters (Hessian-vector products through the inner
step, see :meth:`MAMLTRPO.kl_hvp`), scaled so that the quadratic KL estimate is ``max_kl`` (0.01); :func:`line_search` then
shrinks it by 0.8 up to 15 times and accepts the first point that lowers the surrogate while
keeping the mean KL below ``max_kl`` (otherwise the parameters stay where they were).
The PPO variant instead takes ``ppo_epochs`` steps of the caller's optimizer on the clipped
surrogate (Schulman et al. 2017), cheaper per meta-iteration (no Hessian-vector products).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn
from torch.distributions import Normal, kl_divergence
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from metalearn.algorithms.functional import detach, make_forward
from metalearn.optim.update_rules import UpdateRule, check_lr, meta_sgd, sgd
from metalearn.rl.policy_gradient import adapt_policy, weighted_mean
from metalearn.rl.returns import advantages
from metalearn.rl.rollout import rollout
from metalearn.rl.types import MetaRLAlgorithm, Task, Trajectories, VectorTaskEnv
from metalearn.types import Params


def conjugate_gradient(hvp: Callable[[Tensor], Tensor], b: Tensor, iters: int = 10,
                       residual_tol: float = 1e-10) -> Tensor:
    """Approximately solve ``A x = b`` for symmetric positive-definite ``A`` given as ``hvp(v) = A v``.

    Args:
        hvp: Matrix-vector product with ``A``.
        b: Right-hand side, ``(n,)``.
        iters: Iterations (exact after ``n`` in exact arithmetic; TRPO uses 10).
        residual_tol: Stop once the squared residual norm is below this.

    Returns:
        ``x`` ``(n,)``.

    Examples:
        >>> A = torch.tensor([[4.0, 1.0], [1.0, 3.0]])
        >>> conjugate_gradient(lambda v: A @ v, torch.tensor([1.0, 2.0]), iters=2)
        tensor([0.0909, 0.6364])
    """
    x = torch.zeros_like(b)
    r = b.clone()
    p = b.clone()
    rr = r @ r
    for _ in range(iters):
        if rr < residual_tol:
            break
        ap = hvp(p)
        alpha = rr / (p @ ap)
        x = x + alpha * p
        r = r - alpha * ap
        rr_new = r @ r
        p = r + (rr_new / rr) * p
        rr = rr_new
    return x


def line_search(evaluate: Callable[[float], tuple[float, float]], max_kl: float,
                max_steps: int = 15, backtrack_ratio: float = 0.8) -> tuple[float | None, int]:
    """Backtracking line search of TRPO.

    Args:
        evaluate: ``evaluate(fraction) -> (surrogate change, mean KL)`` after a step of
            ``fraction`` times the full step (it sets the parameters there).
        max_kl: The trust region.
        max_steps: Fractions tried: ``1, r, r^2, ...`` (15 in the paper's setup).
        backtrack_ratio: ``r`` (0.8).

    Returns:
        ``(fraction, tries)``: the accepted fraction, or ``None`` when no fraction lowered the
        surrogate within the trust region (the caller restores the parameters).

    Examples:
        >>> line_search(lambda f: (-f, f * 0.02), max_kl=0.01, backtrack_ratio=0.5)
        (0.25, 3)
    """
    fraction = 1.0
    for tries in range(1, max_steps + 1):
        change, kl = evaluate(fraction)
        if change < 0.0 and kl < max_kl:
            return fraction, tries
        fraction *= backtrack_ratio
    return None, max_steps


@dataclass
class MAMLTRPOConfig:
    """Hyperparameters of :class:`MAMLTRPO` (defaults: the paper / pytorch-maml-rl configs)."""

    inner_lr: float = 0.1
    """Step size of the inner policy-gradient step (the initial rates with ``meta_sgd``)."""
    inner_steps: int = 1
    """Inner policy-gradient steps on the ``train`` trajectories."""
    inner_rule: Literal["sgd", "meta_sgd"] = "sgd"
    """``sgd``: a fixed rate; ``meta_sgd``: per-parameter rates, meta-learned (Li et al. 2017)."""
    first_order: bool = False
    """Treat the inner gradient as a constant (first-order MAML)."""
    outer: Literal["trpo", "ppo"] = "trpo"
    """Outer update: TRPO (the paper) or PPO-clip steps of the caller's optimizer."""
    max_kl: float = 0.01
    """TRPO trust region on the mean KL of the adapted policies."""
    cg_iters: int = 10
    """Conjugate-gradient iterations."""
    cg_damping: float = 1e-5
    """Added to the KL Hessian: ``(H + damping I) x = g``."""
    hvp: Literal["factored", "autograd"] = "factored"
    """How TRPO's KL Hessian-vector products are taken (the same products up to rounding):
    ``factored`` as ``J^T (H (J v))`` with ``J`` the Jacobian of the inner step and ``H`` the KL
    Hessian in the adapted parameters (exact because the KL's gradient there is zero at the
    current point; two second-order passes per product), ``autograd`` by differentiating the
    KL's gradient through the inner step (third order; pytorch-maml-rl's way, slower)."""
    ls_max_steps: int = 15
    """Line-search tries."""
    ls_backtrack_ratio: float = 0.8
    """Line-search shrink factor."""
    ppo_clip: float = 0.2
    """PPO's clipping range of the probability ratio."""
    ppo_epochs: int = 5
    """Optimizer steps per meta-iteration of the PPO variant."""
    gamma: float = 0.99
    """Discount."""
    gae_lambda: float = 1.0
    """GAE lambda."""
    normalize_advantages: bool = True
    """Standardise advantages per task (pytorch-maml-rl)."""


class MAMLTRPO(nn.Module):
    """MAML with a policy-gradient inner step and a TRPO (or PPO) outer step.

    Args:
        policy: The policy, e.g. :class:`~metalearn.rl.policies.GaussianMLPPolicy`; its
            parameters are the meta-parameters (with the rates of ``inner_rule="meta_sgd"``).
        config: Hyperparameters.

    Examples:
        >>> from metalearn.rl.envs import Navigation2D
        >>> from metalearn.rl.policies import GaussianMLPPolicy
        >>> algo = MAMLTRPO(GaussianMLPPolicy(2, 2, hidden=(8,)))
        >>> env = Navigation2D(num_envs=2 * 3, horizon=5)
        >>> g = torch.Generator().manual_seed(0)
        >>> metrics = meta_iteration(algo, env, env.sample_tasks(2, g), 3, g)
        >>> metrics["kl_after"] < 0.01
        True
    """

    def __init__(self, policy: nn.Module, config: MAMLTRPOConfig | None = None):
        super().__init__()
        self.policy = policy
        self.config = config or MAMLTRPOConfig()
        check_lr(self.config.inner_lr)
        if self.config.outer not in ("trpo", "ppo"):
            raise ValueError(f"outer must be 'trpo' or 'ppo', got {self.config.outer!r}")
        if self.config.hvp not in ("factored", "autograd"):
            raise ValueError(f"hvp must be 'factored' or 'autograd', got {self.config.hvp!r}")
        self.forward_fn = make_forward(policy)
        self._lr_keys = {name: name.replace(".", "__") for name, _ in policy.named_parameters()}
        if self.config.inner_rule == "meta_sgd":
            self.lrs = nn.ParameterDict({
                self._lr_keys[n]: nn.Parameter(torch.full_like(p, self.config.inner_lr))
                for n, p in policy.named_parameters()})
        elif self.config.inner_rule != "sgd":
            raise ValueError(f"inner_rule must be 'sgd' or 'meta_sgd', got {self.config.inner_rule!r}")

    def policy_params(self) -> Params:
        """The meta-parameters of the policy, name -> parameter."""
        return dict(self.policy.named_parameters())

    def rule(self) -> UpdateRule:
        """The inner update rule."""
        if self.config.inner_rule == "meta_sgd":
            return meta_sgd({n: self.lrs[k] for n, k in self._lr_keys.items()})
        return sgd(self.config.inner_lr)

    def advantages(self, traj: Trajectories) -> Tensor:
        """Advantages of ``traj`` ``(T, B)`` with the configured gamma, lambda, normalisation."""
        cfg = self.config
        return advantages(traj, cfg.gamma, cfg.gae_lambda, normalize=cfg.normalize_advantages)

    def adapt_task(self, train: Trajectories, adv: Tensor | None = None,
                   first_order: bool | None = None, start: Params | None = None) -> Params:
        """Adapted parameters of one task from its ``train`` trajectories (from ``start``, by
        default the meta-parameters)."""
        adv = self.advantages(train) if adv is None else adv
        fo = self.config.first_order if first_order is None else first_order
        start = self.policy_params() if start is None else start
        return adapt_policy(self.forward_fn, start, train, adv, self.rule(),
                            self.config.inner_steps, first_order=fo)

    def adapt(self, train: Trajectories) -> list[Params]:
        """One detached, adapted parameter set per task of ``train`` (for rolling out ``valid``)."""
        return [detach(self.adapt_task(train.task(k), first_order=True))
                for k in range(train.n_tasks)]

    def _surrogates(self, tasks, old: Sequence[Normal] | None, first_order: bool,
                    clip: float | None = None,
                    adapted: list[tuple[Params, Params]] | None = None,
                    ) -> tuple[Tensor, Tensor, list[Normal]]:
        """Mean post-adaptation surrogate and mean KL to ``old`` over tasks (``old=None``: the
        policies at the current meta-parameters, which are returned). When ``adapted`` is
        given, each task adapts from its own copy of the meta-parameters and ``(copy, adapted
        parameters)`` is appended to it (what :meth:`kl_hvp` differentiates)."""
        losses, kls, pis = [], [], []
        for k, (train, train_adv, valid, valid_adv) in enumerate(tasks):
            start = None
            if adapted is not None:
                start = {n: p.clone() for n, p in self.policy_params().items()}
            params = self.adapt_task(train, train_adv, first_order=first_order, start=start)
            if adapted is not None:
                adapted.append((start, params))
            pi = self.forward_fn(params, valid.obs)
            ref = Normal(pi.loc.detach(), pi.scale.detach()) if old is None else old[k]
            ratio = torch.exp(pi.log_prob(valid.actions).sum(-1) - ref.log_prob(valid.actions).sum(-1))
            objective = ratio * valid_adv
            if clip is not None:
                objective = torch.minimum(objective, ratio.clamp(1 - clip, 1 + clip) * valid_adv)
            losses.append(-weighted_mean(objective, valid.mask))
            kls.append(weighted_mean(kl_divergence(pi, ref).sum(-1), valid.mask))
            pis.append(ref)
        return torch.stack(losses).mean(), torch.stack(kls).mean(), pis

    def step(self, train: Trajectories, valid: Trajectories,
             optimizer: torch.optim.Optimizer | None = None,
             mean: Callable[[Tensor], Tensor] | None = None) -> dict[str, float]:
        """One outer update from a meta-batch (``train`` and ``valid`` of the same tasks).

        Args:
            train: Pre-adaptation trajectories, rolled out with the meta-parameters.
            valid: Post-adaptation trajectories, rolled out with :meth:`adapt`'s parameters.
            optimizer: The meta-optimizer of ``outer="ppo"`` (unused by TRPO).
            mean: TRPO only: the mean over the processes that each hold an equal share of the
                meta-batch (``Ranks.mean`` under torchrun; the identity when ``None``). The
                surrogate's gradient, every Hessian-vector product of the KL and the line
                search's surrogate and KL values go through it, so every process computes the
                same direction and accepts the same step: that of one process on all the tasks.

        Returns:
            Metrics: ``loss_before``, ``loss_after``, ``kl_after`` and, for TRPO,
            ``step_fraction`` (0 when the line search rejected every step) and ``ls_tries``.
        """
        if train.n_tasks != valid.n_tasks:
            raise ValueError(f"train has {train.n_tasks} tasks but valid {valid.n_tasks}: "
                             "roll out valid with adapt(train)'s parameters for the same tasks")
        tasks = []
        for k in range(train.n_tasks):
            tr, va = train.task(k), valid.task(k)
            tasks.append((tr, self.advantages(tr), va, self.advantages(va)))
        if self.config.outer == "ppo":
            return self._ppo_step(tasks, optimizer)
        return self._trpo_step(tasks, mean)

    def _trpo_step(self, tasks, mean: Callable[[Tensor], Tensor] | None = None) -> dict[str, float]:
        cfg = self.config
        mean = mean or (lambda t: t)
        params = [p for p in self.parameters() if p.requires_grad]
        adapted: list[Params] = []
        loss, kl, old = self._surrogates(tasks, None, cfg.first_order, adapted=adapted)
        grad = mean(parameters_to_vector(torch.autograd.grad(loss, params, retain_graph=True)))
        kl_hvp = self.kl_hvp(kl, params, adapted)

        def hvp(v: Tensor) -> Tensor:
            return mean(kl_hvp(v)) + cfg.cg_damping * v

        direction = conjugate_gradient(hvp, grad.detach(), cfg.cg_iters)
        shs = 0.5 * (direction @ hvp(direction)).detach()
        metrics = {"loss_before": float(mean(loss.detach().reshape(1))),
                   "grad_norm": float(grad.detach().norm())}
        start = parameters_to_vector(params).detach()
        if not (torch.isfinite(shs) and shs > 0):
            metrics.update(loss_after=metrics["loss_before"], kl_after=0.0, step_fraction=0.0,
                           ls_tries=0)
            return metrics
        full_step = direction / torch.sqrt(shs / cfg.max_kl)
        found: dict[str, float] = {}

        def evaluate(fraction: float) -> tuple[float, float]:
            with torch.no_grad():
                vector_to_parameters(start - fraction * full_step, params)
            with torch.no_grad():
                new_loss, new_kl, _ = self._surrogates(tasks, old, first_order=True)
                both = mean(torch.stack([new_loss, new_kl]))
            found.update(loss_after=float(both[0]), kl_after=float(both[1]))
            return float(both[0]) - metrics["loss_before"], float(both[1])

        fraction, tries = line_search(evaluate, cfg.max_kl, cfg.ls_max_steps, cfg.ls_backtrack_ratio)
        if fraction is None:
            with torch.no_grad():
                vector_to_parameters(start, params)
            found = {"loss_after": metrics["loss_before"], "kl_after": 0.0}
        metrics.update(found, step_fraction=fraction or 0.0, ls_tries=tries)
        return metrics

    def kl_hvp(self, kl: Tensor, params: Sequence[Tensor],
               adapted: Sequence[tuple[Params, Params]]) -> Callable[[Tensor], Tensor]:
        """Hessian-vector products of the mean KL at the current meta-parameters.

        ``kl`` is the mean over tasks of ``KL(pi_{U_k(theta)} || pi_{U_k(theta_0)})`` evaluated
        at ``theta = theta_0`` (built with the inner step differentiable); ``adapted`` holds,
        per task, the copy of the policy's meta-parameters the inner step started from and the
        adapted parameters ``U_k(theta)`` (as :meth:`_surrogates` records them). With
        ``config.hvp == "factored"`` the product is ``sum_k J_k^T (H_k (J_k v))``: the KL's
        gradient in the adapted parameters vanishes at ``theta_0`` (each policy is compared
        with itself), so the curvature of the inner step drops out of the Hessian, which is
        exactly ``J^T H J``. ``H_k u`` is a second-order product on the adapted parameters
        only and ``J^T`` one vjp. ``J_k v`` is a vjp too when ``J_k`` is symmetric (one
        ``sgd`` step: ``J = I - lr * Hessian of the inner loss``; any number of first-order
        steps: ``J = I``), taken per task at its copy of the parameters; otherwise (``meta_sgd``,
        several second-order steps) the double-vjp trick: a vjp with a dummy cotangent ``w``,
        differentiated in ``w``, its graph built once per TRPO step. With ``"autograd"`` the
        KL's gradient in ``theta`` is differentiated once more (third order through the inner
        step).

        Args:
            kl: Scalar mean KL.
            params: The meta-parameters, flattened in this order, ``n`` numbers in all.
            adapted: ``(start, adapted parameters)`` per task; the keys of ``start`` name the
                policy's parameters, which come first in ``params``.

        Returns:
            ``hvp(v (n,)) -> (n,)``, without damping.

        Examples:
            >>> policy = torch.nn.Linear(2, 1)
            >>> theta = list(policy.parameters())
            >>> start = {"weight": theta[0].clone(), "bias": theta[1].clone()}
            >>> phi = {k: 2 * t for k, t in start.items()}   # "adapted" = 2 theta: J = 2 I
            >>> kl = ((phi["weight"] - phi["weight"].detach()) ** 2).sum() / 2 + 0 * phi["bias"]
            >>> MAMLTRPO(policy).kl_hvp(kl.sum(), theta, [(start, phi)])(torch.ones(3))
            tensor([4., 4., 0.])
        """
        if self.config.hvp == "autograd":
            grad_kl = parameters_to_vector(torch.autograd.grad(kl, params, create_graph=True))

            def third_order(v: Tensor) -> Tensor:
                return parameters_to_vector(torch.autograd.grad(grad_kl @ v, params,
                                                                retain_graph=True))

            return third_order
        cfg = self.config
        starts = [t for start, _ in adapted for t in start.values()]
        phis = [t for _, phi in adapted for t in phi.values()]
        grad_kl = torch.autograd.grad(kl, phis, create_graph=True)
        curved = [i for i, g in enumerate(grad_kl) if g.requires_grad]  # KL quadratic in these
        sizes = [p.numel() for p in params]
        symmetric = cfg.inner_rule == "sgd" and (cfg.inner_steps == 1 or cfg.first_order)
        if not symmetric:
            dummies = [torch.zeros_like(t, requires_grad=True) for t in phis]
            jtw = torch.autograd.grad(phis, params, dummies, create_graph=True, allow_unused=True)
            linked = [i for i, j in enumerate(jtw) if j is not None and j.requires_grad]

        def zeros_for_none(parts: Sequence[Tensor | None], like: Sequence[Tensor]) -> list[Tensor]:
            return [torch.zeros_like(t) if g is None else g for g, t in zip(parts, like)]

        def jacobian_vector(v: Tensor) -> list[Tensor]:
            vs = [c.view_as(p) for c, p in zip(torch.split(v, sizes), params)]
            if symmetric:  # J_k v = J_k^T v, per task at its own copy of the parameters
                per_task = vs[:len(adapted[0][0])] * len(adapted)
                return zeros_for_none(torch.autograd.grad(phis, starts, per_task,
                                                          retain_graph=True, allow_unused=True),
                                      phis)
            jv = torch.autograd.grad([jtw[i] for i in linked], dummies, [vs[i] for i in linked],
                                     retain_graph=True, allow_unused=True)
            return zeros_for_none(jv, phis)

        def factored(v: Tensor) -> Tensor:
            jv = jacobian_vector(v)
            hjv = torch.autograd.grad([grad_kl[i] for i in curved], phis,
                                      [jv[i] for i in curved], retain_graph=True,
                                      allow_unused=True)
            jthjv = torch.autograd.grad(phis, params, zeros_for_none(hjv, phis),
                                        retain_graph=True, allow_unused=True)
            return torch.cat([g.reshape(-1) for g in zeros_for_none(jthjv, params)])

        return factored

    def _ppo_step(self, tasks, optimizer: torch.optim.Optimizer | None) -> dict[str, float]:
        if optimizer is None:
            raise ValueError("outer='ppo' needs the meta-optimizer: pass "
                             "optimizer=torch.optim.Adam(algo.parameters(), lr=1e-3) to step()")
        cfg = self.config
        old = None
        for epoch in range(cfg.ppo_epochs):
            loss, kl, pis = self._surrogates(tasks, old, cfg.first_order, clip=cfg.ppo_clip)
            if epoch == 0:
                old, loss_before = pis, float(loss.detach())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            loss, kl, _ = self._surrogates(tasks, old, first_order=True, clip=cfg.ppo_clip)
        return {"loss_before": loss_before, "loss_after": float(loss), "kl_after": float(kl)}


def meta_iteration(algo: MetaRLAlgorithm, env: VectorTaskEnv, tasks: Sequence[Task],
                   n_per_task: int, generator: torch.Generator,
                   optimizer: torch.optim.Optimizer | None = None) -> dict[str, float]:
    """Roll out, adapt, roll out the adapted policies, and take one outer step.

    Args:
        algo: The algorithm (``policy``, ``forward_fn``, ``adapt``, ``step``).
        env: A vector environment with ``num_envs == len(tasks) * n_per_task``.
        tasks: The meta-batch.
        n_per_task: Trajectories per task and phase (20 in the paper).
        generator: All rollout randomness.
        optimizer: Passed to ``algo.step`` (the PPO variant's meta-optimizer).

    Returns:
        ``algo.step``'s metrics plus ``return_before`` / ``return_after``: the mean undiscounted
        return of the pre- and post-adaptation trajectories.
    """
    train = rollout(env, algo.forward_fn, algo.policy_params(), tasks, n_per_task, generator)
    adapted = algo.adapt(train)
    valid = rollout(env, algo.forward_fn, adapted, tasks, n_per_task, generator)
    metrics = algo.step(train, valid, optimizer=optimizer)
    metrics.update(return_before=float(train.returns().mean()),
                   return_after=float(valid.returns().mean()))
    return metrics
