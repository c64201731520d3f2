"""Crash safety: SIGKILL a real training run (including inside a checkpoint write), resume, and
get exactly the uninterrupted run; a half-written checkpoint is never picked up by the loader.

The kill-and-resume harness is tests/bad_inputs/crash.py (``benchmarks/reliability.py`` runs it
with more kill points and records the counts).
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
import torch
from bad_inputs.crash import default_targets, kill_chain, torture

from metalearn.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint


def tagged_state(step: int) -> dict:
    return {"model": {"w": torch.full((64,), float(step)), "b": torch.full((3,), -float(step))},
            "optimizer": {"state": {0: {"exp_avg": torch.full((64,), float(step))}}, "param_groups": []}}


def assert_is_checkpoint(folder: Path, step: int) -> None:
    saved = load_checkpoint(folder, "last")
    assert saved["step"] == step
    assert torch.equal(saved["state"]["model"]["w"], torch.full((64,), float(step)))
    assert torch.equal(saved["state"]["optimizer"]["state"][0]["exp_avg"], torch.full((64,), float(step)))
    assert saved["config"] == {"at": step}


class Crash(BaseException):
    """Stands for SIGKILL at one point of a checkpoint write (nothing after it runs)."""


def crash_at(monkeypatch, n: int) -> list[str]:
    """Make the n-th file-system operation of a save (write, fsync, rename, delete) crash."""
    calls: list[str] = []
    real = {"replace": os.replace, "fsync": os.fsync, "unlink": Path.unlink, "open": open}

    def counted(name, fn):
        def wrapper(*a, **k):
            calls.append(name)
            if len(calls) == n:
                raise Crash(name)
            return fn(*a, **k)
        return wrapper

    monkeypatch.setattr(os, "replace", counted("replace", real["replace"]))
    monkeypatch.setattr(os, "fsync", counted("fsync", real["fsync"]))
    monkeypatch.setattr(Path, "unlink", counted("unlink", real["unlink"]))
    return calls


def test_a_crash_at_any_point_of_a_checkpoint_write_leaves_a_complete_checkpoint(tmp_path, monkeypatch):
    """Crash before each file-system operation of ``save_checkpoint`` in turn: the loader returns
    either the previous checkpoint or the new one, complete, never a mix or a torn file."""
    n = 1
    outcomes = set()
    while True:
        folder = tmp_path / f"c{n}"
        save_checkpoint(folder, "last", tagged_state(1), step=1, config={"at": 1})
        with monkeypatch.context() as m:
            calls = crash_at(m, n)
            try:
                save_checkpoint(folder, "last", tagged_state(2), step=2, config={"at": 2})
                crashed = False
            except Crash:
                crashed = True
        step = load_checkpoint(folder, "last")["step"]
        assert_is_checkpoint(folder, step)
        outcomes.add((calls[-1] if crashed else "none", step))
        # the next save after the crash works and cleans up
        save_checkpoint(folder, "last", tagged_state(3), step=3, config={"at": 3})
        assert_is_checkpoint(folder, 3)
        assert [p.name for p in folder.glob("last-*.safetensors")] == ["last-00000003.safetensors"]
        assert not list(folder.glob("*.tmp"))  # a killed write's temporary file is cleaned up
        if not crashed:
            break
        n += 1
    assert n >= 5  # tensors write+fsync+rename, JSON write+fsync+rename, old-file delete were all hit
    assert ("replace", 1) in outcomes and ("none", 2) in outcomes


@pytest.mark.parametrize("damage", ["truncate-tensors", "truncate-json", "swap-tensors", "orphan-tensors"])
def test_a_torn_or_mixed_checkpoint_is_refused_or_ignored(tmp_path, damage):
    """What a non-atomic file system could leave behind: the loader refuses it with a clear
    error (or, for an orphan tensors file of an unfinished save, ignores it)."""
    folder = tmp_path / "ckpt"
    save_checkpoint(folder, "last", tagged_state(1), step=1, config={"at": 1})
    tensors = folder / "last-00000001.safetensors"
    if damage == "truncate-tensors":
        tensors.write_bytes(tensors.read_bytes()[: tensors.stat().st_size - 9])
    elif damage == "truncate-json":
        text = (folder / "last.json").read_text()
        (folder / "last.json").write_text(text[: len(text) * 2 // 3])
    elif damage == "swap-tensors":  # same name, from another save: caught by the save id
        other = tmp_path / "other"
        save_checkpoint(other, "last", tagged_state(1), step=1, config={"at": 1})
        tensors.write_bytes((other / "last-00000001.safetensors").read_bytes())
    else:  # a later save wrote its tensors, then died before its JSON
        save_checkpoint(tmp_path / "later", "last", tagged_state(2), step=2, config={"at": 2})
        (folder / "last-00000002.safetensors").write_bytes(
            (tmp_path / "later" / "last-00000002.safetensors").read_bytes())
        assert_is_checkpoint(folder, 1)
        return
    with pytest.raises(CheckpointError, match="damaged|incomplete|does not belong"):
        load_checkpoint(folder, "last")


def test_sigkill_during_checkpoint_writes_never_leaves_a_half_checkpoint(tmp_path):
    """A process that only writes checkpoints (8 MB each) is SIGKILLed 4 times, twice as soon as a
    write's temporary file appears: each time the loader finds a complete checkpoint."""
    result = torture(tmp_path, kills=4, seed=0, size=2_000_000)
    assert result["errors"] == [] and result["consistent"] == result["kills"] == 4
    assert result["steps_seen"] == sorted(result["steps_seen"])  # never goes back


@pytest.mark.slow
def test_sigkill_training_at_several_moments_resumes_to_the_uninterrupted_run(tmp_path):
    """SIGKILL ``metalearn train`` 3 times (once mid-interval, twice inside a checkpoint write),
    resume each time: the final weights, optimizer state and every logged metric equal the
    uninterrupted run's, and no kill loses more than one checkpoint interval."""
    steps, every = 120, 20
    targets = sorted(set(default_targets(random.Random(7), 3, steps, every)))
    assert any(t % every == 0 for t in targets) and any(t % every for t in targets)
    result = kill_chain(tmp_path, targets, steps=steps, every=every, seed=7, timeout=90)
    assert result.finished and result.equal_to_uninterrupted, result.detail
    assert all(k.ok for k in result.kills), result.kills
    assert all(0 <= k.lost_steps <= every for k in result.kills)
    assert result.recovered == len(targets)
