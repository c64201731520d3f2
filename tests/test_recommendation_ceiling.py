"""The generator's true model as the ceiling of the recommendation table (issue 19).

What is checked: the generator's files are byte-identical to those written before the true model
existed; the parameters and seed read back from a written folder give the model of its very
ratings (joined by raw ids); the expectation and median of the rating distribution agree with a
Monte-Carlo estimate; the ``generator-oracle`` row of benchmarks/recommendation.py beats every
baseline on the same test users, its MSE is the Bayes risk the model predicts, and data the
generator did not write are refused with the reason.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from metalearn.data.ratings import read_movielens_100k
from metalearn.data.synthetic_ratings import (
    SyntheticRatings,
    TrueRatingModel,
    expected_rating,
    median_rating,
    rating_probabilities,
    read_generator_record,
    write_synthetic_movielens,
)

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "recommendation.py"
SMALL = SyntheticRatings(n_users=120, n_items=90, max_ratings=60)

# sha256 of the files of write_synthetic_movielens(folder, SMALL, seed=3), computed with the
# generator as it was before the true model was factored out of it (commit 244198e)
HASHES = {
    "README.txt": "14329b016c9dcf7f9da207522350abdaa388e70c8fdecb38eace524f060a2aa2",
    "u.data": "b86e19413475e3a2068cd1af75604ea0fd061cf34be00c48bda60c22061d1f64",
    "u.genre": "9757e0d3e6b298159a80dd48eaf938114690e911e39af97a76949ef1663610bb",
    "u.item": "9f62efec925b8a051757ddbc25d4b011c7f9be2b11c4929f007d6e068660dcab",
    "u.occupation": "cd5fbec9afe345d993a62fc7817df1a4a9079c4feb267b3118763b8fd942137d",
    "u.user": "adfc97d9ade848c46fafe5eb5d915707022b05a1afc7ff5d3d9d811a24934af6",
}


def test_written_files_are_byte_identical_to_the_generator_before_the_true_model(tmp_path):
    folder = write_synthetic_movielens(tmp_path, SMALL, seed=3)
    got = {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(folder.iterdir())}
    assert got == HASHES


def test_the_recorded_parameters_give_the_model_of_the_folder_ratings(tmp_path):
    config = SyntheticRatings(n_users=80, n_items=70, max_ratings=50, mu=3.4, noise_std=0.0)
    folder = write_synthetic_movielens(tmp_path / "quiet", config, seed=5)
    assert read_generator_record(folder) == (config, 5)
    table = read_movielens_100k(folder)
    users, items = np.array(table.user_ids)[table.user], np.array(table.item_ids)[table.item]
    model = TrueRatingModel.from_folder(folder)
    # without noise the rating is the rounded score: the join by raw ids is exact, pair by pair
    assert np.array_equal(model.expected(users, items), table.rating.astype(np.float64))
    assert np.array_equal(model.median(users, items), table.rating.astype(np.float64))
    shuffled = np.random.default_rng(0).permutation(len(users))
    assert not np.array_equal(model.expected(users, items[shuffled]), table.rating.astype(np.float64))

    noisy = write_synthetic_movielens(tmp_path / "noisy", SMALL, seed=3)
    t = read_movielens_100k(noisy)
    u, i = np.array(t.user_ids)[t.user], np.array(t.item_ids)[t.item]
    from_folder = TrueRatingModel.from_folder(noisy)
    assert np.array_equal(from_folder.score(u, i), TrueRatingModel(SMALL, 3).score(u, i))
    # ints and strings name the same pairs; a rating is within a few noise sigmas of its score
    assert np.array_equal(from_folder.score(u.astype(int), i.astype(int)), from_folder.score(u, i))
    clipped = np.clip(from_folder.score(u, i), 1, 5)
    assert np.abs(t.rating - clipped).max() < 0.5 + 5 * SMALL.noise_std


def test_folders_without_a_record_or_with_other_ratings_are_refused(tmp_path):
    folder = write_synthetic_movielens(tmp_path / "d", SMALL, seed=3)
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "u.data").write_bytes((folder / "u.data").read_bytes())
    with pytest.raises(ValueError, match="has no README.txt.*write_synthetic_movielens"):
        TrueRatingModel.from_folder(bare)
    (bare / "README.txt").write_text("MovieLens 100K, the real one\n")
    with pytest.raises(ValueError, match="does not record the generator's parameters and seed"):
        read_generator_record(bare)
    edited = (folder / "u.data").read_bytes().replace(b"\t4\t", b"\t5\t", 1)
    (folder / "u.data").write_bytes(edited)
    with pytest.raises(ValueError, match="is not what the generator writes"):
        TrueRatingModel.from_folder(folder)
    model = TrueRatingModel.from_folder(folder, check=False)
    with pytest.raises(ValueError, match=r"user id '0' is not one the generator wrote \(ids 1..120\)"):
        model.score(["0"], ["1"])
    with pytest.raises(ValueError, match="item id 'x'"):
        model.score(["1"], ["x"])


@pytest.mark.parametrize("noise_std", [0.65, 0.3])
def test_expectation_and_median_equal_a_monte_carlo_estimate(noise_std):
    score = np.array([-0.7, 1.2, 2.49, 3.0, 3.6, 4.45, 5.3, 7.0])
    n = 400_000
    draws = np.clip(np.rint(score + noise_std * np.random.default_rng(1).normal(size=(n, len(score)))), 1, 5)
    freq = np.stack([(draws == k).mean(axis=0) for k in range(1, 6)], axis=-1)
    probs = rating_probabilities(score, noise_std)
    np.testing.assert_allclose(probs.sum(axis=-1), 1.0, atol=1e-12)
    # 5 standard errors of a frequency at most 1/2: a wrong bin edge (off by 0.1) is far outside
    assert np.abs(freq - probs).max() < 5 * np.sqrt(0.25 / n)
    se = draws.std(axis=0) / np.sqrt(n)
    assert np.all(np.abs(draws.mean(axis=0) - expected_rating(score, noise_std)) < 5 * se + 1e-12)
    assert np.array_equal(median_rating(score, noise_std), np.median(draws, axis=0))
    # the expectation has the least squared error and the median the least absolute error
    for shift in (-0.1, 0.1):
        e, m = expected_rating(score, noise_std), median_rating(score, noise_std)
        assert np.all(((draws - e) ** 2).mean(0) <= ((draws - e - shift) ** 2).mean(0) + 1e-12)
        assert np.all(np.abs(draws - m).mean(0) <= np.abs(draws - m - shift).mean(0) + 1e-12)


def test_no_noise_is_the_rounded_score():
    score = np.array([0.2, 2.5, 3.5, 3.51, 9.0])
    assert expected_rating(score, 0.0).tolist() == [1.0, 2.0, 4.0, 4.0, 5.0]  # rint: half to even


def bench(*argv: str, env: dict, ok: bool = True) -> subprocess.CompletedProcess:
    out = subprocess.run([sys.executable, str(SCRIPT), *argv], capture_output=True, text=True, env=env,
                         cwd=REPO, timeout=300)
    assert (out.returncode == 0) == ok, out.stderr[-3000:]
    return out


@pytest.fixture
def env(tmp_path):
    return {**os.environ, "METALEARN_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}


@pytest.mark.slow
def test_the_oracle_row_beats_every_baseline_on_the_same_users_and_the_table_shows_it_last(tmp_path, env):
    data = write_synthetic_movielens(tmp_path / "data", SyntheticRatings(n_users=500, n_items=150, max_ratings=80),
                                     seed=0)
    results = tmp_path / "results.jsonl"
    official = REPO / "benchmarks" / "results.jsonl"
    before = official.read_bytes() if official.exists() else None
    split = ["--set", "data.split_fractions=[0.5,0.1,0.4]"]  # 200 test users: the oracle's lead is clear
    out = bench("table-run", "--out", str(tmp_path / "runs"), "--dataset", "movielens-synthetic",
                "--data-root", str(data), "--protocols", "melu", "mamo", "--methods", "global-mean", "item-mean",
                "user-mean", "mf-ridge", "generator-learner", "generator-oracle", "--results", str(results), *split,
                env=env)
    rows = {r["name"]: r for r in map(json.loads, out.stdout.splitlines())}
    for protocol in ("melu", "mamo"):
        prefix = f"rec/movielens-synthetic/{protocol}/"
        oracle = rows[f"{prefix}generator-oracle/mse"]
        baselines = {m: rows[f"{prefix}{m}/mse"] for m in ("GlobalMean", "ItemMean", "UserMean", "MF-ridge")}
        assert oracle["test_users"] >= 150 and oracle["prediction"] == "expected rating"
        assert {r["episodes_fingerprint"] for r in (oracle, *baselines.values())} == {oracle["episodes_fingerprint"]}
        for name, b in baselines.items():
            assert len(b["per_user"]) == len(oracle["per_user"])
            assert oracle["value"] < b["value"], (protocol, name)
        best = min(baselines, key=lambda m: baselines[m]["value"])
        diff = rows[f"{prefix}generator-oracle/mse_minus_best_baseline"]
        assert diff["baseline"] == best and diff["value"] + diff["ci95"] < 0  # ahead, CI included
        assert diff["value"] == pytest.approx(oracle["value"] - baselines[best]["value"], abs=1e-5)
        assert rows[f"{prefix}generator-oracle/mae_of_median"]["value"] <= rows[f"{prefix}generator-oracle/mae"]["value"] + 0.01
        # learning the user from the support costs something, but knowing the items beats every baseline
        learner = rows[f"{prefix}generator-learner/mse"]
        assert oracle["value"] < learner["value"] < min(b["value"] for b in baselines.values()), protocol
        assert learner["per_user"] != oracle["per_user"] and learner["test_users"] == oracle["test_users"]
    assert (official.read_bytes() if official.exists() else None) == before

    # an oracle-only run pairs against the baselines recorded for the same test users
    again = bench("table-run", "--out", str(tmp_path / "runs"), "--dataset", "movielens-synthetic",
                  "--data-root", str(data), "--protocols", "melu", "--methods", "generator-oracle",
                  "--results", str(results), *split, env=env)
    last = {r["name"]: r for r in map(json.loads, again.stdout.splitlines())}
    name = "rec/movielens-synthetic/melu/generator-oracle/mse_minus_best_baseline"
    assert last[name]["value"] == pytest.approx(rows[name]["value"], abs=1e-9)

    table = bench("table", "--dataset", "movielens-synthetic", "--results", str(results), env=env).stdout
    melu = table.split("mamo protocol")[0]
    rows_md = [line for line in melu.splitlines() if line.startswith("| ") and not line.startswith("| method")]
    assert rows_md[-1].startswith("| generator's true model (ceiling, not a method) |")
    assert rows_md[-2].startswith("| items known, the user learnt from the support (ceiling of learners")
    best = rows["rec/movielens-synthetic/melu/generator-oracle/mse_minus_best_baseline"]["baseline"]
    assert f"(vs {best})" in rows_md[-1] and rows_md[-1].count("±") == 6
    assert "a ceiling, not a method" in melu


def test_the_learner_knows_the_user_from_many_ratings_and_only_the_attributes_from_none(tmp_path):
    config = SyntheticRatings(n_users=40, n_items=400, max_ratings=400, noise_std=0.1)
    model = TrueRatingModel(config, seed=4)
    items = np.arange(1, 401)
    truth = model.expected(np.full(400, 7), items)
    # every item rated (noisily): the posterior of the user's bias and factors is tight
    ratings = np.clip(np.rint(model.score(np.full(400, 7), items) + 0.1 * np.random.default_rng(0).normal(size=400)), 1, 5)
    learnt = model.learner(7, items[:300], ratings[:300])(items[300:])
    assert np.abs(learnt - truth[300:]).mean() < 0.1
    blind = model.learner(7, [], [])(items[300:])
    assert np.abs(blind - truth[300:]).mean() > 3 * np.abs(learnt - truth[300:]).mean()
    # no ratings: two users with the same attributes get the same prediction, whatever their own factors
    z = model._latent
    twins = [(a, b) for a in range(40) for b in range(a + 1, 40) if np.allclose(z.p_attr[a], z.p_attr[b])
             and z.a_u[a] == z.a_u[b]]
    assert twins, "the seed has no two users with the same attributes: pick another"
    a, b = twins[0]
    assert np.allclose(model.learner(a + 1, [], [])(items), model.learner(b + 1, [], [])(items))
    assert not np.allclose(model.expected(np.full(400, a + 1), items), model.expected(np.full(400, b + 1), items))
    with pytest.raises(ValueError, match="one rating per item"):
        model.learner(1, [1, 2], [3.0])


def test_the_oracle_mse_is_the_bayes_risk_of_the_true_model(tmp_path):
    """Measured against the variance the model predicts for the very query pairs: a join on the
    wrong ids (or a wrong expectation) would leave the oracle far above its own Bayes risk."""
    sys.path.insert(0, str(SCRIPT.parent))
    import recommendation as rec

    from metalearn.presets import get_preset
    from metalearn.train.config import apply_overrides
    from metalearn.train.data import fixed_episodes

    data = write_synthetic_movielens(tmp_path / "data", SyntheticRatings(n_users=400, n_items=150, max_ratings=80),
                                     seed=2)
    cfg = apply_overrides(get_preset("melu-movielens-synthetic"),
                          [f"data.root={json.dumps(str(data))}", "data.split_fractions=[0.5,0.1,0.4]"])
    episodes = fixed_episodes(cfg.data, "test")
    expected, median = rec.generator_oracle(cfg, episodes)
    model, table = TrueRatingModel.from_folder(data), episodes.tasks.table
    risk = []
    for i in range(len(episodes)):
        q = episodes.rows(i)[1]
        p = model.probabilities(np.array(table.user_ids)[table.user[q]], np.array(table.item_ids)[table.item[q]])
        r = np.arange(1, 6)
        risk.append(float((p @ r**2 - (p @ r) ** 2).mean()))
    gap = np.array(expected["per_episode"]) - np.array(risk)
    assert abs(gap.mean()) < 3 * 1.96 * gap.std() / np.sqrt(len(gap)), (gap.mean(), np.mean(risk))
    assert median["n"] == expected["n"] == len(episodes)


def test_the_oracle_refuses_data_the_generator_did_not_write(tmp_path, env):
    out = bench("table-run", "--out", str(tmp_path / "runs"), "--dataset", "movielens-100k", "--methods",
                "mf-ridge", "generator-oracle", "--results", str(tmp_path / "r.jsonl"), env=env, ok=False)
    assert "generator-oracle comes from the seeded generator's true model" in out.stderr
    assert "drop generator-oracle from --methods" in out.stderr
    assert not (tmp_path / "r.jsonl").exists()
