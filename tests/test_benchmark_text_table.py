"""``benchmarks/text_fewshot.py table``: a 5-fold average that no single run recorded (the folds
were trained in different sessions) is composed from the latest per-fold records, with the CI of
independent folds, and a run's own 5-fold record is kept as it is."""

from __future__ import annotations

import importlib
import json
import math
import sys
from pathlib import Path
from types import SimpleNamespace

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def test_table_composes_the_fold_mean_from_per_fold_records(tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(BENCH))
    record = importlib.import_module("_record")
    text = importlib.import_module("text_fewshot")
    results = tmp_path / "results.jsonl"
    rows = [{"name": f"text_hwu64_fold{f}_5w1s_anil_accuracy", "value": 50.0 + f, "ci95": 1.0 + f / 10, "fold": f,
             "unit": "%"}
            for f in range(1, 6)]
    rows.append({"name": "text_hwu64_5w1s_anil_accuracy_fold_mean", "value": 99.0, "ci95": 9.0, "folds": [2, 3],
                 "unit": "%"})
    rows += [{"name": f"text_hwu64_fold{f}_5w1s_tfidf-nc_accuracy", "value": 60.0, "ci95": 1.0, "fold": f, "unit": "%"}
             for f in range(1, 6)]
    rows.append({"name": "text_hwu64_5w1s_tfidf-nc_accuracy_fold_mean", "value": 61.5, "ci95": 0.5,
                 "folds": [1, 2, 3, 4, 5], "per_fold": [61.5] * 5, "unit": "%"})
    results.write_text("".join(json.dumps(r) + "\n" for r in rows))
    monkeypatch.setattr(record, "RESULTS", results)
    text.table(SimpleNamespace())
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("| hwu64 | 1 |"))
    ci = math.sqrt(sum((1.0 + f / 10) ** 2 for f in range(1, 6))) / 5
    assert f"| {53.0:.2f} ± {ci:.2f} |" in line and "(fold" not in line  # composed over 5 folds
    assert "61.50 ± 0.50" in line  # a recorded 5-fold average wins over composing
    assert "51.0, 52.0, 53.0, 54.0, 55.0" in line
    sys.modules.pop("text_fewshot", None)
