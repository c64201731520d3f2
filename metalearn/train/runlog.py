"""Run logging: metrics as JSON lines (always), TensorBoard (when installed), MLflow and
Weights & Biases (``train.loggers``), the learning curve; and which files of a run directory
are the run's own (:func:`run_files`)."""

from __future__ import annotations

import importlib
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from metalearn.errors import ConfigError

LOGGERS = ("mlflow", "wandb")
"""The names ``train.loggers`` takes; each needs its extra (``pip install 'metalearn[NAME]'``)."""


class MetricsBackend(Protocol):
    """Where :class:`RunLogger` sends each event besides ``metrics.jsonl``.

    ``log`` gets the completed step, the split (``"train"`` or ``"val"``) and the event's
    values (floats, and strings such as the validation ``metric`` name, which backends skip).
    """

    def log(self, step: int, split: str, metrics: dict[str, float]) -> None: ...

    def close(self) -> None: ...


def _scalars(split: str, metrics: dict) -> dict[str, float]:
    """``split/name -> value`` for the finite numbers of ``metrics`` (what a scalar plot can show)."""
    return {f"{split}/{k}": float(v) for k, v in metrics.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


def _flat(d: dict, prefix: str = "") -> dict[str, object]:
    """``{"train": {"steps": 60}}`` -> ``{"train.steps": 60}``: the config as the dotted keys
    of ``--set``, for the trackers' flat parameter tables."""
    out: dict[str, object] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


def _require(module: str, name: str):
    """Import an optional tracker, or say which pip command installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(f"train.loggers names {name!r}, but {module} is not installed: "
                          f"pip install 'metalearn[{name}]'") from None


class _RunIds:
    """``RUN_DIR/loggers.json``: the tracker run ids, so that ``--resume`` continues the same
    MLflow / W&B run instead of opening a new one."""

    def __init__(self, run_dir: Path):
        self.path = run_dir / "loggers.json"

    def get(self, name: str) -> str | None:
        try:
            return json.loads(self.path.read_text()).get(name)
        except (OSError, json.JSONDecodeError):
            return None

    def set(self, name: str, run_id: str) -> None:
        try:
            ids = json.loads(self.path.read_text())
        except (OSError, json.JSONDecodeError):
            ids = {}
        ids[name] = run_id
        self.path.write_text(json.dumps(ids, indent=1) + "\n")


class TensorBoardLogger:
    """Scalars ``SPLIT/NAME`` under ``RUN_DIR/tensorboard``.

    Raises:
        ImportError: the ``tensorboard`` package is not installed.
    """

    def __init__(self, run_dir: Path, resume_step: int | None = None):
        from torch.utils.tensorboard import SummaryWriter

        # purge_step drops the events written after the checkpoint a resumed run continues from
        self._writer = SummaryWriter(str(run_dir / "tensorboard"), purge_step=resume_step)

    def log(self, step: int, split: str, metrics: dict[str, float]) -> None:
        for k, v in _scalars(split, metrics).items():
            self._writer.add_scalar(k, v, step)

    def close(self) -> None:
        self._writer.close()


class MLflowLogger:
    """An MLflow run per run directory: the config as parameters, ``SPLIT/NAME`` metrics.

    Where it logs is MLflow's own choice: ``MLFLOW_TRACKING_URI`` (a server, a database, or
    ``file:///path/mlruns``; MLflow 3 wants ``MLFLOW_ALLOW_FILE_STORE=true`` for the file store),
    the experiment ``MLFLOW_EXPERIMENT_NAME``, else the run config's ``name``. The run is named
    after the run directory; ``--resume`` continues it (metrics logged after the checkpoint the
    run resumes from stay in MLflow's history, which has no delete).

    Raises:
        ConfigError: ``mlflow`` (``pip install 'metalearn[mlflow]'``) is not installed.
    """

    def __init__(self, run_dir: Path, run_name: str, params: dict, resume_step: int | None = None):
        _require("mlflow", "mlflow")
        from mlflow.entities import Metric, Param
        from mlflow.tracking import MlflowClient

        self._metric = Metric
        self._client = MlflowClient()
        ids = _RunIds(run_dir)
        self.run_id = ids.get("mlflow") if resume_step is not None else None
        if self.run_id is None:
            experiment = os.environ.get("MLFLOW_EXPERIMENT_NAME") or run_name
            found = self._client.get_experiment_by_name(experiment)
            exp_id = found.experiment_id if found else self._client.create_experiment(experiment)
            run = self._client.create_run(exp_id, run_name=run_dir.name,
                                          tags={"metalearn.run_dir": str(run_dir.resolve())})
            self.run_id = run.info.run_id
            ids.set("mlflow", self.run_id)
            flat = [Param(k, json.dumps(v)[:6000]) for k, v in _flat(params).items()]
            for i in range(0, len(flat), 100):  # MLflow takes at most 100 parameters a batch
                self._client.log_batch(self.run_id, params=flat[i:i + 100])
        else:
            self._client.update_run(self.run_id, status="RUNNING")

    def log(self, step: int, split: str, metrics: dict[str, float]) -> None:
        now = int(time.time() * 1000)
        batch = [self._metric(k, v, now, step) for k, v in _scalars(split, metrics).items()]
        if batch:
            self._client.log_batch(self.run_id, metrics=batch)

    def close(self) -> None:
        self._client.set_terminated(self.run_id)


class WandbLogger:
    """A Weights & Biases run per run directory: the config as ``config``, ``SPLIT/NAME`` metrics.

    W&B reads its own environment: ``WANDB_PROJECT``, ``WANDB_ENTITY``, ``WANDB_MODE``
    (``offline`` logs to disk only, ``disabled`` not at all) and the credentials; its files go
    to ``WANDB_DIR``, else ``RUN_DIR/wandb``. ``--resume`` continues the same run (W&B ignores
    steps at or below those it already has).

    Raises:
        ConfigError: ``wandb`` (``pip install 'metalearn[wandb]'``) is not installed.
    """

    def __init__(self, run_dir: Path, run_name: str, params: dict, resume_step: int | None = None):
        wandb = _require("wandb", "wandb")
        ids = _RunIds(run_dir)
        run_id = ids.get("wandb") if resume_step is not None else None
        self._run = wandb.init(name=run_dir.name, group=run_name, config=params,
                               dir=os.environ.get("WANDB_DIR") or str(run_dir),
                               id=run_id, resume="allow" if run_id else None)
        ids.set("wandb", self._run.id)

    def log(self, step: int, split: str, metrics: dict[str, float]) -> None:
        scalars = _scalars(split, metrics)
        if scalars:
            self._run.log(scalars, step=step)

    def close(self) -> None:
        self._run.finish()


def make_backends(run_dir: str | os.PathLike, *, tensorboard: bool = False,
                  loggers: Sequence[str] = (), run_name: str = "run", params: dict | None = None,
                  resume_step: int | None = None) -> list[MetricsBackend]:
    """The backends a run logs to besides ``metrics.jsonl``.

    Args:
        run_dir: The run directory.
        tensorboard: Add :class:`TensorBoardLogger` when ``tensorboard`` is installed (it is with
            ``pip install 'metalearn[train]'``; without it, silently none).
        loggers: Names from :data:`LOGGERS`; each must be installed.
        run_name: The run config's ``name`` (MLflow's experiment, W&B's group).
        params: The run config as a dict, logged as the tracker run's parameters.
        resume_step: The step a resumed run continues from; ``None`` for a new run.

    Raises:
        ConfigError: an unknown name, or a tracker that is not installed (with the pip command).
    """
    run_dir = Path(run_dir)
    if resume_step is None:  # a new run: no tracker run to continue
        (run_dir / "loggers.json").unlink(missing_ok=True)
    backends: list[MetricsBackend] = []
    if tensorboard:
        try:
            backends.append(TensorBoardLogger(run_dir, resume_step))
        except ImportError:  # optional: `pip install 'metalearn[train]'`
            pass
    makers = {"mlflow": MLflowLogger, "wandb": WandbLogger}
    try:
        for name in loggers:
            if name not in makers:
                raise ConfigError(f"unknown logger {name!r} in train.loggers; known: {', '.join(LOGGERS)}")
            backends.append(makers[name](run_dir, run_name, params or {}, resume_step))
    except BaseException:
        for b in backends:  # a later one failed: leave no run open in the earlier ones
            b.close()
        raise
    return backends

#: What a run writes at the top of its directory (``eval_*.json``: ``metalearn eval``), and the
#: two folders it owns. Nothing else there is ever deleted by ``--overwrite``.
RUN_FILES = ("config.json", "metrics.jsonl", "learning_curve.png", "eval_*.json", "splits.json",
             "loggers.json")
RUN_FOLDERS = {"checkpoints": ("last.json", "best.json", "last-*.safetensors", "best-*.safetensors",
                               ".last*.tmp", ".best*.tmp"),
               "tensorboard": ("events.out.tfevents.*",),
               "tokenizer": ("tokenizer.json", "tokenizer_meta.json")}


class RunLogger:
    """Appends one JSON object per event to ``RUN_DIR/metrics.jsonl`` and sends it to the
    backends (:func:`make_backends`: TensorBoard, MLflow, W&B).

    Each line has ``step`` (completed meta-training steps), ``kind`` (``"train"`` or ``"val"``)
    and float metrics. Only rank 0 should create one.

    Args:
        run_dir: The run directory.
        resume_step: When resuming, lines with ``step`` above it (written after the checkpoint
            the run continues from) are dropped, so the file reads as one uninterrupted run.
        tensorboard: Also write TensorBoard scalars under ``RUN_DIR/tensorboard`` if the
            ``tensorboard`` package is installed.
        loggers: Trackers from :data:`LOGGERS` (``train.loggers``).
        run_name: The run config's ``name``, for the trackers.
        params: The run config as a dict, for the trackers.
        clock: Seconds since the run started, written as ``time_s`` in every line (not sent
            to the backends, whose events carry their own wall time); ``None``: no ``time_s``.

    Raises:
        ConfigError: a logger in ``loggers`` is not installed (before ``metrics.jsonl`` is touched).
    """

    def __init__(self, run_dir: str | os.PathLike, resume_step: int | None = None,
                 tensorboard: bool = False, loggers: Sequence[str] = (), run_name: str = "run",
                 params: dict | None = None, clock: Callable[[], float] | None = None):
        self.backends = make_backends(run_dir, tensorboard=tensorboard, loggers=loggers,
                                      run_name=run_name, params=params, resume_step=resume_step)
        self.path, self.clock = Path(run_dir) / "metrics.jsonl", clock
        if resume_step is None:
            self.path.write_text("")
        elif self.path.exists():
            keep = [line for line in read_metrics(self.path) if line["step"] <= resume_step]
            self.path.write_text("".join(json.dumps(x) + "\n" for x in keep))
        self._file = open(self.path, "a")

    def log(self, step: int, kind: str, metrics: dict[str, float]) -> None:
        """Write one line and flush it (a crash loses nothing already logged)."""
        clean = {k: (float(v) if isinstance(v, (int, float)) else v) for k, v in metrics.items()}
        line = {"step": step, "kind": kind, **clean}
        if self.clock is not None:
            line["time_s"] = round(self.clock(), 3)
        self._file.write(json.dumps(line) + "\n")
        self._file.flush()
        for backend in self.backends:
            backend.log(step, kind, clean)

    def close(self) -> None:
        self._file.close()
        for backend in self.backends:
            backend.close()


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
