"""Rating baselines for cold-start recommendation: global mean, item mean, user mean and
biased matrix factorisation with the new user fitted by ridge regression.

Item-mean (damped) and biased matrix factorisation follow Koren, Bell and Volinsky,
"Matrix Factorization Techniques for Recommender Systems", IEEE Computer 42(8), 2009; the
count-scaled regularisation of the alternating least squares is Zhou, Wilkinson, Schreiber and
Pan, "Large-Scale Parallel Collaborative Filtering for the Netflix Prize", AAIM 2008 (ALS-WR).

Each baseline runs on the same user-as-task episodes as the meta-learners. ``fit(user,
item_code, rating)`` learns from the meta-training users' ratings; ``adapt(support_x,
support_y)`` returns a predictor of a new user's query ratings, which is all that
:func:`metalearn.eval.evaluate` needs. Input rows are int64 ``[item_code, attributes...]``:
``x[..., 0]`` is ``1 + dense item index`` for an item rated in meta-training and ``0`` for an
unseen item. A code of 0, or one above every code seen by ``fit``, is an unseen item: it gets the
global mean, zero item bias and zero item factors. Fitted quantities are buffers, so
``.to(device)`` and ``state_dict`` carry them, and an unfitted instance loads a fitted one's
``state_dict``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def item_rows(x: Tensor, n_codes: int) -> Tensor:
    """Row of each input's item in a table of ``n_codes`` rows whose row 0 is the unseen item.

    Args:
        x: Input rows ``(..., F)`` int64 whose column 0 is the item code.
        n_codes: Rows of the table: ``1 + the largest item code seen in fit``.

    Returns:
        ``(...)`` int64: the item code, or 0 where it is 0 or ``>= n_codes`` (unseen).

    Examples:
        >>> item_rows(torch.tensor([[3, 1], [0, 2], [9, 1]]), n_codes=5)
        tensor([3, 0, 0])
    """
    if x.dim() < 1 or x.shape[-1] < 1 or x.dtype != torch.int64:
        raise ValueError(f"input rows must be int64 (..., F) with the item code in column 0, got "
                         f"{x.dtype} {tuple(x.shape)}: build them with the recommendation episodes")
    code = x[..., 0]
    if (code < 0).any():
        raise ValueError("negative item codes: codes are 1 + dense item index, or 0 for an unseen item")
    return torch.where(code < n_codes, code, torch.zeros_like(code))


def ridge_rows(index: Tensor, n_rows: int, features: Tensor, residual: Tensor, penalty: Tensor) -> Tensor:
    """Many ridge regressions with an intercept at once, one per row of ``index``'s range.

    Row ``j`` solves ``w_j = (Z_j^T Z_j + penalty_j I)^{-1} Z_j^T r_j`` over the observations
    ``o`` with ``index[o] == j``, where ``Z`` has rows ``[1, features[o]]``. The intercept is
    penalised like the coefficients (Koren et al. 2009 regularise the biases too). A row without
    observations gets ``w = 0`` when its penalty is positive.

    Args:
        index: ``(n,)`` int64 in ``0..n_rows-1``: which regression each observation belongs to.
        n_rows: Number of regressions.
        features: ``(n, d)`` regressors of each observation.
        residual: ``(n,)`` targets.
        penalty: ``(n_rows,)`` ridge penalty of each regression.

    Returns:
        ``(n_rows, d + 1)``: ``[intercept, coefficients...]`` of each regression.
    """
    z = torch.cat([torch.ones_like(features[:, :1]), features], dim=1)
    d1 = z.shape[1]
    gram = torch.zeros(n_rows, d1, d1, dtype=z.dtype, device=z.device)
    for start in range(0, z.shape[0], 32768):  # chunks bound the (chunk, d1, d1) outer products
        zc = z[start:start + 32768]
        gram.index_add_(0, index[start:start + 32768], zc[:, :, None] * zc[:, None, :])
    rhs = torch.zeros(n_rows, d1, dtype=z.dtype, device=z.device).index_add_(0, index, z * residual[:, None])
    gram = gram + penalty[:, None, None] * torch.eye(d1, dtype=z.dtype, device=z.device)
    return torch.linalg.solve(gram, rhs)


def ridge_user(q: Tensor, residual: Tensor, reg: float) -> Tensor:
    """A new user's bias and factors by ridge regression against fixed item factors.

    ``[b_u, p_u] = (Z^T Z + reg I)^{-1} Z^T residual`` with ``Z = [1, q]``: the bias is
    penalised like the factors.

    Args:
        q: ``(n_s, d)`` factors of the user's support items.
        residual: ``(n_s,)`` support ratings minus the global mean and the item biases.
        reg: Ridge penalty ``lambda``, positive (or 0 when ``Z`` has full column rank).

    Returns:
        ``(d + 1,)``: ``[b_u, p_u...]``.

    Examples:
        >>> ridge_user(torch.zeros(2, 3), torch.tensor([1.0, 3.0]), reg=2.0)  # bias 4 / (2 + 2)
        tensor([1., 0., 0., 0.])
    """
    index = torch.zeros(q.shape[0], dtype=torch.int64, device=q.device)
    penalty = torch.full((1,), float(reg), dtype=q.dtype, device=q.device)
    return ridge_rows(index, 1, q, residual, penalty)[0]


class RatingPredictor:
    """``offset + item_bias[item] + item_factors[item] . user_factors`` for each query row.

    Returned by every baseline's ``adapt``; holds read-only references to the fitted tables.
    Row 0 of the tables is the unseen item.
    """

    def __init__(self, offset: Tensor, item_bias: Tensor | None = None,
                 item_factors: Tensor | None = None, user_factors: Tensor | None = None):
        self.offset, self.item_bias = offset, item_bias
        self.item_factors, self.user_factors = item_factors, user_factors

    def __call__(self, query_x: Tensor) -> Tensor:
        """Predicted ratings ``(n_q, 1)`` float32 of query rows ``(n_q, F)``."""
        n_codes = self.item_bias.shape[0] if self.item_bias is not None else 1
        rows = item_rows(query_x, n_codes)
        pred = self.offset.expand(rows.shape).clone()
        if self.item_bias is not None:
            pred = pred + self.item_bias[rows]
        if self.item_factors is not None:
            pred = pred + self.item_factors[rows] @ self.user_factors
        return pred.to(torch.float32).unsqueeze(-1)


class _RatingBaseline(nn.Module):
    """Shared checks and buffer handling of the baselines (not an algorithm by itself)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("global_mean", torch.tensor(float("nan")))
        # fit gives buffers their sizes; let an unfitted instance load a fitted state_dict
        self.register_load_state_dict_pre_hook(_resize_buffers)

    def _check_fitted(self) -> None:
        if torch.isnan(self.global_mean):
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit(user, item_code, rating) "
                               "on the meta-training ratings first")

    @staticmethod
    def _check_train(user: Tensor, item_code: Tensor, rating: Tensor) -> Tensor:
        """Validate ``fit``'s arrays; return the ratings as float64."""
        n = rating.shape[0] if rating.dim() == 1 else -1
        if n < 1 or user.shape != (n,) or item_code.shape != (n,):
            raise ValueError(f"fit takes three (n,) arrays of equal length n >= 1, got user "
                             f"{tuple(user.shape)}, item_code {tuple(item_code.shape)}, rating {tuple(rating.shape)}")
        if (item_code < 1).any():
            raise ValueError("meta-training item codes must be >= 1 (1 + dense item index); code 0 "
                             "marks an item unseen in meta-training and cannot be fitted")
        r = rating.double()
        if not torch.isfinite(r).all():
            raise ValueError("ratings contain NaN or infinity: check the ratings table")
        return r

    @staticmethod
    def _check_support(support_x: Tensor, support_y: Tensor) -> Tensor:
        """Validate one user's support set; return its ratings ``(n_s,)`` as float64."""
        if support_x.dim() != 2 or support_y.shape != (support_x.shape[0], 1):
            raise ValueError(f"adapt takes support_x (n_s, F) and support_y (n_s, 1), got "
                             f"{tuple(support_x.shape)} and {tuple(support_y.shape)}")
        return support_y[:, 0].double()


def _resize_buffers(module: nn.Module, state_dict: dict, prefix: str, *args) -> None:
    for name, buf in module.named_buffers(recurse=False):
        saved = state_dict.get(prefix + name)
        if saved is not None and saved.shape != buf.shape:
            setattr(module, name, torch.empty(saved.shape, dtype=buf.dtype, device=buf.device))


class GlobalMean(_RatingBaseline):
    """Predicts the mean meta-training rating for every user and item.

    The floor every method must beat (the ``mu`` of Koren et al. 2009).

    Examples:
        >>> m = GlobalMean().fit(torch.tensor([0, 0, 1]), torch.tensor([1, 2, 1]), torch.tensor([5.0, 3.0, 4.0]))
        >>> m.adapt(torch.tensor([[1]]), torch.tensor([[1.0]]))(torch.tensor([[2], [0]]))
        tensor([[4.],
                [4.]])
    """

    def fit(self, user: Tensor, item_code: Tensor, rating: Tensor) -> GlobalMean:
        """Store the mean of the meta-training ratings ``(n,)``; returns ``self``."""
        self.global_mean = self._check_train(user, item_code, rating).mean().float()
        return self

    def adapt(self, support_x: Tensor, support_y: Tensor) -> RatingPredictor:
        """A constant predictor (the support is checked, then ignored)."""
        self._check_fitted()
        self._check_support(support_x, support_y)
        return RatingPredictor(self.global_mean)


class ItemMean(_RatingBaseline):
    """Predicts each item's mean meta-training rating, damped towards the global mean.

    ``mean_i = (sum of i's ratings + shrinkage * mu) / (count_i + shrinkage)``: ``shrinkage``
    pseudo-ratings at the global mean ``mu`` are added to every item, so an item rated once
    stays near ``mu`` (Koren et al. 2009's regularised item bias ``b_i = sum (r - mu) /
    (count_i + shrinkage)``, the same number). Unseen items get ``mu``. Ignores the user.

    Args:
        shrinkage: Number of pseudo-ratings at the global mean (default 5); 0 gives raw means.

    Examples:
        >>> m = ItemMean(shrinkage=1.0).fit(torch.tensor([0, 1, 1]), torch.tensor([1, 1, 2]),
        ...                                  torch.tensor([5.0, 5.0, 2.0]))
        >>> m.adapt(torch.tensor([[1]]), torch.tensor([[1.0]]))(torch.tensor([[1], [2], [0]]))
        tensor([[4.6667],
                [3.0000],
                [4.0000]])
    """

    def __init__(self, shrinkage: float = 5.0) -> None:
        super().__init__()
        if shrinkage < 0:
            raise ValueError(f"shrinkage is a number of pseudo-ratings, >= 0; got {shrinkage}")
        self.shrinkage = shrinkage
        self.register_buffer("item_bias", torch.zeros(1))

    def fit(self, user: Tensor, item_code: Tensor, rating: Tensor) -> ItemMean:
        """Damped item means from the meta-training ratings ``(n,)``; returns ``self``."""
        r = self._check_train(user, item_code, rating)
        mu = r.mean()
        n_codes = int(item_code.max()) + 1
        total = torch.zeros(n_codes, dtype=torch.float64, device=r.device).index_add_(0, item_code, r - mu)
        count = torch.bincount(item_code, minlength=n_codes).double()
        # an item code with no rating (and the unseen row 0) gets deviation 0, i.e. mu
        self.item_bias = (total / (count + self.shrinkage).clamp(min=1e-12)).float()
        self.global_mean = mu.float()
        return self

    def adapt(self, support_x: Tensor, support_y: Tensor) -> RatingPredictor:
        """The item-mean predictor (the support is checked, then ignored)."""
        self._check_fitted()
        self._check_support(support_x, support_y)
        return RatingPredictor(self.global_mean, self.item_bias)


class UserMean(_RatingBaseline):
    """Predicts the new user's own mean support rating for every item.

    Uses the user and ignores the items; ``fit`` only stores the global mean, used for a user
    with an empty support set.

    Examples:
        >>> m = UserMean().fit(torch.tensor([0]), torch.tensor([1]), torch.tensor([3.0]))
        >>> m.adapt(torch.tensor([[1], [2]]), torch.tensor([[5.0], [4.0]]))(torch.tensor([[3]]))
        tensor([[4.5000]])
    """

    def fit(self, user: Tensor, item_code: Tensor, rating: Tensor) -> UserMean:
        """Store the global mean of the meta-training ratings ``(n,)``; returns ``self``."""
        self.global_mean = self._check_train(user, item_code, rating).mean().float()
        return self

    def adapt(self, support_x: Tensor, support_y: Tensor) -> RatingPredictor:
        """A constant predictor at the mean of ``support_y`` ``(n_s, 1)``."""
        self._check_fitted()
        y = self._check_support(support_x, support_y)
        return RatingPredictor(y.mean().float() if y.numel() else self.global_mean)


class MatrixFactorizationRidge(_RatingBaseline):
    """Biased matrix factorisation; a new user's vector fitted on the support by ridge regression.

    Meta-training fits ``r_ui ~ mu + b_u + b_i + p_u . q_i`` (Koren et al. 2009, eq. 4) by
    alternating least squares: with the item side fixed, every user's ``[b_u, p_u]`` is a
    closed-form ridge regression on ``[1, q_i]`` against ``r - mu - b_i``, solved for all users
    at once (:func:`ridge_rows`); then the same for the items against the users. ``mu`` is the
    global mean. The penalty of a user (or item) with ``n`` ratings is ``reg * n`` (ALS-WR,
    Zhou et al. 2008) and covers the bias as well as the factors, so each half-step exactly
    minimises ``sum (r - r_hat)^2 + sum_u reg n_u (b_u^2 + |p_u|^2) + sum_i reg n_i (b_i^2 +
    |q_i|^2)``, which therefore never increases (recorded per iteration in :attr:`history`).

    ``adapt`` keeps every item quantity fixed and solves the new user's
    ``[b_u, p_u] = (Z^T Z + lambda I)^{-1} Z^T (y - mu - b_i)`` with ``Z = [1, q_i]`` over the
    support items (:func:`ridge_user`), the bias penalised too. ``lambda = user_reg`` when given,
    else ``reg * n_s``: the rule meta-training users were fitted with. Unseen items have
    ``q = 0`` and ``b = 0`` (they inform only ``b_u``).

    Args:
        factors: Latent dimension ``d`` (default 16).
        reg: Count-scaled ridge penalty of meta-training (default 0.1).
        user_reg: Fixed penalty ``lambda`` of a new user's fit; ``None`` uses ``reg * n_s``.
        iterations: ALS sweeps (users then items), default 15.
        seed: Seed of the ``N(0, init_std^2)`` initial factors.
        init_std: Standard deviation of the initial factors (default 0.1).

    Examples:
        >>> user, item = torch.tensor([0, 0, 1, 1, 2]), torch.tensor([1, 2, 1, 2, 1])
        >>> m = MatrixFactorizationRidge(factors=2, iterations=3).fit(user, item, torch.tensor([5.0, 1.0, 4.0, 2.0, 5.0]))
        >>> m.adapt(torch.tensor([[1], [2]]), torch.tensor([[5.0], [1.0]]))(torch.tensor([[1], [2]])).shape
        torch.Size([2, 1])
    """

    def __init__(self, factors: int = 16, reg: float = 0.1, user_reg: float | None = None,
                 iterations: int = 15, seed: int = 0, init_std: float = 0.1) -> None:
        super().__init__()
        if factors < 1 or iterations < 1 or reg < 0 or (user_reg is not None and user_reg < 0):
            raise ValueError(f"need factors >= 1, iterations >= 1, reg >= 0 and user_reg >= 0; got "
                             f"factors={factors}, iterations={iterations}, reg={reg}, user_reg={user_reg}")
        self.factors, self.reg, self.user_reg = factors, reg, user_reg
        self.iterations, self.seed, self.init_std = iterations, seed, init_std
        self.history: list[dict[str, float]] = []
        """Per ALS iteration: ``rmse`` on the training ratings and the regularised ``objective``."""
        self.register_buffer("item_bias", torch.zeros(1))
        self.register_buffer("item_factors", torch.zeros(1, factors))
        self.register_buffer("user_bias", torch.zeros(0))
        self.register_buffer("user_factors", torch.zeros(0, factors))

    def fit(self, user: Tensor, item_code: Tensor, rating: Tensor) -> MatrixFactorizationRidge:
        """ALS on the meta-training ratings ``(n,)`` (users are densified); returns ``self``."""
        r = self._check_train(user, item_code, rating)
        _, u = torch.unique(user, return_inverse=True)
        n_users, n_codes = int(u.max()) + 1, int(item_code.max()) + 1
        mu = r.mean()
        gen = torch.Generator().manual_seed(self.seed)
        p = (self.init_std * torch.randn(n_users, self.factors, generator=gen, dtype=torch.float64)).to(r.device)
        q = (self.init_std * torch.randn(n_codes, self.factors, generator=gen, dtype=torch.float64)).to(r.device)
        b_i = torch.zeros(n_codes, dtype=torch.float64, device=r.device)
        # reg * count, at least reg: a row with no ratings solves to 0 instead of a singular system
        pen_u = self.reg * torch.bincount(u, minlength=n_users).double().clamp(min=1)
        pen_i = self.reg * torch.bincount(item_code, minlength=n_codes).double().clamp(min=1)
        self.history = []
        for _ in range(self.iterations):
            w = ridge_rows(u, n_users, q[item_code], r - mu - b_i[item_code], pen_u)
            b_u, p = w[:, 0], w[:, 1:]
            w = ridge_rows(item_code, n_codes, p[u], r - mu - b_u[u], pen_i)
            b_i, q = w[:, 0], w[:, 1:]
            err = r - (mu + b_u[u] + b_i[item_code] + (p[u] * q[item_code]).sum(-1))
            penalty = (pen_u * (b_u**2 + (p**2).sum(-1))).sum() + (pen_i * (b_i**2 + (q**2).sum(-1))).sum()
            self.history.append({"rmse": float(err.pow(2).mean().sqrt()),
                                 "objective": float(err.pow(2).sum() + penalty)})
        b_i[0], q[0] = 0.0, 0.0  # row 0 is the unseen item (no rating has code 0)
        self.global_mean, self.item_bias, self.item_factors = mu.float(), b_i.float(), q.float()
        self.user_bias, self.user_factors = b_u.float(), p.float()
        return self

    def adapt(self, support_x: Tensor, support_y: Tensor) -> RatingPredictor:
        """Fit the new user's ``(b_u, p_u)`` on the support; item quantities stay fixed."""
        self._check_fitted()
        y = self._check_support(support_x, support_y)
        rows = item_rows(support_x, self.item_bias.shape[0])
        q = self.item_factors[rows].double()
        residual = y - self.global_mean.double() - self.item_bias[rows].double()
        lam = self.user_reg if self.user_reg is not None else self.reg * max(y.numel(), 1)
        w = ridge_user(q, residual, lam).float()
        return RatingPredictor(self.global_mean + w[0], self.item_bias, self.item_factors, w[1:])
