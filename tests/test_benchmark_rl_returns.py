"""Smoke test of benchmarks/rl_returns.py: every method trained and evaluated through the command
line on a tiny 2-D navigation setting, records to a tmp file, then the table."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "rl_returns.py"
TINY = ["train.meta_iterations=2", "train.meta_batch=2", "train.trajectories=2", "train.val_tasks=2",
        "eval.test_tasks=3", "eval.trajectories=2", "env.horizon=6", "policy.hidden=[8]"]


def test_run_then_table(tmp_path):
    results, md = tmp_path / "results.jsonl", tmp_path / "RESULTS.md"
    sets = [a for s in TINY for a in ("--set", s)]
    out = subprocess.run([sys.executable, str(SCRIPT), "run", "--runs", str(tmp_path / "runs"), "--results",
                          str(results), "--figures", str(tmp_path / "fig"), *sets],
                         capture_output=True, text=True, cwd=REPO, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = [json.loads(x) for x in results.read_text().splitlines()]
    names = {r["name"] for r in rows}
    assert names == {f"rl/navigation2d/{m}/return@{k}" for m in ("maml", "multitask", "random", "oracle")
                     for k in (0, 1, 3)}
    assert all(r["tasks"] == 3 and r["ci95"] >= 0 and r["unit"] == "average return" for r in rows)
    random = next(r for r in rows if r["name"] == "rl/navigation2d/random/return@0")
    assert random["meta_iterations"] == 1
    assert all(r["iterations_before_this_call"] == 0 and r["train_cpu_s_this_call"] > 0 for r in rows)
    assert (tmp_path / "fig" / "navigation2d_trajectories.png").exists()
    assert all(len(r["per_task"]) == 3 for r in rows)
    # again: the finished runs are reused (evaluated again, not trained) and keep their training time
    out = subprocess.run([sys.executable, str(SCRIPT), "run", "--runs", str(tmp_path / "runs"), "--results",
                          str(results), "--figures", str(tmp_path / "fig"), "--methods", "maml", *sets],
                         capture_output=True, text=True, cwd=REPO, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    again = [json.loads(x) for x in results.read_text().splitlines()][len(rows):]
    first = {r["name"]: r for r in rows}
    assert len(again) == 3 and all(r["train_cpu_s_this_call"] == first[r["name"]]["train_cpu_s_this_call"]
                                   and r["value"] == first[r["name"]]["value"] for r in again)
    md.write_text("# Benchmark results\n")
    out = subprocess.run([sys.executable, str(SCRIPT), "table", "--results", str(results), "--out", str(md)],
                         capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    text = md.read_text()
    assert "| maml |" in text and "| oracle |" in text and "<!-- end rl -->" in text
    assert "train CPU" in text and "only)" not in text
    assert "1 step − before (paired)" in text and "MAML after one step minus each baseline" in text


def test_cpu_column_says_what_a_resumed_or_reused_run_timed():
    sys.path.insert(0, str(SCRIPT.parent))
    import rl_returns

    base = {"train_cpu_s_this_call": 600.0, "meta_iterations": 100}
    assert rl_returns._cpu({**base, "iterations_before_this_call": 0}) == "10 min"
    assert rl_returns._cpu({**base, "iterations_before_this_call": 40}) == "10 min (iterations 41-100 only)"
    assert rl_returns._cpu({**base, "iterations_before_this_call": 100}).startswith("not timed")
    assert rl_returns._cpu(base) == "10 min (last call only)"
    assert rl_returns._cpu({"meta_iterations": 1}) == "not recorded"


def test_readme_table_pairs_maml_with_each_baseline(tmp_path):
    sys.path.insert(0, str(SCRIPT.parent))
    import rl_returns

    results = tmp_path / "results.jsonl"
    base = {"unit": "average return", "ci95": 0.5, "meta_iterations": 10, "meta_batch": 4,
            "train_cpu_s_this_call": 120.0, "iterations_before_this_call": 0}
    lines = []
    for method, shift in (("maml", 0.0), ("multitask", -2.0)):
        for k in rl_returns.STEPS:
            per_task = [-10.0 + shift + float(k), -12.0 + shift + float(k), -11.0 + shift + float(k)]
            lines.append(json.dumps({**base, "name": f"rl/navigation2d/{method}/return@{k}",
                                     "value": sum(per_task) / 3, "per_task": per_task}))
    results.write_text("\n".join(lines) + "\n")
    text = rl_returns.readme_table(results)
    assert "**2-D navigation, 10 iterations × 4 tasks**" in text
    multitask = next(line for line in text.splitlines() if line.startswith("| multi-task"))
    assert "+2.00 ± 0.00" in multitask and "| 2 min |" in multitask  # MAML is 2 above it on every task
    assert "HalfCheetah" not in text  # environments without records are left out
