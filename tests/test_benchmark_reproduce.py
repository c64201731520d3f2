"""The extrapolation of benchmarks/reproduce.py: the power-law fit, its prediction, the check of an
earlier run's prediction against a longer run, and the table built from records alone (run
directories gone)."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def rep():
    spec = importlib.util.spec_from_file_location("reproduce_under_test", REPO / "benchmarks" / "reproduce.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def _row(cell: str, value: float, step: int, steps: int, **extra) -> dict:
    return {"name": f"reproduce.{cell}", "value": value, "unit": "% accuracy", "ci95": 0.1, "paper": 98.8,
            "paper_ci95": None, "source": "s", "difference": value - 98.8, "verdict": "below the paper's CI",
            "checkpoint_step": step, "train_steps": steps, "budget": "b", "train_wall_s": 60.0,
            "train_cpu_s": 60.0 * steps / 1000, "commit": "c", "date": f"d{steps}",
            "train_command": f"metalearn train --set train.steps={steps}", "eval_command": "metalearn eval",
            **extra}


def test_fit_exponent_recovers_a_power_law(rep, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    with (run / "metrics.jsonl").open("w") as f:
        for s in range(500, 8001, 500):
            f.write(json.dumps({"kind": "val", "step": s, "mean": 1.0 - 0.3 * s ** -0.4}) + "\n")
    b, points = rep.fit_exponent(_row("protonet-omniglot-5w1s", 98.0, 8000, 8000), run)
    assert b == pytest.approx(0.4, abs=1e-9)
    assert points == 9  # steps 4000..8000: the second half of training


def test_predict_at_scales_the_test_error(rep):
    row = _row("protonet-omniglot-5w1s", 98.0, 1000, 1000)
    assert rep.predict_at(row, 0.5, 4000) == pytest.approx(100 * (1 - 0.02 / 2))
    assert rep.predict_at(row, 0.5, 1000) == pytest.approx(98.0)


def test_outlook_from_a_recorded_exponent_needs_no_run_directory(rep):
    row = _row("maml-omniglot-5w1s", 95.0, 1000, 1000)
    o = rep.outlook(row, None, 0.5)
    # err 0.05 at 1,000 steps -> the row's paper error 1.2% at 1000 * (0.05 / 0.012) ** 2 steps
    assert o["steps_to_paper"] == round(1000 * (0.05 / 0.012) ** 2)
    assert o["predicted"] == pytest.approx(100 * (1 - 0.05 * 60 ** -0.5), abs=0.01)
    assert rep.outlook(row, None) is None  # neither an exponent nor a run to fit


def test_first_pass_check_reports_held_and_overpredicted(rep):
    old = _row("matching-omniglot-5w1s", 97.0, 10000, 10000, outlook_exponent=0.5)
    expected = 100 * (1 - 0.03 * 4 ** -0.5)  # 98.5 at 40,000 steps
    held = _row("matching-omniglot-5w1s", expected + 0.05, 40000, 42000)
    assert "held" in rep.first_pass_check([old, held], None)
    short = _row("matching-omniglot-5w1s", 97.5, 40000, 42000)
    text = rep.first_pass_check([old, short], None)
    assert f"predicted {expected:.2f}%" in text and "over-predicted by 1.00 points" in text
    assert rep.first_pass_check([held], None) == ""  # nothing earlier to compare with


def test_paper_fraction(rep):
    assert rep.paper_fraction(_row("maml-omniglot-5w1s", 95.0, 1000, 1200)).startswith("2.0% (1,200 of 60,000)")
    assert "states no length" in rep.paper_fraction(_row("protonet-omniglot-5w1s", 98.0, 7500, 8000))


def test_table_from_records_alone(rep, tmp_path):
    results = tmp_path / "results.jsonl"
    old = _row("anil-omniglot-20w1s", 89.0, 600, 600, outlook_exponent=0.55)
    new = _row("anil-omniglot-20w1s", 95.0, 8000, 8200, outlook_exponent=0.3)
    results.write_text("".join(json.dumps(r) + "\n" for r in (old, new)))
    text = rep.table(results, None)
    line = next(x for x in text.splitlines() if x.startswith("| anil-omniglot-20w1s |"))
    assert "**95.00 ± 0.10** %" in line and "13.7% (8,200 of 60,000)" in line
    assert "err ∝ steps^-0.30" in line  # the newest record's own exponent
    predicted = 100 * (1 - 0.11 * (8000 / 600) ** -0.55)
    assert f"predicted {predicted:.2f}%" in line and not math.isnan(predicted)
    assert "| maml-omniglot-5w1s | not run yet |" in text
