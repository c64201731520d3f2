"""Tests for the rating baselines: hand-made predictions, the ridge closed form, ALS, cold items."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from metalearn.algorithms import GlobalMean, ItemMean, MatrixFactorizationRidge, UserMean
from metalearn.algorithms.rating_baselines import ridge_rows, ridge_user
from metalearn.eval import evaluate
from metalearn.eval.metrics import rmse
from metalearn.types import Episode

# four meta-training ratings: user 0 rates item codes 1 and 2, users 1 and 2 rate code 1
USER = torch.tensor([0, 0, 1, 2])
CODE = torch.tensor([1, 2, 1, 1])
RATING = torch.tensor([5.0, 1.0, 5.0, 5.0])  # mean 16 / 4 = 4


def rows(*codes: int) -> torch.Tensor:
    """Input rows ``[item_code, one attribute column]``."""
    return torch.tensor([[c, 7] for c in codes], dtype=torch.int64)


def planted(n_users: int, n_items: int, rank: int, density: float, noise: float, seed: int):
    """Ratings ``3 + b_u + b_i + u . v + noise`` of a random ``density`` share of the matrix."""
    g = np.random.default_rng(seed)
    u, v = g.normal(size=(n_users, rank)), g.normal(size=(n_items, rank))
    b_u, b_i = 0.3 * g.normal(size=n_users), 0.5 * g.normal(size=n_items)
    full = 3 + b_u[:, None] + b_i[None, :] + u @ v.T + noise * g.normal(size=(n_users, n_items))
    mask = g.random((n_users, n_items)) < density
    uu, ii = np.nonzero(mask)
    return (torch.from_numpy(uu), torch.from_numpy(ii + 1), torch.from_numpy(full[uu, ii]).float(), full, g)


def test_global_mean_hand_made():
    m = GlobalMean().fit(USER, CODE, RATING)
    pred = m.adapt(rows(1), torch.tensor([[1.0]]))(rows(1, 2, 0, 9))
    assert pred.shape == (4, 1) and pred.dtype == torch.float32
    assert torch.equal(pred, torch.full((4, 1), 4.0))


def test_item_mean_hand_made_with_shrinkage():
    # code 1: deviations +1, +1, +1 from mu = 4 -> 4 + 3 / (3 + 5) = 4.375
    # code 2: deviation -3 -> 4 - 3 / (1 + 5) = 3.5; code 0 and code 9 (never seen) -> mu = 4
    m = ItemMean().fit(USER, CODE, RATING)
    assert m.shrinkage == 5.0
    pred = m.adapt(rows(2), torch.tensor([[1.0]]))(rows(1, 2, 0, 9))
    assert torch.allclose(pred, torch.tensor([[4.375], [3.5], [4.0], [4.0]]))
    raw = ItemMean(shrinkage=0).fit(USER, CODE, RATING).adapt(rows(2), torch.tensor([[1.0]]))(rows(1, 2))
    assert torch.allclose(raw, torch.tensor([[5.0], [1.0]]))  # plain means
    with pytest.raises(ValueError, match="pseudo-ratings"):
        ItemMean(shrinkage=-1)


def test_user_mean_hand_made():
    m = UserMean().fit(USER, CODE, RATING)
    pred = m.adapt(rows(1, 2, 0), torch.tensor([[5.0], [4.0], [3.0]]))(rows(2, 0, 9))
    assert torch.allclose(pred, torch.full((3, 1), 4.0))
    pred = m.adapt(rows(1, 2), torch.tensor([[2.0], [1.0]]))(rows(1))
    assert torch.allclose(pred, torch.tensor([[1.5]]))
    # an empty support set falls back to the global mean
    empty = m.adapt(torch.zeros(0, 2, dtype=torch.int64), torch.zeros(0, 1))(rows(1))
    assert torch.allclose(empty, torch.tensor([[4.0]]))


def test_ridge_user_equals_closed_form_and_lstsq():
    g = np.random.default_rng(0)
    q, res, lam = g.normal(size=(7, 3)), g.normal(size=7), 0.7
    z = np.hstack([np.ones((7, 1)), q])
    closed = np.linalg.solve(z.T @ z + lam * np.eye(4), z.T @ res)
    # ridge as least squares on the augmented system [Z; sqrt(lam) I] w = [res; 0]
    aug = np.linalg.lstsq(np.vstack([z, np.sqrt(lam) * np.eye(4)]), np.concatenate([res, np.zeros(4)]), rcond=None)[0]
    got = ridge_user(torch.from_numpy(q), torch.from_numpy(res), lam).numpy()
    assert got.shape == (4,)
    np.testing.assert_allclose(got, closed, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(got, aug, rtol=1e-8, atol=1e-10)
    # without a penalty and with full column rank: ordinary least squares
    ols = np.linalg.lstsq(z, res, rcond=None)[0]
    np.testing.assert_allclose(ridge_user(torch.from_numpy(q), torch.from_numpy(res), 0.0).numpy(), ols, rtol=1e-8)


def test_ridge_rows_equals_one_regression_per_row():
    g = np.random.default_rng(1)
    index = torch.from_numpy(g.integers(0, 4, size=40))
    f, res = torch.from_numpy(g.normal(size=(40, 2))), torch.from_numpy(g.normal(size=40))
    penalty = torch.tensor([0.5, 1.0, 2.0, 3.0], dtype=torch.float64)
    w = ridge_rows(index, 5, f, res, torch.cat([penalty, torch.ones(1, dtype=torch.float64)]))
    for j in range(4):
        sel = index == j
        assert torch.allclose(w[j], ridge_user(f[sel], res[sel], float(penalty[j])))
    assert torch.equal(w[4], torch.zeros(3, dtype=torch.float64))  # no observations -> 0


def test_mf_adapt_equals_numpy_closed_form():
    user, code, rating, _, _ = planted(30, 20, 2, 0.5, 0.1, seed=2)
    m = MatrixFactorizationRidge(factors=3, reg=0.1, iterations=5).fit(user, code, rating)
    sx = rows(3, 5, 0, 8, 11, 25)  # code 0 and code 25 (> 20) are unseen items
    sy = torch.tensor([[4.0], [2.0], [3.0], [5.0], [1.0], [4.0]])
    q = m.item_factors.double().numpy()
    b_i = m.item_bias.double().numpy()
    mu = float(m.global_mean)
    idx = np.array([3, 5, 0, 8, 11, 0])  # unseen -> row 0, which holds q = 0 and b = 0
    assert np.all(q[0] == 0) and b_i[0] == 0
    z = np.hstack([np.ones((6, 1)), q[idx]])
    lam = 0.1 * 6  # user_reg None: the count-scaled rule of meta-training, reg * n_s
    w = np.linalg.solve(z.T @ z + lam * np.eye(4), z.T @ (sy[:, 0].double().numpy() - mu - b_i[idx]))
    qx = rows(1, 3, 0, 25)
    qidx = np.array([1, 3, 0, 0])
    expect = mu + w[0] + b_i[qidx] + q[qidx] @ w[1:]
    got = m.adapt(sx, sy)(qx)
    assert got.shape == (4, 1) and got.dtype == torch.float32
    np.testing.assert_allclose(got[:, 0].numpy(), expect, rtol=1e-5, atol=1e-5)
    # an unseen item's prediction is mu + b_u
    np.testing.assert_allclose(got[2:, 0].numpy(), mu + w[0], rtol=1e-5)
    # a fixed user_reg replaces reg * n_s
    m.user_reg = 2.5
    w2 = np.linalg.solve(z.T @ z + 2.5 * np.eye(4), z.T @ (sy[:, 0].double().numpy() - mu - b_i[idx]))
    np.testing.assert_allclose(m.adapt(sx, sy)(qx)[:, 0].numpy(), mu + w2[0] + b_i[qidx] + q[qidx] @ w2[1:],
                               rtol=1e-5, atol=1e-5)


def test_als_item_step_is_the_exact_ridge_solution():
    user, code, rating, _, _ = planted(25, 15, 2, 0.6, 0.2, seed=3)
    m = MatrixFactorizationRidge(factors=2, reg=0.2, iterations=4).fit(user, code, rating)
    # the last half-step solved every item against the final user side, independently here
    p, b_u = m.user_factors.double().numpy(), m.user_bias.double().numpy()
    mu, r = float(m.global_mean), rating.double().numpy()
    u, c = user.numpy(), code.numpy()
    for item in (1, 7, 15):
        sel = c == item
        z = np.hstack([np.ones((sel.sum(), 1)), p[u[sel]]])
        lam = 0.2 * sel.sum()
        w = np.linalg.solve(z.T @ z + lam * np.eye(3), z.T @ (r[sel] - mu - b_u[u[sel]]))
        np.testing.assert_allclose(m.item_bias[item].item(), w[0], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(m.item_factors[item].numpy(), w[1:], rtol=1e-4, atol=1e-5)


def test_als_lowers_training_rmse_and_recovers_planted_low_rank():
    user, code, rating, _, _ = planted(60, 40, 2, 0.6, 0.0, seed=4)  # noiseless rank 2
    m = MatrixFactorizationRidge(factors=2, reg=1e-4, iterations=30).fit(user, code, rating)
    obj = [h["objective"] for h in m.history]
    err = [h["rmse"] for h in m.history]
    assert len(obj) == 30
    assert all(b <= a * (1 + 1e-9) for a, b in zip(obj, obj[1:]))  # exact block minimisation
    assert err[-1] < 0.5 * err[0]
    assert err[-1] < 0.05, err[-1]
    assert np.std(rating.numpy()) > 1.0  # the data are far from constant
    m2 = MatrixFactorizationRidge(factors=2, reg=1e-4, iterations=30).fit(user, code, rating)
    assert torch.equal(m.item_factors, m2.item_factors)  # seeded


def test_adapt_never_changes_fitted_state():
    user, code, rating, _, _ = planted(20, 12, 2, 0.6, 0.1, seed=5)
    sx, sy = rows(1, 4, 0, 30), torch.tensor([[5.0], [1.0], [2.0], [4.0]])
    for m in (GlobalMean(), ItemMean(), UserMean(), MatrixFactorizationRidge(factors=2, iterations=3)):
        m.fit(user, code, rating)
        before = {k: v.clone() for k, v in m.state_dict().items()}
        pred = m.adapt(sx, sy)
        pred(rows(2, 3))
        m.adapt(sx, sy + 1)(rows(5))
        after = m.state_dict()
        assert before.keys() == after.keys()
        assert all(torch.equal(before[k], after[k]) for k in before), type(m).__name__


def test_state_dict_round_trip_and_unfitted_errors():
    user, code, rating, _, _ = planted(20, 12, 2, 0.6, 0.1, seed=6)
    sx, sy, qx = rows(1, 4), torch.tensor([[5.0], [1.0]]), rows(2, 3, 0)
    for cls, kw in ((ItemMean, {}), (MatrixFactorizationRidge, {"factors": 2, "iterations": 2})):
        fitted = cls(**kw).fit(user, code, rating)
        fresh = cls(**kw)
        with pytest.raises(RuntimeError, match="call fit"):
            fresh.adapt(sx, sy)
        fresh.load_state_dict(fitted.state_dict())
        assert torch.equal(fresh.adapt(sx, sy)(qx), fitted.adapt(sx, sy)(qx))
    with pytest.raises(ValueError, match="code 0"):
        GlobalMean().fit(torch.tensor([0]), torch.tensor([0]), torch.tensor([3.0]))
    with pytest.raises(ValueError, match="equal length"):
        GlobalMean().fit(torch.tensor([0, 1]), torch.tensor([1]), torch.tensor([3.0]))
    with pytest.raises(ValueError, match="support_y"):
        GlobalMean().fit(user, code, rating).adapt(sx, sy[:, 0])
    with pytest.raises(ValueError, match="negative item codes"):
        ItemMean().fit(user, code, rating).adapt(sx, sy)(torch.tensor([[-1, 0]]))


def test_mf_ridge_beats_item_mean_on_new_users():
    # meta-train users and new users drawn from the same planted rank-3 model with noise
    g = np.random.default_rng(7)
    n_train, n_new, n_items, rank = 200, 60, 80, 3
    v, b_i = g.normal(size=(n_items, rank)), 0.5 * g.normal(size=n_items)

    def users(n):
        return g.normal(size=(n, rank)), 0.3 * g.normal(size=n)

    u, b_u = users(n_train)
    full = 3 + b_u[:, None] + b_i[None, :] + u @ v.T + 0.3 * g.normal(size=(n_train, n_items))
    uu, ii = np.nonzero(g.random((n_train, n_items)) < 0.3)
    user, code = torch.from_numpy(uu), torch.from_numpy(ii + 1)
    rating = torch.from_numpy(full[uu, ii]).float()
    mf = MatrixFactorizationRidge(factors=8, reg=0.1).fit(user, code, rating)
    item_mean = ItemMean().fit(user, code, rating)
    u, b_u = users(n_new)
    episodes = []
    for j in range(n_new):
        items = g.permutation(n_items)[:30]  # 20 support, 10 query
        y = 3 + b_u[j] + b_i[items] + u[j] @ v[items].T + 0.3 * g.normal(size=30)
        x = rows(*(items + 1).tolist())
        yt = torch.from_numpy(y).float()[:, None]
        episodes.append(Episode(x[:20], yt[:20], x[20:], yt[20:]))
    mf_rmse = np.mean([rmse(mf.adapt(e.support_x, e.support_y)(e.query_x), e.query_y) for e in episodes])
    im_rmse = np.mean([rmse(item_mean.adapt(e.support_x, e.support_y)(e.query_x), e.query_y) for e in episodes])
    assert mf_rmse < 0.7 * im_rmse, (mf_rmse, im_rmse)
    # the baselines run through the ordinary evaluator (regression episodes, MSE with a CI)
    r_mf, r_im = evaluate(mf, episodes, progress=False), evaluate(item_mean, episodes, progress=False)
    assert r_mf.metric == "mse" and r_mf.n == n_new
    assert r_mf.mean + r_mf.ci95 < r_im.mean - r_im.ci95
