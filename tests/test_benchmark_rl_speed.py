"""Smoke test of benchmarks/rl_speed.py at tiny settings, into a temporary results file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(tmp_path, *extra: str) -> tuple[dict, subprocess.CompletedProcess, list]:
    results = tmp_path / "results.jsonl"
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "rl_speed.py"), "--tasks", "2", "--per-task",
         "2", "--horizon", "5", "--envs", "4", "--steps", "5", "--cheetah-envs", "1",
         "--cheetah-steps", "3", "--ml1-envs", "1", "2", "--ml1-steps", "3", "--iters", "1",
         "--results", str(results), *extra],
        capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    return {r["name"]: r for r in rows}, done, rows


def test_rl_speed_benchmark_writes_every_figure(tmp_path):
    by_name, done, rows = _run(tmp_path)
    peer = {"rl_l2l_maml_trpo"} if "rl_l2l_maml_trpo" in by_name else {"rl_maml_trpo_nav2d_vs_l2l"}
    assert set(by_name) == {"rl_nav2d_env_steps", "rl_nav2d_rollout_steps",
                            "rl_halfcheetah_env_steps", "rl_ml1_reach_env_steps_x1",
                            "rl_ml1_reach_env_steps_x2", "rl_maml_trpo_nav2d_s_per_iter"} | peer
    for name in ("rl_nav2d_env_steps", "rl_nav2d_rollout_steps"):
        assert by_name[name]["value"] > 0 and by_name[name]["unit"] == "steps/s"
    cheetah = by_name["rl_halfcheetah_env_steps"]
    assert cheetah.get("value", 0) > 0 or "mujoco" in cheetah["skipped"]
    for n in (1, 2):
        ml1 = by_name[f"rl_ml1_reach_env_steps_x{n}"]
        assert (ml1.get("value", 0) > 0 and ml1["envs"] == n) or "metaworld" in ml1["skipped"]
    trpo = by_name["rl_maml_trpo_nav2d_s_per_iter"]
    assert trpo["value"] > 0 and trpo["ratio"] > 0 and trpo["tasks"] == 2
    assert "commit" in trpo and "machine" in trpo and "date" in trpo
    if "rl_l2l_maml_trpo" in by_name:  # no peers venv with the RL pieces (CI): what blocked it
        assert by_name["rl_l2l_maml_trpo"]["skipped"]
    else:  # learn2learn's example ran at the same settings (Particles2D's horizon of 100)
        vs = by_name["rl_maml_trpo_nav2d_vs_l2l"]
        assert vs["value"] > 0 and vs["baseline_value"] > 0 and vs["horizon"] == 100
        assert vs["ratio"] == round(vs["baseline_value"] / vs["value"], 4)
    stdout = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert [r["name"] for r in stdout] == [r["name"] for r in rows]


def test_a_missing_peer_is_recorded_with_what_blocked_it(tmp_path):
    by_name, _, _ = _run(tmp_path, "--peers-python", str(tmp_path / "no-venv" / "python"))
    assert "no peers virtualenv" in by_name["rl_l2l_maml_trpo"]["skipped"]
    assert "rl_maml_trpo_nav2d_vs_l2l" not in by_name
