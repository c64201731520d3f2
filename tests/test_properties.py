"""Property-based tests (hypothesis) for the episode sampler and for config overrides."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from metalearn.data import ArrayDataset, EpisodeSampler, FixedEpisodes, SinusoidTasks
from metalearn.presets import get_preset
from metalearn.train.config import ConfigError, RunConfig, apply_overrides, diff, validate

FAST = settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


def indexed_dataset(sizes: list[int]) -> ArrayDataset:
    """Row i of X is ``[i, label]``, so every sampled example tells where it came from."""
    labels = np.repeat(np.arange(len(sizes)), sizes)
    rng = np.random.default_rng(len(sizes))
    rng.shuffle(labels)  # classes interleaved, not in blocks
    x = np.stack([np.arange(len(labels)), labels], axis=1).astype(np.float32)
    return ArrayDataset(x, labels)


task_shapes = st.fixed_dictionaries({
    "sizes": st.lists(st.integers(1, 12), min_size=1, max_size=9),
    "n_way": st.integers(-2, 11),
    "k_shot": st.integers(-1, 8),
    "n_query": st.integers(-1, 8),
    "n_tasks": st.integers(1, 5),
    "seed": st.integers(0, 2**31 - 1),
})


@FAST
@given(task_shapes)
def test_sampler_valid_shapes_give_correct_disjoint_episodes(p):
    ds = indexed_dataset(p["sizes"])
    n_way, k, q, t = p["n_way"], p["k_shot"], p["n_query"], p["n_tasks"]
    feasible = 2 <= n_way <= len(p["sizes"]) and k >= 1 and q >= 1 and min(p["sizes"]) >= k + q
    if not feasible:
        with pytest.raises(ValueError, match=r"at least|lower|at most"):
            EpisodeSampler(ds, n_way, k, q, seed=p["seed"])
        return
    batch = EpisodeSampler(ds, n_way, k, q, seed=p["seed"]).sample_batch(t)
    assert batch.support_x.shape == (t, n_way * k, 2) and batch.query_x.shape == (t, n_way * q, 2)
    assert batch.support_y.dtype == torch.int64 and batch.class_ids.shape == (t, n_way)
    assert torch.equal(batch.support_y, torch.arange(n_way).repeat_interleave(k).expand(t, -1))
    assert torch.equal(batch.query_y, torch.arange(n_way).repeat_interleave(q).expand(t, -1))
    for i in range(t):
        classes = batch.class_ids[i]
        assert len(set(classes.tolist())) == n_way  # distinct classes per task
        rows_s, rows_q = batch.support_x[i, :, 0].long(), batch.query_x[i, :, 0].long()
        all_rows = torch.cat([rows_s, rows_q]).tolist()
        assert len(set(all_rows)) == len(all_rows)  # no example twice: support and query disjoint
        # every example is of the dataset class its label stands for
        assert torch.equal(batch.support_x[i, :, 1].long(), classes[batch.support_y[i]])
        assert torch.equal(batch.query_x[i, :, 1].long(), classes[batch.query_y[i]])


@FAST
@given(task_shapes)
def test_sampler_same_seed_same_episodes_and_state_dict_resumes(p):
    sizes = [max(s, 4) for s in p["sizes"]] + [4]
    ds = indexed_dataset(sizes)
    n_way = min(max(p["n_way"], 2), len(sizes))
    a = EpisodeSampler(ds, n_way, 2, 2, seed=p["seed"])
    b = EpisodeSampler(ds, n_way, 2, 2, seed=p["seed"])
    first = a.sample_batch(p["n_tasks"])
    assert torch.equal(first.support_x, b.sample_batch(p["n_tasks"]).support_x)
    state = a.state_dict()
    nxt = a.sample_batch(3)
    c = EpisodeSampler(ds, n_way, 2, 2, seed=p["seed"])
    c.load_state_dict(state)
    again = c.sample_batch(3)
    assert torch.equal(nxt.support_x, again.support_x) and torch.equal(nxt.query_x, again.query_x)


@FAST
@given(st.integers(-2, 30), st.integers(-2, 30), st.integers(1, 4), st.integers(0, 1000))
def test_regression_sampler_shapes_or_documented_error(k, q, t, seed):
    if k < 1 or q < 1:
        with pytest.raises(ValueError, match="must be at least 1"):
            EpisodeSampler(SinusoidTasks(), None, k, q, seed=seed)
        return
    batch = EpisodeSampler(SinusoidTasks(), None, k, q, seed=seed).sample_batch(t)
    assert batch.support_x.shape == (t, k, 1) and batch.query_y.shape == (t, q, 1)
    assert torch.isfinite(batch.support_y).all() and batch.support_x.abs().max() <= 5


@FAST
@given(st.sampled_from([1.5, "3", None, True, 2.0 + 0j]), st.sampled_from(["n_way", "k_shot", "n_query"]))
def test_sampler_wrong_types_raise_type_error(value, name):
    ds = indexed_dataset([6] * 5)
    args = {"n_way": 3, "k_shot": 2, "n_query": 2, name: value}
    with pytest.raises(TypeError, match=f"{name} must be an int"):
        EpisodeSampler(ds, **args)


@settings(max_examples=25, deadline=None, database=None)
@given(st.integers(1, 40), st.integers(0, 10**6))
def test_fixed_episodes_same_seed_same_set(n, seed):
    ds = indexed_dataset([5] * 6)
    a, b = FixedEpisodes(ds, 3, 1, 2, n, seed), FixedEpisodes(ds, 3, 1, 2, n, seed)
    assert a.fingerprint == b.fingerprint and len(a) == n
    assert torch.equal(a.batch(0, n).query_x, b.batch(0, n).query_x)


# ------------------------------------------------------------------------------ config overrides

BASE = get_preset("demo")
INT_KEYS = ["train.steps", "train.meta_batch", "train.val_every", "train.checkpoint_every",
            "train.log_every", "train.seed", "data.k_shot", "data.n_query", "data.val_episodes"]
FLOAT_KEYS = ["train.lr", "train.weight_decay", "algorithm.inner_lr"]


def get(cfg: RunConfig, key: str):
    section, name = key.split(".")
    obj = getattr(cfg, section)
    return obj.options[name] if section in ("model", "algorithm") and not hasattr(obj, name) else getattr(obj, name)


overrides = st.lists(st.one_of(
    st.tuples(st.sampled_from(INT_KEYS), st.integers(1, 10**6)),
    st.tuples(st.sampled_from(FLOAT_KEYS), st.floats(1e-6, 10, allow_nan=False)),
    st.tuples(st.just("train.tensorboard"), st.booleans()),
    st.tuples(st.just("model.hidden"), st.lists(st.integers(1, 64), min_size=1, max_size=3)),
), max_size=6)


@FAST
@given(overrides)
def test_overrides_set_exactly_what_they_say_and_round_trip(items):
    before = json.dumps(BASE.to_dict(), sort_keys=True)
    texts = [f"{k}={json.dumps(v)}" for k, v in items]
    cfg = apply_overrides(BASE, texts)
    assert json.dumps(BASE.to_dict(), sort_keys=True) == before  # the base is never modified
    last = dict(items)  # the last override of a key wins
    for k, v in last.items():
        got = get(cfg, k)
        assert got == v or (isinstance(v, float) and math.isclose(got, v, rel_tol=1e-12))
    changed = {line.split(":")[0].strip() for line in diff(BASE, cfg)}
    assert changed <= {k for k, v in last.items()}  # nothing else changed
    again = RunConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again.to_dict() == cfg.to_dict()  # what is saved with a run loads back identically
    assert apply_overrides(cfg, []).to_dict() == cfg.to_dict()


@FAST
@given(st.lists(st.tuples(st.sampled_from(INT_KEYS), st.integers(1, 1000)), max_size=5, unique_by=lambda x: x[0]))
def test_overrides_of_distinct_keys_commute(items):
    texts = [f"{k}={v}" for k, v in items]
    assert apply_overrides(BASE, texts).to_dict() == apply_overrides(BASE, texts[::-1]).to_dict()


@FAST
@given(st.sampled_from(INT_KEYS), st.one_of(
    st.text(alphabet="abcxyz_()'", min_size=1, max_size=8), st.floats(0.1, 0.9), st.just("[1, 2]")))
def test_wrong_types_raise_a_config_error_naming_the_key(key, value):
    text = value if isinstance(value, str) else repr(value)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        apply_overrides(BASE, [f"{key}={text}"])


@FAST
@given(st.sampled_from(["data", "model", "train", "algorithm", "nope"]),
       st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12))
def test_unknown_keys_raise_a_config_error(section, name):
    keys = set(RunConfig.__dataclass_fields__)
    for s in ("data", "model", "train", "algorithm"):
        keys |= {f"{s}.{f}" for f in getattr(BASE, s).__dataclass_fields__}
    keys |= {"model.in_features", "model.hidden", "model.out_features", "model.norm", "model.activation",
             "algorithm.inner_lr", "algorithm.inner_steps", "algorithm.eval_inner_steps"}
    key = f"{section}.{name}"
    from metalearn.train.config import all_keys

    assume(key not in all_keys(BASE) and key not in keys)
    with pytest.raises(ConfigError, match="unknown config key|has no option"):
        apply_overrides(BASE, [f"{key}=1"])


@FAST
@given(st.sampled_from(["data.k_shot", "data.n_query", "train.steps", "train.meta_batch"]), st.integers(-100, 0))
def test_non_positive_counts_are_refused(key, value):
    with pytest.raises(ConfigError, match="must be at least 1"):
        apply_overrides(BASE, [f"{key}={value}"])


@pytest.mark.parametrize("override, message", [
    ("train.lr=-1", "train.lr must be a positive number"),
    ("train.lr=0", "train.lr must be a positive number"),
    ("train.weight_decay=-0.1", "weight_decay must be 0 or positive"),
    ("train.gamma=1.5", r"gamma .* must be in \(0, 1\]"),
    ("train.grad_clip=0", "grad_clip must be positive, or null"),
])
def test_bad_optimiser_numbers_are_refused(override, message):
    with pytest.raises(ConfigError, match=message):
        validate(apply_overrides(BASE, [override]))
