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


def _write_curve(run: Path, accuracy, steps=range(500, 8001, 500)) -> None:
    run.mkdir(parents=True, exist_ok=True)
    with (run / "metrics.jsonl").open("w") as f:
        for s in steps:
            f.write(json.dumps({"kind": "val", "step": s, "mean": accuracy(s), "ci95": 0.004}) + "\n")


def test_fit_exponent_recovers_a_power_law(rep, tmp_path):
    _write_curve(tmp_path / "run", lambda s: 1.0 - 0.3 * s ** -0.4)
    law = rep.fit_exponent(_row("protonet-omniglot-5w1s", 98.0, 8000, 8000), tmp_path / "run")
    assert law.exponent == pytest.approx(0.4, abs=1e-9) and law.se == pytest.approx(0.0, abs=1e-9)
    assert law.points == 13  # steps 2000..8000: the last three quarters of training
    assert law.err(1000) == pytest.approx(0.3 * 1000 ** -0.4)
    assert rep.fit_exponent(_row("protonet-omniglot-5w1s", 98.0, 8000, 8000), tmp_path / "run",
                            fit_from=0.5).points == 9  # the first pass's window
    # truncated as if training had stopped at 4,000 steps: its last three quarters, 1000..4000
    assert rep.fit_exponent(_row("protonet-omniglot-5w1s", 98.0, 8000, 8000), tmp_path / "run", until=4000).points == 7


def test_standard_error_of_the_exponent_grows_with_noise(rep, tmp_path):
    wobble = lambda s: 1.0 - 0.3 * s ** -0.4 * (1.15 if (s // 500) % 2 else 0.87)  # noqa: E731
    _write_curve(tmp_path / "run", wobble)
    law = rep.fit_exponent(_row("protonet-omniglot-5w1s", 98.0, 8000, 8000), tmp_path / "run")
    narrow = rep.fit_exponent(_row("protonet-omniglot-5w1s", 98.0, 8000, 8000), tmp_path / "run", fit_from=0.5)
    assert 0.0 < law.se < narrow.se  # a wider window pins the exponent down better
    assert abs(law.exponent - 0.4) < Z95 * law.se + 1e-9


Z95 = 1.96


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


def test_first_pass_check_uses_the_exponents_interval(rep):
    old = _row("matching-omniglot-5w1s", 97.0, 10000, 10000, outlook_exponent=0.5, outlook_exponent_se=0.1)
    lo, hi = (100 * (1 - 0.03 * 4 ** -e) for e in (0.5 - 0.196, 0.5 + 0.196))
    inside = _row("matching-omniglot-5w1s", lo + 0.05, 40000, 42000)  # 1.2 points under the centre
    text = rep.first_pass_check([old, inside], None)
    assert "held" in text and f"({lo:.2f}–{hi:.2f})" in text and "0.50 ± 0.20" in text
    below = _row("matching-omniglot-5w1s", lo - 0.5, 40000, 42000)
    assert "over-predicted" in rep.first_pass_check([old, below], None)
    assert rep.predict_range(old, 0.5, None, 40000) is None
    assert rep.predict_range(old, 0.1, 0.2, 40000)[0] == pytest.approx(97.0)  # the lower end floored at b = 0


def test_backtest_on_a_power_law_curve_holds_and_records(rep, tmp_path):
    _write_curve(tmp_path / "matching-omniglot-5w1s-42k", lambda s: 1.0 - 0.3 * s ** -0.4,
                 steps=range(500, 42001, 500))
    results = tmp_path / "results.jsonl"
    rows = rep.backtest(tmp_path, results)
    assert {r["method"] for r in rows} == {"second-half", "current"} and len(rows) == 4
    for r in rows:
        assert r["held"] and abs(r["error"]) < 0.01
    assert len(results.read_text().splitlines()) == 4
    # a saturating curve (a floor of 1% error) is over-predicted by the power law fitted early
    _write_curve(tmp_path / "matching-omniglot-5w1s-42k", lambda s: 1.0 - 0.01 - 0.3 * s ** -0.4,
                 steps=range(500, 42001, 500))
    late = [r for r in rep.backtest(tmp_path, None, record_it=False) if r["cut_step"] == 10500]
    assert all(r["error"] > 0.05 for r in late)


def test_paper_fraction(rep):
    assert rep.paper_fraction(_row("maml-omniglot-5w1s", 95.0, 1000, 1200)).startswith("2.0% (1,200 of 60,000)")
    assert "states no length" in rep.paper_fraction(_row("protonet-omniglot-5w1s", 98.0, 7500, 8000))


def test_table_from_records_alone(rep, tmp_path):
    results = tmp_path / "results.jsonl"
    old = _row("anil-omniglot-20w1s", 89.0, 600, 600, outlook_exponent=0.55)
    new = _row("anil-omniglot-20w1s", 95.0, 8000, 8200, outlook_exponent=0.3, outlook_exponent_se=0.05)
    results.write_text("".join(json.dumps(r) + "\n" for r in (old, new)))
    text = rep.table(results, None)
    line = next(x for x in text.splitlines() if x.startswith("| anil-omniglot-20w1s |"))
    assert "**95.00 ± 0.10** %" in line and "13.7% (8,200 of 60,000)" in line
    assert "err ∝ steps^-0.30 ± 0.10" in line  # the newest record's own exponent and its interval
    assert "over the exponent's 95% interval" in line
    predicted = 100 * (1 - 0.11 * (8000 / 600) ** -0.55)
    assert f"predicted {predicted:.2f}%" in line and not math.isnan(predicted)
    assert "| maml-omniglot-5w1s | not run yet |" in text
