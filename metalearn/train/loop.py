"""The one meta-training loop: sample tasks, meta-loss, meta-update; validate, checkpoint, log.

Works with any :class:`~metalearn.types.Algorithm` built from the config's name tables. The run
directory holds ``config.json`` (the resolved config), ``metrics.jsonl``,
``checkpoints/last.*`` (full state: model, meta-optimizer, sampler generator, RNG, step),
``checkpoints/best.*`` (model with the best validation metric), ``learning_curve.png`` and,
when TensorBoard is installed, ``tensorboard/``. Resuming from ``last`` continues exactly where
the run stopped: the result equals an uninterrupted run. Every ``metrics.jsonl`` line carries
``time_s``, the wall-clock seconds since the run started, summed over the processes of a resumed
run (each contributes its time up to the checkpoint the next one resumed from).

Progress: a tqdm bar when stderr is a terminal; otherwise (a pipe, a log file, a cluster job) a
plain line on stderr (step/total, the training metrics, the best validation, steps/s, ETA) at the
first logged step, then at a logged step (every ``train.log_every``) once
``progress_seconds`` (30 s) have passed since the previous line, and at the last step.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from metalearn.algorithms import ALGORITHMS, MAML, ProtoMAML, Reptile
from metalearn.eval import EvalResult
from metalearn.eval.fewshot import AdaptInputError, FewShotClassifier
from metalearn.models import BACKBONES, FeatureMaps
from metalearn.models.weights import load_backbone
from metalearn.optim import meta_optimizer
from metalearn.train.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_model_state,
    save_checkpoint,
)
from metalearn.train.config import (
    ConfigError,
    RunConfig,
    build_component,
    resume_changes,
    validate,
)
from metalearn.train.data import (
    build_source,
    check_run_tokenizer,
    data_fields,
    embedding_rows,
    fixed_episodes,
    image_format,
    run_tokenizer,
    train_classes,
    train_sampler,
    write_splits,
    write_tokenizer,
)
from metalearn.train.distributed import Ranks, check_meta_batch, check_resume_world, world_size
from metalearn.train.distributed import setup as setup_distributed
from metalearn.train.runlog import RunLogger, is_run_dir, plot_learning_curve


class NonFiniteLossError(RuntimeError):
    """The meta-loss became NaN or infinite; the run stopped and kept its last good checkpoint."""


@dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes:
        run_dir: The run directory.
        steps: Completed meta-training steps.
        best_step: Step of the best validation result (``None`` if never validated).
        best: The best validation :class:`~metalearn.eval.EvalResult`.
        last_metrics: Training metrics of the last step.
        seconds: Wall-clock time of this call.
    """

    run_dir: Path
    steps: int
    best_step: int | None
    best: EvalResult | None
    last_metrics: dict
    seconds: float

    def __repr__(self) -> str:  # short: the dataclass repr would print every validation episode
        best = "None" if self.best is None else f"{self.best!r} at step {self.best_step}"
        return (f"TrainResult(steps={self.steps}, best={best}, seconds={self.seconds:.1f}, "
                f"run_dir={str(self.run_dir)!r})")


@dataclass
class TrainState:
    """The loop's own state, checkpointed beside the model's, meta-optimizer's and sampler's.

    Attributes:
        step: Completed meta-training steps.
        best: The best validation result so far (``None`` before the first validation).
        best_step: The step of ``best``.
    """

    step: int = 0
    best: EvalResult | None = None
    best_step: int | None = None

    def state_dict(self) -> dict:
        """JSON-serialisable; a checkpoint stores ``step`` as its ``step`` and the rest as its
        ``extra`` (``{"best": ..., "best_step": ...}``, as run directories always have)."""
        return {"step": self.step, "best": self.best.to_dict() if self.best else None,
                "best_step": self.best_step}

    def load_state_dict(self, state: dict) -> None:
        """Inverse of :meth:`state_dict`."""
        self.step = state["step"]
        best = state.get("best")
        self.best = EvalResult.from_dict(best) if best is not None else None
        self.best_step = state["best_step"] if best is not None else None


def pick_device(name: str = "auto") -> torch.device:
    """``auto`` -> CUDA when available, else CPU; otherwise ``torch.device(name)``.

    Raises:
        ConfigError: ``name`` is no device string (e.g. ``gpu9``), or names CUDA without it.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:  # torch's message lists every backend it knows; ours, the useful forms
        raise ConfigError(f"unknown device {name!r}: use auto (CUDA when available), cpu, cuda, "
                          "cuda:N (N = GPU index) or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device={name} but CUDA is not available; use train.device=cpu or auto")
    return device


def build_algorithm(cfg: RunConfig, pretrained: bool = False) -> torch.nn.Module:
    """The backbone and algorithm of ``cfg``, looked up in ``BACKBONES`` and ``ALGORITHMS`` and
    built from their resolved typed configs (:meth:`~metalearn.train.config.ModelConfig.resolve`).

    Args:
        cfg: The run config.
        pretrained: Load ``model.weights`` (when set) into the backbone before the algorithm
            wraps it: the start of meta-training. Off for a model a checkpoint fills anyway.

    Raises:
        ConfigError: invalid config, or ``model.weights`` missing, unreadable or not this
            backbone's.
    """
    validate(cfg)
    options = cfg.model.resolve()
    if getattr(options, "fields", False) is None:  # a rating network: its input layout is the data's
        options.fields = data_fields(cfg.data)
    backbone = build_component(BACKBONES[cfg.model.backbone], options)
    if pretrained and cfg.model.weights is not None:
        _load_weights(backbone, cfg.model.weights)
    if cfg.model.feature_maps is not None:
        if len(cfg.model.feature_maps) != 3:
            raise ConfigError(f"model.feature_maps must be [C, H, W], got {cfg.model.feature_maps}")
        backbone = FeatureMaps(backbone, tuple(cfg.model.feature_maps))
    algorithm = cfg.algorithm.resolve()
    if getattr(algorithm, "n_classes", None) == 0:  # a pretraining head over every training class
        algorithm.n_classes = train_classes(cfg.data)
    return build_component(ALGORITHMS[cfg.algorithm.name], algorithm, backbone)


def _load_weights(backbone: torch.nn.Module, path: str) -> None:
    """``model.weights`` into ``backbone``, every failure as a :class:`ConfigError` naming the key."""
    if not Path(path).is_file():
        raise ConfigError(f"model.weights={path}: no such file; give the path of a .safetensors "
                          "or .pt/.pth file of the backbone's pretrained weights, or model.weights=null")
    try:
        load_backbone(backbone, path)
    except ValueError as e:  # mismatching names or shapes, or no state dict in the file
        raise ConfigError(f"model.weights={path}: {e}") from None
    except Exception as e:  # noqa: BLE001 (damaged, or a pickle that weights_only refuses)
        raise ConfigError(f"model.weights={path} cannot be read as weights ({type(e).__name__}: "
                          f"{str(e).splitlines()[0] if str(e) else ''}); save a state dict with "
                          "safetensors or torch.save(model.state_dict(), ...)") from None


def lr_factor(cfg, step: int) -> float:
    """Learning-rate multiplier of the schedule at ``step`` (0-based), a pure function of the step."""
    if cfg.schedule == "step":
        return cfg.gamma ** (step // cfg.step_size)
    if cfg.schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * step / cfg.steps))
    if cfg.schedule == "linear":
        return 1 - step / cfg.steps
    return 1.0


def _better(new: EvalResult, old: EvalResult | None) -> bool:
    if old is None:
        return True
    return new.mean > old.mean if new.metric == "accuracy" else new.mean < old.mean


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def train(cfg: RunConfig, run_dir: str | os.PathLike, *, resume: bool = False, force: bool = False,
          quiet: bool = False, progress: bool | None = None, stop_after: int | None = None,
          progress_seconds: float = 30.0) -> TrainResult:
    """Meta-train ``cfg`` into ``run_dir``.

    Args:
        cfg: The run config (validated here).
        run_dir: Output folder, created if missing. Without ``resume`` it must not hold a
            checkpoint already (pick a new folder or resume), nor files of anything but a run.
        resume: Continue from ``run_dir/checkpoints/last``; ``cfg`` must equal the saved config,
            except for a higher ``train.steps`` (train it longer; said on stderr, see
            :func:`~metalearn.train.config.resume_changes`).
        force: Resume even when ``cfg`` differs from the saved config otherwise.
        quiet: Print nothing.
        progress: Show a progress bar; ``None``: only when stderr is a terminal and not quiet.
            Without a bar and not quiet, plain progress lines (see the module docstring).
        stop_after: Stop (after checkpointing) once this many steps are done, as if interrupted;
            for tests and time-boxed jobs.
        progress_seconds: Least wall-clock seconds between two plain progress lines.

    Returns:
        A :class:`TrainResult`.

    Raises:
        ConfigError: invalid config, or ``resume`` with a changed config and no ``force``.
        CheckpointError: resuming without a checkpoint, or starting over an existing run or in a
            folder holding other files.
        NonFiniteLossError: the loss became NaN/inf (the message names the step).
        DistributedError: under torchrun, a meta-batch that the processes cannot share equally,
            or a distributed environment that cannot work (the message names the fix).
    """
    start_time = time.perf_counter()
    validate(cfg)
    check_meta_batch(cfg.train.meta_batch, world_size())  # before any rendezvous, on every rank
    # the process group is torn down on every exit, errors included, so that the other ranks'
    # pending collectives fail at once instead of waiting for METALEARN_DIST_TIMEOUT
    ranks, device = setup_distributed(pick_device(cfg.train.device))
    try:
        return _train(cfg, Path(run_dir), ranks, device, start_time, resume=resume, force=force,
                      quiet=quiet, progress=progress, stop_after=stop_after,
                      progress_seconds=progress_seconds)
    finally:
        ranks.close()


def _train(cfg: RunConfig, run_dir: Path, ranks: Ranks, device: torch.device, start_time: float, *,
           resume: bool, force: bool, quiet: bool, progress: bool | None,
           stop_after: int | None, progress_seconds: float) -> TrainResult:
    ckpt_dir, t, main = run_dir / "checkpoints", cfg.train, ranks.is_main
    say = (lambda *a: None) if quiet or not main else (lambda *a: print(*a, file=sys.stderr))
    saved = _open_run(cfg, run_dir, resume, force, ranks, say)

    torch.manual_seed(t.seed)  # the initial weights, identical on every rank
    # pretrained weights are the start of a new run; a resumed one continues from its checkpoint
    algo = build_algorithm(cfg, pretrained=saved is None).to(device)
    sampler = train_sampler(cfg.data, t.seed, rank=ranks.rank)
    val_episodes = fixed_episodes(cfg.data, "val")
    if main:
        write_splits(cfg.data, run_dir)
        if saved is None:  # a text run's tokenizer goes with it; a resumed one must still match
            write_tokenizer(cfg.data, run_dir)
        else:
            check_run_tokenizer(cfg, run_dir)
    params = [p for p in algo.parameters() if p.requires_grad]
    opt = meta_optimizer(params, t.optimizer, t.lr, t.weight_decay)
    state = TrainState()
    if saved is not None:
        _restore(saved, algo, opt, sampler, state, ranks)
        say(f"resuming {run_dir} at step {state.step}")
    check_model_fits(algo, _peek_batch(sampler).to(device), cfg)
    saved_step = state.step if saved is not None else None  # of checkpoints/last, kept on NaN
    # wall-clock seconds of the run: this process's plus those of the processes before it
    before = float(saved["extra"].get("time_s", 0.0)) if saved is not None else 0.0
    clock = lambda: before + time.perf_counter() - start_time  # noqa: E731
    logger = RunLogger(run_dir, resume_step=state.step if resume else None,
                       tensorboard=t.tensorboard, loggers=t.loggers, run_name=cfg.name,
                       params=cfg.to_dict(), clock=clock) if main else None
    show = main and ((sys.stderr.isatty() and not quiet) if progress is None else progress)
    bar = tqdm(total=t.steps, initial=state.step, desc=cfg.name, unit="step", disable=not show,
               dynamic_ncols=True)
    echo = (lambda text: bar.write(text, file=sys.stderr)) if show else say
    end = t.steps if stop_after is None else min(t.steps, stop_after)
    plain = None if show or quiet or not main else _PlainProgress(cfg.name, state.step, t.steps,
                                                                  progress_seconds)
    metrics: dict = {}
    algo.train()
    try:
        while state.step < end:
            for group in opt.param_groups:
                group["lr"] = t.lr * lr_factor(t, state.step)
            batch = sampler.sample_batch(t.meta_batch // ranks.world).to(device)
            try:
                metrics = _meta_step(algo, opt, params, batch, ranks, t.grad_clip)
            except FloatingPointError as e:
                kept = f"the last good checkpoint (step {saved_step}) is kept in {ckpt_dir}" \
                    if saved_step is not None else "no checkpoint was written yet"
                raise NonFiniteLossError(
                    f"{e} at step {state.step + 1}: training stopped; {kept}. "
                    "Lower train.lr or the inner learning rate, or set train.grad_clip") from None
            state.step += 1
            if main and (state.step % t.log_every == 0 or state.step == t.steps):
                logger.log(state.step, "train", metrics)
                if plain is not None:
                    plain.update(state.step, metrics, state.best, final=state.step == end)
            bar.update(1)
            bar.set_postfix({k: f"{v:.4g}" for k, v in metrics.items() if k != "lr"}, refresh=False)
            if state.step % t.val_every == 0 or state.step == t.steps:
                _validate(algo, val_episodes, state, ranks, cfg, ckpt_dir, logger, echo)
            if state.step % t.checkpoint_every == 0 or state.step == end:
                _save_last(ckpt_dir, cfg, algo, opt, sampler, state, ranks, clock())
                saved_step = state.step
    finally:
        bar.close()
        if logger is not None:
            logger.close()
    if main:
        _plot(run_dir, cfg.name)
    ranks.barrier()  # on return, on every rank, rank 0's files are complete (e.g. to resume)
    return TrainResult(run_dir, state.step, state.best_step, state.best, metrics,
                       time.perf_counter() - start_time)


def _open_run(cfg: RunConfig, run_dir: Path, resume: bool, force: bool, ranks: Ranks,
              say) -> dict | None:
    """The checkpoint to resume from (``None`` for a new run), after checking that ``cfg`` is
    the run's config (a higher ``train.steps`` is, and ``say`` tells it) and that a new run's
    folder holds no one else's files; rank 0 writes ``config.json``, once every rank has looked
    at the folder (so that no rank sees it half-written)."""
    ckpt_dir = run_dir / "checkpoints"
    saved = None
    if resume:
        saved = load_checkpoint(ckpt_dir, "last")
        conflicts, note = resume_changes(RunConfig.from_dict(saved["config"]), cfg, saved["step"])
        if conflicts and not force:
            raise ConfigError("the config differs from the one this run was started with:\n  "
                              + "\n  ".join(conflicts)
                              + "\nresume without --preset/--set to keep it (raising train.steps "
                              "is allowed), or pass --force")
        if note is not None:
            say(note)
    elif (ckpt_dir / "last.json").exists():
        raise CheckpointError(f"{run_dir} already holds a run; pass --resume to continue it or "
                              "choose another --out folder")
    elif run_dir.is_dir() and not is_run_dir(run_dir) and (
            other := sorted(p.name + "/" * p.is_dir() for p in run_dir.iterdir())):
        shown = ", ".join(other[:5]) + (f" and {len(other) - 5} more" if len(other) > 5 else "")
        raise CheckpointError(f"{run_dir} is not a metalearn run directory and holds other files "
                              f"({shown}): train into a new or empty --out folder, so that the "
                              "run's files do not mix with yours")
    ranks.barrier()
    if ranks.is_main:
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=1))
        except OSError as e:  # read-only, no permission, full disk
            raise OSError(e.errno, f"cannot write the run directory {run_dir} ({e.strerror or e}): "
                          "choose a writable --out folder with free space") from None
    return saved


def _restore(saved: dict, algo, opt, sampler, state: TrainState, ranks: Ranks) -> None:
    """Load a ``last`` checkpoint into the model, meta-optimizer, this rank's sampler and RNG,
    and the loop's :class:`TrainState`."""
    s = saved["state"]
    load_model_state(algo, s["model"])
    opt.load_state_dict(s["optimizer"])
    check_resume_world(len(s["sampler"]), ranks.world)
    sampler.load_state_dict(s["sampler"][ranks.rank])
    _set_rng_state(s["rng"][ranks.rank])
    state.load_state_dict({"step": saved["step"], **saved["extra"]})


def _save_last(ckpt_dir: Path, cfg: RunConfig, algo, opt, sampler, state: TrainState,
               ranks: Ranks, seconds: float) -> None:
    """Write ``checkpoints/last``; collective: every rank contributes its sampler and RNG state.
    ``seconds`` (the run's wall-clock time so far) is saved as ``extra["time_s"]``, where a
    resumed run's ``time_s`` continues from."""
    samplers, rngs = ranks.gather(sampler.state_dict()), ranks.gather(_rng_state())
    if ranks.is_main:
        tensors = {"model": algo.state_dict(), "optimizer": opt.state_dict(), "sampler": samplers,
                   "rng": rngs}
        extra = state.state_dict()
        save_checkpoint(ckpt_dir, "last", tensors, step=extra.pop("step"), config=cfg.to_dict(),
                        extra={**extra, "time_s": seconds})


class _PlainProgress:
    """Progress lines on stderr where no bar is shown (see the module docstring for when).

    Args:
        name: The run's name, starting each line.
        step: Completed steps when this process started (its rate counts its own steps only).
        total: ``train.steps``.
        every: Least seconds between two lines (the first and the last are always written).
    """

    def __init__(self, name: str, step: int, total: int, every: float):
        self.name, self.total, self.every = name, total, every
        self.start_step, self.start = step, time.perf_counter()
        self.last: float | None = None

    def update(self, step: int, metrics: dict, best: EvalResult | None, final: bool) -> None:
        """Called at every logged step; prints when due."""
        now = time.perf_counter()
        if not final and self.last is not None and now - self.last < self.every:
            return
        self.last = now
        rate = (step - self.start_step) / max(now - self.start, 1e-9)
        shown = " ".join(f"{k} {v:.4g}" for k, v in metrics.items() if k != "lr")
        val = f", best val {best.metric} {best.mean:.4g}" if best is not None else ""
        eta = tqdm.format_interval((self.total - step) / rate) if rate > 0 else "?"
        print(f"{self.name} step {step}/{self.total}: {shown}{val} | {rate:.3g} steps/s, "
              f"ETA {eta}", file=sys.stderr, flush=True)


def _meta_step(algo, opt, params: list, batch, ranks: Ranks, grad_clip: float | None) -> dict:
    """One meta-update on ``batch`` (this rank's share of the meta-batch).

    Returns:
        The step's metrics averaged over the ranks: ``loss``, the algorithm's own, ``lr``.

    Raises:
        FloatingPointError: the meta-loss is not finite on some rank (every rank raises).
    """
    try:
        loss, metrics = algo.meta_loss(batch)
        bad = None
    except FloatingPointError as e:  # an algorithm's own finiteness check
        loss, metrics, bad = torch.tensor(float("nan"), device=batch[0].support_x.device), {}, str(e)
    mean_loss = ranks.mean(loss.detach().float().reshape(1))  # NaN on all if on one
    if bad is None and not torch.isfinite(mean_loss).all():
        bad = f"the meta-loss is {mean_loss.item()}"
    if bad is not None:
        raise FloatingPointError(bad)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    ranks.average_gradients(params)
    if grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
    opt.step()
    means = ranks.mean(torch.tensor([float(v) for v in metrics.values()], device=mean_loss.device))
    return {"loss": mean_loss.item(), **dict(zip(metrics, means.tolist())),
            "lr": opt.param_groups[0]["lr"]}


def _validate(algo, episodes, state: TrainState, ranks: Ranks, cfg: RunConfig, ckpt_dir: Path,
              logger: RunLogger | None, echo) -> EvalResult:
    """Evaluate on the fixed validation episodes and keep the best; rank 0 logs it and writes
    ``checkpoints/best`` when it improved. Collective: each rank evaluates a strided share."""
    val = ranks.evaluate(algo, episodes, progress=False)
    algo.train()
    improved = _better(val, state.best)
    if improved:
        state.best, state.best_step = val, state.step
    if ranks.is_main:
        logger.log(state.step, "val", {"metric": val.metric, "mean": val.mean, "ci95": val.ci95,
                                       **{k: m for k, (m, _) in val.extra.items()}})
        if improved:
            save_checkpoint(ckpt_dir, "best", {"model": algo.state_dict()}, step=state.step,
                            config=cfg.to_dict(), extra={"val": val.to_dict()})
        echo(f"step {state.step}: validation {val}" + (" (best)" if improved else ""))
    return val


def _plot(run_dir: Path, name: str) -> None:
    try:
        plot_learning_curve(run_dir, title=name)
    except ImportError:  # matplotlib is in the [train] extra, not a core dependency
        print(f"{name}: learning_curve.png not drawn: matplotlib is not installed "
              "(pip install 'metalearn[train]'); metrics.jsonl holds the curve", file=sys.stderr)


def _peek_batch(sampler):
    """A one-task batch from ``sampler`` that leaves its stream (and the global RNG) untouched:
    training draws exactly the tasks it would have drawn without this look."""
    sampler_state, rng_state = sampler.state_dict(), _rng_state()
    batch = sampler.sample_batch(1)
    sampler.load_state_dict(sampler_state)
    _set_rng_state(rng_state)
    return batch


def check_model_fits(algo, batch, cfg: RunConfig) -> None:
    """One forward of the backbone on one task's support set, before any training step.

    A backbone built for other inputs (``model.image_size``, ``model.in_channels``,
    ``model.in_features`` against ``data.image_size`` and the dataset's channels) or a
    gradient-based learner whose head has fewer outputs than ``data.n_way`` would fail in the
    first step with a shape error deep in torch; this names the mismatch instead.

    Args:
        algo: The built algorithm; its ``backbone``, when it has one, is run without gradients.
        batch: An :class:`~metalearn.types.EpisodeBatch` (or ``EpisodeList``) of the training data.
        cfg: The run config (validated), for the names in the message.

    Raises:
        ConfigError: the model cannot take the data, naming the mismatch and the keys to set.
    """
    backbone = getattr(algo, "backbone", None)
    if backbone is None:  # the Algorithm protocol does not require one: nothing to check
        return
    x, options = batch[0].support_x, cfg.model.options
    if hasattr(backbone, "check_codes"):  # attribute codes against the model's embeddings
        try:
            backbone.check_codes(x)
        except ValueError as e:
            raise ConfigError(f"the model cannot take this data: {e}") from None
    try:
        with torch.no_grad():
            out = backbone(x)
    except (RuntimeError, ValueError) as e:
        text = str(e)
        if isinstance(e, torch.OutOfMemoryError) or "allocate" in text:
            raise
        found = []
        if x.dim() == 4 and options.get("in_channels", x.shape[1]) != x.shape[1]:
            found.append(f"the data has {x.shape[1]} channels but model.in_channels={options['in_channels']}")
        if x.dim() == 4 and options.get("image_size", x.shape[-1]) != x.shape[-1]:
            found.append(f"data.image_size={x.shape[-1]} but model.image_size={options['image_size']}")
        if x.dim() == 2 and options.get("in_features", x.shape[-1]) != x.shape[-1]:
            found.append(f"the data has {x.shape[-1]} features but model.in_features={options['in_features']}")
        what = "; ".join(found) or text.splitlines()[0]
        raise ConfigError(
            f"the model cannot take this data ({what}): match data.image_size and data.channels "
            "with the backbone's options (model.image_size, model.in_channels; `metalearn list "
            "--options NAME`)") from e
    n_way = cfg.data.n_way
    head_of_its_own = isinstance(algo, ProtoMAML)  # its head is built from the prototypes
    if n_way is not None and isinstance(algo, (MAML, Reptile)) and not head_of_its_own and out.shape[-1] < n_way:
        raise ConfigError(f"the model has {out.shape[-1]} outputs but data.n_way={n_way}: "
                          f"{cfg.algorithm.name} classifies with the backbone's outputs, so set "
                          f"model.out_features={n_way}")


def load_run(run_dir: str | os.PathLike, tag: str = "best", device: str | None = None, *,
             data_root: str | None = None):
    """Rebuild a trained algorithm from a run directory.

    Args:
        run_dir: A folder written by :func:`train`.
        tag: ``"best"`` (best validation, falling back to ``"last"`` when absent) or ``"last"``.
        device: Where to put it; default ``train.device`` of the run's config.
        data_root: Read the data there instead of the saved ``data.root`` (it moved).

    Returns:
        ``(algorithm, config, step)``; the algorithm is in ``eval()`` mode.

    Raises:
        CheckpointError: no checkpoint, or one that does not fit the saved config's model.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"run directory {run_dir} does not exist")
    ckpt_dir = run_dir / "checkpoints"
    if tag == "best" and not (ckpt_dir / "best.json").exists():
        tag = "last"
    saved = load_checkpoint(ckpt_dir, tag)
    cfg = RunConfig.from_dict(saved["config"])
    if data_root is not None:  # the data moved since training (a ratings run reads its layout there)
        cfg.data.root = data_root
    algo = build_algorithm(cfg)
    load_model_state(algo, saved["state"]["model"], f"checkpoint {ckpt_dir / tag}")
    algo.to(pick_device(device or cfg.train.device)).eval()
    return algo, cfg, saved["step"]


def load_recommender(run_dir: str | os.PathLike, tag: str = "best", device: str | None = None, *,
                     data_root: str | None = None):
    """A recommendation run's trained algorithm and its meta-training users (the item catalogue
    and input layout), for :func:`metalearn.eval.recommend.recommend`.

    Args:
        run_dir: A folder written by :func:`train` of a ratings dataset.
        tag: ``"best"`` or ``"last"``, as in :func:`load_run`.
        device: Where to compute; default ``train.device`` of the run's config.
        data_root: The data's folder, when it moved since training (``data.root``).

    Returns:
        ``(algorithm, tasks, config)``.

    Raises:
        CheckpointError: as :func:`load_run`.
        RecommendInputError: the run is not a recommender.
    """
    from metalearn.data.registry import DATASETS
    from metalearn.eval.recommend import RecommendInputError

    root = str(Path(data_root).resolve()) if data_root else None
    algo, cfg, _ = load_run(run_dir, tag, device, data_root=root)
    if not DATASETS[cfg.data.dataset].ratings:
        raise RecommendInputError(f"{run_dir} was trained on {cfg.data.dataset}, not on ratings: "
                                  "recommend needs a run of a ratings dataset (metalearn list datasets)")
    return algo, build_source(cfg.data, "train"), cfg


def load_classifier(run_dir: str | os.PathLike, tag: str = "best", device: str | None = None
                    ) -> FewShotClassifier:
    """A :class:`~metalearn.eval.fewshot.FewShotClassifier` of a run directory's trained algorithm.

    Args:
        run_dir: A folder written by :func:`train` (``metalearn train --out``), of a
            classification run.
        tag: ``"best"`` or ``"last"``, as in :func:`load_run`.
        device: Where to compute; default ``train.device`` of the run's config.

    Raises:
        CheckpointError: as :func:`load_run`.
        AdaptInputError: a regression run.

    Examples:
        >>> clf = load_classifier("runs/protonet-omniglot-5w1s")  # doctest: +SKIP
        >>> clf.fit(support_images, ["a", "a", "b", "b"]).predict(query_images)  # doctest: +SKIP
        array(['a', 'b', ...], dtype='<U1')
    """
    algo, cfg, _ = load_run(run_dir, tag, device)
    if cfg.data.n_way is None:
        raise AdaptInputError(f"{run_dir} is a regression run ({cfg.data.dataset}); a classifier "
                              "needs a run meta-trained on classification tasks")
    out = cfg.model.options.get("out_features")
    fmt = image_format(cfg.data)  # image files and PIL images are decoded as the run's data
    tokenizer = run_tokenizer(run_dir)  # a text run's sentences are encoded as its data was
    rows = embedding_rows(cfg)
    if tokenizer is not None and rows is not None and tokenizer.vocab_size > rows:
        raise CheckpointError(f"the tokenizer in {Path(run_dir) / 'tokenizer'} has {tokenizer.vocab_size} "
                              f"tokens but the checkpoint's model embeds only {rows} "
                              "(model.vocab_size): the folder does not belong to this run")
    return FewShotClassifier(algo, n_way=out if isinstance(out, int) else None, device=device,
                             image_format=None if fmt is None else (cfg.data.image_size, *fmt),
                             tokenizer=tokenizer)

