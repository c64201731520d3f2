"""Run logging: metrics as JSON lines (always), TensorBoard (when installed), the learning curve;
and which files of a run directory are the run's own (:func:`run_files`)."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from pathlib import Path

#: What a run writes at the top of its directory (``eval_*.json``: ``metalearn eval``), and the
#: two folders it owns. Nothing else there is ever deleted by ``--overwrite``.
RUN_FILES = ("config.json", "metrics.jsonl", "learning_curve.png", "eval_*.json")
RUN_FOLDERS = {"checkpoints": ("last.json", "best.json", "last-*.safetensors", "best-*.safetensors",
                               ".last*.tmp", ".best*.tmp"),
               "tensorboard": ("events.out.tfevents.*",)}


class RunLogger:
    """Appends one JSON object per event to ``RUN_DIR/metrics.jsonl``.

    Each line has ``step`` (completed meta-training steps), ``kind`` (``"train"`` or ``"val"``)
    and float metrics. Only rank 0 should create one.

    Args:
        run_dir: The run directory.
        resume_step: When resuming, lines with ``step`` above it (written after the checkpoint
            the run continues from) are dropped, so the file reads as one uninterrupted run.
        tensorboard: Also write TensorBoard scalars under ``RUN_DIR/tensorboard`` if the
            ``tensorboard`` package is installed.
        clock: Seconds since the run started, written as ``time_s`` in every line (not sent
            to TensorBoard, whose events carry their own wall time); ``None``: no ``time_s``.
    """

    def __init__(self, run_dir: str | os.PathLike, resume_step: int | None = None,
                 tensorboard: bool = False, clock: Callable[[], float] | None = None):
        self.path, self.clock = Path(run_dir) / "metrics.jsonl", clock
        if resume_step is None:
            self.path.write_text("")
        elif self.path.exists():
            keep = [line for line in read_metrics(self.path) if line["step"] <= resume_step]
            self.path.write_text("".join(json.dumps(x) + "\n" for x in keep))
        self._file = open(self.path, "a")
        self._tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # optional: `pip install metalearn[tensorboard]`
                SummaryWriter = None
            if SummaryWriter is not None:
                self._tb = SummaryWriter(str(Path(run_dir) / "tensorboard"), purge_step=resume_step)

    def log(self, step: int, kind: str, metrics: dict[str, float]) -> None:
        """Write one line and flush it (a crash loses nothing already logged)."""
        clean = {k: (float(v) if isinstance(v, (int, float)) else v) for k, v in metrics.items()}
        line = {"step": step, "kind": kind, **clean}
        if self.clock is not None:
            line["time_s"] = round(self.clock(), 3)
        self._file.write(json.dumps(line) + "\n")
        self._file.flush()
        if self._tb is not None:
            for k, v in clean.items():
                if isinstance(v, float) and math.isfinite(v):
                    self._tb.add_scalar(f"{kind}/{k}", v, step)

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.close()


def read_metrics(path: str | os.PathLike) -> list[dict]:
    """The lines of a ``metrics.jsonl`` file as dicts (a torn last line is ignored)."""
    out = []
    for line in Path(path).read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def run_files(run_dir: str | os.PathLike) -> list[Path]:
    """The files in ``run_dir`` that a run wrote (:data:`RUN_FILES`, and in :data:`RUN_FOLDERS`
    those of their patterns), the ones ``metalearn train --overwrite`` deletes; ``[]`` if none."""
    run_dir = Path(run_dir)
    found = [p for pattern in RUN_FILES for p in sorted(run_dir.glob(pattern)) if p.is_file()]
    for folder, patterns in RUN_FOLDERS.items():
        found += [p for pattern in patterns for p in sorted((run_dir / folder).glob(pattern))
                  if p.is_file()]
    return found


def is_run_dir(run_dir: str | os.PathLike) -> bool:
    """Whether ``run_dir`` holds a metalearn run: its ``config.json`` or ``checkpoints/last.json``."""
    run_dir = Path(run_dir)
    return (run_dir / "config.json").is_file() or (run_dir / "checkpoints" / "last.json").is_file()


def remove_run_files(run_dir: str | os.PathLike, keep: tuple[str, ...] = ()) -> list[Path]:
    """Delete what a run wrote in ``run_dir`` (:func:`run_files`) and nothing else; its folders
    (``checkpoints/``, ``tensorboard/``) go only when nothing else is left in them.

    Args:
        run_dir: The run directory.
        keep: Names at its top to leave (``--overwrite`` keeps ``config.json``, which the new
            run rewrites at once, so the folder stays a run directory in between).

    Returns:
        The deleted files.
    """
    run_dir = Path(run_dir)
    removed = [p for p in run_files(run_dir) if p.relative_to(run_dir).as_posix() not in keep]
    for p in removed:
        p.unlink(missing_ok=True)
    for folder in RUN_FOLDERS:
        path = run_dir / folder
        if path.is_dir() and not any(path.iterdir()):
            path.rmdir()
    return removed


def plot_learning_curve(run_dir: str | os.PathLike, title: str = "") -> Path:
    """Draw ``RUN_DIR/learning_curve.png``: training loss and the validation metric against steps.

    Returns:
        Path of the PNG.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    lines = read_metrics(run_dir / "metrics.jsonl")
    train = [x for x in lines if x["kind"] == "train" and "loss" in x]
    val = [x for x in lines if x["kind"] == "val"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    steps, losses = [x["step"] for x in train], [x["loss"] for x in train]
    axes[0].plot(steps, losses, lw=0.8, alpha=0.35, label="logged")
    if len(losses) >= 10:  # a moving average over a tenth of the points shows the trend
        w = max(len(losses) // 10, 2)
        smooth = [sum(losses[max(0, i - w + 1):i + 1]) / len(losses[max(0, i - w + 1):i + 1])
                  for i in range(len(losses))]
        axes[0].plot(steps, smooth, lw=1.5, color="C0", label=f"mean of {w}")
        axes[0].legend(loc="upper right", fontsize=8)
    axes[0].set(xlabel="meta-training step", ylabel="training meta-loss", title="training loss")
    axes[0].set_yscale("log" if train and min(x["loss"] for x in train) > 0 else "linear")
    if val:
        metric = val[0]["metric"]
        steps = [x["step"] for x in val]
        mean = [x["mean"] for x in val]
        ci = [x["ci95"] for x in val]
        axes[1].errorbar(steps, mean, yerr=ci, marker="o", ms=3, capsize=2)
        axes[1].set(xlabel="meta-training step", ylabel=f"validation {metric} (95% CI)",
                    title=f"validation {metric}")
    else:
        axes[1].text(0.5, 0.5, "no validation yet", ha="center", va="center")
    fig.suptitle(title or run_dir.name)
    fig.tight_layout()
    out = run_dir / "learning_curve.png"
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
