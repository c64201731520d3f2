"""Kill-and-resume harness: SIGKILL a real ``metalearn train`` process at chosen moments, resume it,
and compare with an uninterrupted run; and SIGKILL a process that does nothing but write
checkpoints, to land kills inside the write itself.

Used by ``tests/test_reliability_crash.py`` (a few kill points, bounded time) and by
``benchmarks/reliability.py`` (more kill points, recorded). Also runnable:
``python tests/bad_inputs/crash.py torture DIR N_KILLS SEED`` (prints one JSON line); the
``writer`` mode is the process it kills.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def train_argv(run_dir: Path, steps: int, every: int, resume: bool = False) -> list[str]:
    """The ``metalearn train`` command of the crash runs: the demo preset (MAML, sinusoid) shrunk
    to ``steps`` steps of 2 tasks, a checkpoint every ``every`` steps, a metrics line every step."""
    sets = {"train.steps": steps, "train.meta_batch": 2, "train.checkpoint_every": every,
            "train.val_every": max(every * 3, 1), "train.log_every": 1, "model.hidden": "[16]",
            "data.val_episodes": 4, "train.device": "cpu", "train.tensorboard": "false"}
    argv = [sys.executable, "-m", "metalearn.cli", "train", "--preset", "demo", "--out", str(run_dir), "--quiet"]
    for k, v in sets.items():
        argv += ["--set", f"{k}={v}"]
    return argv + (["--resume"] if resume else [])


def _env() -> dict:
    env = dict(os.environ, METALEARN_NO_TUNE="1", OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    env.pop("METALEARN_DEBUG", None)
    return env


def _logged_step(metrics: Path) -> int:
    """Last completed step according to metrics.jsonl (one ``train`` line per step)."""
    if not metrics.exists():
        return 0
    step = 0
    for line in metrics.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a torn last line
        if row.get("kind") == "train":
            step = max(step, row["step"])
    return step


def _temp_files(folder: Path) -> list[Path]:
    """Temporary files of a checkpoint write in progress (``.NAME.XXXX.tmp``)."""
    try:
        return [folder / n for n in os.listdir(folder) if n.endswith(".tmp")]
    except FileNotFoundError:
        return []


def _checkpoint_step(ckpt_dir: Path) -> int | None:
    from metalearn.train.checkpoint import load_checkpoint

    if not (ckpt_dir / "last.json").exists():
        return None
    return load_checkpoint(ckpt_dir, "last")["step"]  # raises if a half-written file were picked up


@dataclass
class KillPoint:
    """One SIGKILL: the step it aimed at, the progress when it landed, what the loader then found."""

    target: int
    progress: int
    checkpoint: int | None
    in_checkpoint_write: bool
    lost_steps: int
    ok: bool
    detail: str = ""


@dataclass
class ChainResult:
    kills: list[KillPoint] = field(default_factory=list)
    resumes: int = 0
    finished: bool = False
    equal_to_uninterrupted: bool = False
    detail: str = ""
    seconds: float = 0.0

    @property
    def recovered(self) -> int:
        return sum(k.ok for k in self.kills) if self.finished and self.equal_to_uninterrupted else 0

    def to_dict(self) -> dict:
        return {**asdict(self), "recovered": self.recovered}


def _final_state(run_dir: Path) -> tuple[dict, list[dict]]:
    from metalearn.train.checkpoint import load_checkpoint

    saved = load_checkpoint(run_dir / "checkpoints", "last")
    lines = [{k: v for k, v in json.loads(x).items() if k != "time_s"}  # wall-clock: differs
             for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return saved, lines


def _same(a, b) -> bool:
    import torch

    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def run_reference(workdir: Path, steps: int, every: int) -> Path:
    """The uninterrupted run (once per setting; reused)."""
    ref = workdir / f"reference-{steps}-{every}"
    if not (ref / "checkpoints" / "last.json").exists():
        subprocess.run(train_argv(ref, steps, every), env=_env(), check=True, capture_output=True, timeout=300)
    return ref


def kill_chain(workdir: Path, targets: list[int], steps: int = 240, every: int = 20,
               seed: int = 0, timeout: float = 120.0) -> ChainResult:
    """Train, SIGKILL when ``metrics.jsonl`` reaches each target step (plus a random 0-3 ms), resume,
    ... then finish and compare with the uninterrupted run.

    A target that is a multiple of ``every`` is killed *inside* that step's checkpoint write:
    the harness polls the checkpoint folder and kills as soon as a temporary file of the write
    appears (``in_checkpoint_write`` records whether one was left behind).
    """
    rng = random.Random(seed)
    start = time.perf_counter()
    ref = run_reference(workdir, steps, every)
    run = workdir / f"chain-{seed}"
    result = ChainResult()
    env = _env()
    resume = False
    for target in sorted(targets):
        proc = subprocess.Popen(train_argv(run, steps, every, resume), env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        deadline = time.perf_counter() + timeout
        extra = rng.random() * 0.003
        on_write = target % every == 0  # kill inside the checkpoint write of this step
        ckpt_dir = run / "checkpoints"
        stale = set(_temp_files(ckpt_dir))  # left by an earlier kill (the loader never reads them)
        while proc.poll() is None and time.perf_counter() < deadline:
            if on_write:
                if _logged_step(run / "metrics.jsonl") >= target - 1 and set(_temp_files(ckpt_dir)) - stale:
                    break
                if _logged_step(run / "metrics.jsonl") > target:  # the write was too quick to see
                    break
            elif _logged_step(run / "metrics.jsonl") >= target:
                time.sleep(extra)
                break
            time.sleep(0.0002)
        if proc.poll() is not None:
            result.detail = f"the run ended before step {target}: {proc.stderr.read().decode()[-500:]}"
            return result
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
        progress = _logged_step(run / "metrics.jsonl")
        temps = set(_temp_files(ckpt_dir)) - stale
        try:
            step = _checkpoint_step(ckpt_dir)
            ok, detail = True, ""
        except Exception as e:  # the loader picked up something half-written
            step, ok, detail = None, False, f"{type(e).__name__}: {e}"
        lost = progress - (step or 0)
        in_write = bool(temps)
        if lost > every:
            ok, detail = False, f"lost {lost} steps (> one interval of {every})"
        result.kills.append(KillPoint(target, progress, step, in_write, lost, ok, detail))
        resume = step is not None
        if not resume:  # killed before the first checkpoint: start again from scratch
            import shutil

            shutil.rmtree(run)
    done = subprocess.run(train_argv(run, steps, every, resume), env=env, capture_output=True, text=True,
                          timeout=timeout)
    result.resumes = sum(k.checkpoint is not None for k in result.kills)
    if done.returncode != 0:
        result.detail = f"the final resume failed: {done.stderr[-500:]}"
        return result
    result.finished = True
    (a, la), (b, lb) = _final_state(ref), _final_state(run)
    same_state = a["step"] == b["step"] == steps and _same(a["state"], b["state"])
    same_log = la == lb
    result.equal_to_uninterrupted = same_state and same_log
    if not result.equal_to_uninterrupted:
        result.detail = f"differs from the uninterrupted run: state equal {same_state}, metrics equal {same_log}"
    result.seconds = time.perf_counter() - start
    return result


def default_targets(rng: random.Random, n: int, steps: int, every: int) -> list[int]:
    """``n`` distinct kill steps in ``[1, steps - 1]``: half on checkpoint steps (kills during the
    write), half anywhere."""
    on_ckpt = list(range(every, steps, every))
    anywhere = [s for s in range(1, steps) if s % every]
    picks = rng.sample(on_ckpt, min(len(on_ckpt), n // 2)) + rng.sample(anywhere, n - min(len(on_ckpt), n // 2))
    return sorted(set(picks))


# ----------------------------------------------------------------- checkpoint-writer torture

def _writer_child(folder: Path, size: int) -> None:
    """Write checkpoints 1, 2, 3, ... forever; checkpoint ``s`` holds tensors filled with ``s``."""
    import torch

    from metalearn.train.checkpoint import load_checkpoint, save_checkpoint

    step = load_checkpoint(folder, "last")["step"] if (folder / "last.json").exists() else 0
    while True:
        step += 1
        state = {"model": {"w": torch.full((size,), float(step)), "b": torch.full((7,), float(step))},
                 "optimizer": {"state": {0: {"step": torch.tensor(float(step))}}, "param_groups": []}}
        save_checkpoint(folder, "last", state, step=step, config={"step": step})


def torture(workdir: Path, kills: int, seed: int = 0, size: int = 2_000_000) -> dict:
    """SIGKILL a checkpoint-writing process ``kills`` times at random moments (most of its time is
    spent inside :func:`save_checkpoint`); after each kill the loader must return a complete
    checkpoint whose tensors all carry its step, and the next writer continues from there."""
    from metalearn.train.checkpoint import load_checkpoint

    rng = random.Random(seed)
    folder = workdir / "torture"
    results = {"kills": 0, "consistent": 0, "mid_write": 0, "steps_seen": [], "errors": []}
    for _ in range(kills):
        proc = subprocess.Popen([sys.executable, __file__, "writer", str(folder), str(size)], env=_env(),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if proc.stdout.readline().strip() != b"ready":  # imports done: from now on it only writes
            results["errors"].append(f"writer failed: {proc.stderr.read().decode()[-300:]}")
            break
        if rng.random() < 0.5:  # at a random moment
            time.sleep(0.02 + rng.random() * 0.3)
        else:  # inside a write: as soon as a temporary file appears (after a random number of saves)
            time.sleep(rng.random() * 0.2)
            deadline = time.perf_counter() + 5
            while not _temp_files(folder) and time.perf_counter() < deadline:
                time.sleep(0.0002)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()
        results["kills"] += 1
        results["mid_write"] += bool(_temp_files(folder))
        try:
            saved = load_checkpoint(folder, "last")
            s = saved["step"]
            w, b = saved["state"]["model"]["w"], saved["state"]["model"]["b"]
            good = bool((w == s).all() and (b == s).all() and saved["config"] == {"step": s}
                        and float(saved["state"]["optimizer"]["state"][0]["step"]) == s)
            if results["steps_seen"] and s < results["steps_seen"][-1]:
                good = False
                results["errors"].append(f"checkpoint went back from {results['steps_seen'][-1]} to {s}")
            results["consistent"] += good
            results["steps_seen"].append(s)
            if not good:
                results["errors"].append(f"checkpoint {s} holds tensors of another step")
        except FileNotFoundError:
            results["errors"].append("no checkpoint at all")
        except Exception as e:
            if (folder / "last.json").exists():
                results["errors"].append(f"{type(e).__name__}: {e}")
            else:  # killed before the very first checkpoint was complete: nothing to load is right
                results["consistent"] += 1
        for tmp in _temp_files(folder):  # leftovers of the killed write (never loaded)
            tmp.unlink()
    return results


if __name__ == "__main__":
    if sys.argv[1] == "writer":
        import torch  # noqa: F401

        import metalearn.train.checkpoint  # noqa: F401

        print("ready", flush=True)
        _writer_child(Path(sys.argv[2]), int(sys.argv[3]))
    elif sys.argv[1] == "torture":
        print(json.dumps(torture(Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))))
