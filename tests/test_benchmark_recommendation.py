"""Smoke test of benchmarks/recommendation.py: ``table-run`` end to end on a tiny generated
MovieLens-format dataset (a baseline and MeLU, one protocol, 4 meta-steps), then ``table``.

Results go to a temporary ``--results`` file, never to benchmarks/results.jsonl."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from metalearn.data.synthetic_ratings import SyntheticRatings, write_synthetic_movielens

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "recommendation.py"
METRICS = ("mae", "rmse", "ndcg@3", "ndcg@5", "ndcg@10", "mse")


def bench(*argv: str, env: dict) -> subprocess.CompletedProcess:
    out = subprocess.run([sys.executable, str(SCRIPT), *argv], capture_output=True, text=True, env=env,
                         cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return out


@pytest.mark.slow
def test_table_run_records_every_figure_with_a_ci_and_table_renders_them(tmp_path):
    data = write_synthetic_movielens(tmp_path / "data", SyntheticRatings(n_users=150, n_items=120,
                                                                         max_ratings=80), seed=0)
    results = tmp_path / "results.jsonl"
    official = REPO / "benchmarks" / "results.jsonl"
    before = official.read_bytes() if official.exists() else None
    env = {**os.environ, "METALEARN_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    run = ["table-run", "--out", str(tmp_path / "runs"), "--dataset", "movielens-synthetic",
           "--data-root", str(data), "--protocols", "melu", "--methods", "item-mean", "melu",
           "--steps", "4", "--results", str(results)]
    out = bench(*run, env=env)

    rows = [json.loads(line) for line in out.stdout.splitlines()]  # stdout holds the figures only
    prefix = "rec/movielens-synthetic/melu/"
    expected = {f"{prefix}{m}/{k}" for m in ("ItemMean", "MeLU") for k in METRICS}
    expected.add(f"{prefix}MeLU/mse_minus_best_baseline")
    assert {r["name"] for r in rows} == expected
    for r in rows:
        assert math.isfinite(r["value"]) and math.isfinite(r["ci95"]) and r["ci95"] >= 0, r["name"]
        assert r["test_users"] >= 2 and r["cpu_s"] >= 0
    by_name = {r["name"]: r for r in rows}
    # the same test users for the baseline and the meta-learner, and the paired figure is theirs
    assert len({r["episodes_fingerprint"] for r in rows}) == 1
    base, melu = by_name[f"{prefix}ItemMean/mse"], by_name[f"{prefix}MeLU/mse"]
    assert len(base["per_user"]) == len(melu["per_user"]) == melu["test_users"]
    diff = by_name[f"{prefix}MeLU/mse_minus_best_baseline"]
    assert diff["baseline"] == "ItemMean" and diff["paired"]
    assert diff["value"] == pytest.approx(melu["value"] - base["value"], abs=1e-5)
    assert melu["cpu_s"] > 0 and melu["train_steps"] == 4
    assert [json.loads(line)["name"] for line in results.read_text().splitlines()] == [r["name"] for r in rows]
    assert (official.read_bytes() if official.exists() else None) == before

    # a second table-run reuses the finished run and its evaluation
    again = bench(*run, env=env)
    assert "reusing the finished run" in again.stderr and "keeping the evaluation" in again.stderr
    assert json.loads(again.stdout.splitlines()[-1])["value"] == diff["value"]

    table = bench("table", "--dataset", "movielens-synthetic", "--results", str(results), env=env).stdout
    lines = table.splitlines()
    assert "| method | MAE | RMSE | nDCG@3 | nDCG@5 | nDCG@10 |" in table
    item = next(line for line in lines if line.startswith("| ItemMean |"))
    learned = next(line for line in lines if line.startswith("| MeLU |"))
    assert item.count("±") == 5 and learned.count("±") == 6 and "(vs ItemMean)" in learned
    assert f"{by_name[prefix + 'MeLU/mae']['value']:.3f} ± {by_name[prefix + 'MeLU/mae']['ci95']:.3f}" in learned
    assert "metalearn train --preset melu-movielens-synthetic" in table and "table-run" in table
    assert "not MovieLens results" in table


@pytest.mark.slow
def test_speed_records_users_per_second_for_mixed_and_size_grouped_batches(tmp_path):
    data = write_synthetic_movielens(tmp_path / "data", SyntheticRatings(n_users=150, n_items=120,
                                                                         max_ratings=80), seed=0)
    results = tmp_path / "results.jsonl"
    env = {**os.environ, "METALEARN_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    out = bench("speed", "--dataset", "movielens-synthetic", "--data-root", str(data), "--speed-steps", "2",
                "--warmup", "1", "--eval-users", "4", "--results", str(results), env=env)
    rows = {r["name"]: r for r in map(json.loads, out.stdout.splitlines())}
    prefix = "rec/movielens-synthetic/melu/"
    for n in sorted({1, os.cpu_count() or 1}):
        mixed, grouped = rows[f"{prefix}MeLU/train_users_per_s_{n}thread"], rows[f"{prefix}MeLU/train_users_per_s_grouped_{n}thread"]
        assert mixed["value"] > 0 and grouped["value"] > 0 and grouped["group_sizes"] and not mixed["group_sizes"]
        assert 2 <= grouped["users"] <= 64  # two batches of at most 32 users of one support size
        assert f"{prefix}CNP/eval_users_per_s_{n}thread" in rows
    assert f"{prefix}MeLU/eval_users_per_s_grouped_1thread" not in rows  # evaluation does not batch users
