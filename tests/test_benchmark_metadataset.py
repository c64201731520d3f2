"""Smoke test of benchmarks/metadataset.py end to end with tiny settings (``--steps 3
--episodes 4``): every method on a synthetic tree in Omniglot's place, the adapters around one
backbone, speed, multi-source on real Omniglot (skipped with the reason when it is absent), then
``table`` into a copy of RESULTS.md.

Results go to a temporary ``--results`` file, never to benchmarks/results.jsonl."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from metalearn.data.synthetic_images import write_synthetic_image_tree

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "metadataset.py"
METHODS = ("protonet", "proto-maml", "finetune", "baseline-pp", "tsa")


def bench(*argv: str, env: dict) -> list[dict]:
    out = subprocess.run([sys.executable, str(SCRIPT), *argv], capture_output=True, text=True, env=env, cwd=REPO,
                         timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    return [json.loads(line) for line in out.stdout.splitlines()]  # stdout holds the figures only


@pytest.fixture
def setting(tmp_path):
    tree = write_synthetic_image_tree(tmp_path / "tree", n_groups=6, classes_per_group=6, images_per_class=12)
    env = {**os.environ, "METALEARN_CACHE": os.environ.get("METALEARN_CACHE", str(tmp_path / "cache")),
           "PYTHONPATH": str(REPO)}
    common = ["--runs", str(tmp_path / "runs"), "--tree", str(tree), "--steps", "3", "--episodes", "4",
              "--set", "data.val_episodes=4", "--results", str(tmp_path / "results.jsonl")]
    return env, common, tmp_path


def check_accuracy(row: dict) -> None:
    assert row["unit"] == "accuracy" and 0 <= row["value"] <= 1 and math.isfinite(row["ci95"]), row
    assert row["n_episodes"] == 4 and len(row["episodes_fingerprint"]) == 64


@pytest.mark.slow
def test_every_method_adapters_speed_and_table_on_the_synthetic_tree(setting):
    env, common, tmp = setting
    official = REPO / "benchmarks" / "results.jsonl"
    before = official.read_bytes() if official.exists() else None
    rows = bench("omniglot", *METHODS, "--tree-as-omniglot", *common, env=env)
    assert [r["name"] for r in rows] == [f"md/synthetic-tree/{m}/accuracy" for m in METHODS]
    for r in rows:
        check_accuracy(r)
        assert r["checkpoint_step"] <= 3 and r["train_cpu_s"] > 0 and r["eval_cpu_s"] > 0 and r["train_wall_s"] > 0
        assert r["train_command"].startswith("metalearn train --preset ") and "train.steps=3" in r["train_command"]
        assert r["eval_command"].endswith("--episodes 4 --quiet") and "leaderboard" in r["conditions"]
    assert len({r["episodes_fingerprint"] for r in rows}) == 1  # the same test episodes for every method
    by = {r["name"].split("/")[2]: r for r in rows}
    assert by["protonet"]["baseline_value"] == pytest.approx(0.7956) and by["tsa"]["baseline_value"] == 0.9496
    assert "baseline_value" not in by["finetune"] and "algorithm.finetune_steps=75" in by["finetune"]["train_command"]

    adapted = bench("adapters", "--tree-as-omniglot", *common, env=env)
    assert [r["name"] for r in adapted] == [f"md/synthetic-tree/adapters/{m}/accuracy" for m in ("head", "all", "tsa")]
    for r in adapted:
        check_accuracy(r)
        assert r["episodes_fingerprint"] == by["finetune"]["episodes_fingerprint"] and r["eval_cpu_s"] > 0
    # head-only adaptation of the finetune run's backbone is exactly what `metalearn eval` scored
    assert adapted[0]["value"] == pytest.approx(by["finetune"]["value"], abs=1e-6)

    speed = bench("speed", "--tree-as-omniglot", *common, "--speed-steps", "3", env=env)
    assert [r["name"] for r in speed] == [f"md/speed/synthetic-tree/{k}" for k in
                                          ("plans_per_s", "episodes_per_s", "sampling_share_of_step")]
    assert speed[0]["value"] > 0 and speed[1]["value"] > 0 and 0 < speed[2]["value"] < 1

    recorded = [json.loads(line)["name"] for line in (tmp / "results.jsonl").read_text().splitlines()]
    assert recorded == [r["name"] for r in rows + adapted + speed]
    assert (official.read_bytes() if official.exists() else None) == before

    md = tmp / "RESULTS.md"
    md.write_text("# Benchmark results\n\n<!-- begin latest-figures -->\nkept\n<!-- end latest-figures -->\n")
    for _ in range(2):  # the block is replaced, not appended twice
        bench("table", "--results", str(tmp / "results.jsonl"), "--results-md", str(md), env=env)
    text = md.read_text()
    assert text.count("<!-- begin metadataset -->") == 1 and "kept" in text
    assert text.index("<!-- end metadataset -->") < text.index("<!-- begin latest-figures -->")
    assert f"| ProtoNet | {100 * by['protonet']['value']:.2f} ± {100 * by['protonet']['ci95']:.2f} | 4 | 79.56" in text
    assert "| tsa |" in text and "md/speed/synthetic-tree/sampling_share_of_step" in text
    assert "ResNet-18" in text and by["tsa"]["train_command"] in text


@pytest.mark.slow
def test_multi_source_records_each_source_of_each_training(setting, omniglot_root):
    env, common, tmp = setting
    rows = bench("multi-source", *common, "--data-root", str(omniglot_root), env=env)
    both = "omniglot+synthetic-tree"
    assert sorted(r["name"] for r in rows) == sorted([
        "md/multi/omniglot/omniglot/accuracy", "md/multi/synthetic-tree/synthetic-tree/accuracy",
        f"md/multi/{both}/omniglot/accuracy", f"md/multi/{both}/synthetic-tree/accuracy"])
    by = {r["name"]: r for r in rows}
    for r in rows:
        check_accuracy(r)
        assert r["train_cpu_s"] > 0 and "train.steps=3" in r["train_command"]
    # trained together or alone, each source is tested on the same episodes
    assert by[f"md/multi/{both}/omniglot/accuracy"]["episodes_fingerprint"] == \
        by["md/multi/omniglot/omniglot/accuracy"]["episodes_fingerprint"]
    assert by[f"md/multi/{both}/synthetic-tree/accuracy"]["episodes_fingerprint"] == \
        by["md/multi/synthetic-tree/synthetic-tree/accuracy"]["episodes_fingerprint"]
    assert "data.sources=" in by[f"md/multi/{both}/omniglot/accuracy"]["train_command"]
