"""The bad-input corpus (tests/bad_inputs/corpus.py): every case ends in a clear error that names
the fix (from the command: exit 2, no traceback), or, for inputs that must be accepted, in a
correct result. ``benchmarks/reliability.py`` runs the same corpus and records the counts."""

from __future__ import annotations

import subprocess
import sys

import pytest
from bad_inputs.corpus import CASES, case_id, image_run, run_case

DISK_CASES = [c for c in CASES if c.name.startswith(("read-only", "full-disk"))]


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_bad_input_gives_a_clear_error(case, tmp_path):
    ok, detail = run_case(case, tmp_path)
    assert ok, detail


@pytest.mark.parametrize("case", DISK_CASES, ids=case_id)
def test_disk_cases_also_hold_when_simulated(case, tmp_path, monkeypatch):
    """Without a real tmpfs (no mount permission) the corpus simulates the disk by failing writes."""
    monkeypatch.setenv("RELIABILITY_NO_MOUNT", "1")
    ok, detail = run_case(case, tmp_path)
    assert ok, detail


def test_corpus_covers_the_issue():
    names = {c.name for c in CASES}
    required = ["truncated-png", "truncated-jpeg", "zero-byte-image", "empty-class", "class-smaller-than-k+q",
                "non-image-files-ignored", "mixed-modes-and-sizes-converted", "n_way=0", "k_shot=0",
                "n_query=0", "k_shot=-1", "n_way=10**9", "unknown-key", "wrong-type-int",
                "checkpoint-from-another-model", "checkpoint-truncated-tensors", "read-only-run-dir",
                "full-disk-cache", "ArrayDataset NaN", "ArrayDataset +inf", "download-wrong-checksum",
                "archive-absolute-path", "archive-dotdot-path", "archive-symlink", "planted-pickle-backbone"]
    assert not [r for r in required if r not in names]
    assert len({case_id(c) for c in CASES}) == len(CASES)  # ids are unique
    assert sum(c.surface == "cli" for c in CASES) >= 30


def test_real_process_exits_2_without_traceback(tmp_path):
    """The in-process runner is faithful: a real ``python -m metalearn.cli`` process says the same."""
    run = image_run(tmp_path)
    tensors = next((run / "checkpoints").glob("best-*.safetensors"))
    tensors.write_bytes(tensors.read_bytes()[:100])
    env_cmd = [sys.executable, "-m", "metalearn.cli"]
    out = subprocess.run([*env_cmd, "eval", str(run), "--episodes", "2"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr and "not a readable safetensors file" in out.stderr
    out = subprocess.run([*env_cmd, "train", "--preset", "demo", "--set", "train.stepz=1", "--out",
                          str(tmp_path / "r")], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "Traceback" not in out.stderr and "train.steps" in out.stderr
