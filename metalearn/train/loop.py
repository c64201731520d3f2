"""The one meta-training loop: sample tasks, meta-loss, meta-update; validate, checkpoint, log.

Works with any :class:`~metalearn.types.Algorithm` built from the config's name tables. The run
directory holds ``config.json`` (the resolved config), ``metrics.jsonl``,
``checkpoints/last.*`` (full state: model, meta-optimizer, sampler generator, RNG, step),
``checkpoints/best.*`` (model with the best validation metric), ``learning_curve.png`` and,
when TensorBoard is installed, ``tensorboard/``. Resuming from ``last`` continues exactly where
the run stopped: the result equals an uninterrupted run.
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

from metalearn.eval import EvalResult
from metalearn.optim import meta_optimizer
from metalearn.train.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_model_state,
    save_checkpoint,
)
from metalearn.train.config import ConfigError, RunConfig, build_component, diff, validate
from metalearn.train.data import fixed_episodes, train_sampler
from metalearn.train.distributed import Ranks, check_meta_batch, world_size
from metalearn.train.distributed import setup as setup_distributed
from metalearn.train.runlog import RunLogger, plot_learning_curve


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


def pick_device(name: str = "auto") -> torch.device:
    """``auto`` -> CUDA when available, else CPU; otherwise ``torch.device(name)``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device={name} but CUDA is not available; use train.device=cpu or auto")
    return device


def build_algorithm(cfg: RunConfig) -> torch.nn.Module:
    """The backbone and algorithm of ``cfg``, looked up in ``BACKBONES`` and ``ALGORITHMS``."""
    from metalearn.algorithms import ALGORITHMS
    from metalearn.models import BACKBONES

    validate(cfg)
    backbone = build_component(BACKBONES[cfg.model.backbone], cfg.model.options)
    if cfg.model.feature_maps is not None:
        from metalearn.models import FeatureMaps

        if len(cfg.model.feature_maps) != 3:
            raise ConfigError(f"model.feature_maps must be [C, H, W], got {cfg.model.feature_maps}")
        backbone = FeatureMaps(backbone, tuple(cfg.model.feature_maps))
    return build_component(ALGORITHMS[cfg.algorithm.name], cfg.algorithm.options, backbone)


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
          quiet: bool = False, progress: bool | None = None, stop_after: int | None = None) -> TrainResult:
    """Meta-train ``cfg`` into ``run_dir``.

    Args:
        cfg: The run config (validated here).
        run_dir: Output folder, created if missing. Without ``resume`` it must not hold a
            checkpoint already (pick a new folder or resume).
        resume: Continue from ``run_dir/checkpoints/last``; ``cfg`` must equal the saved config.
        force: Resume even when ``cfg`` differs from the saved config (e.g. more ``train.steps``).
        quiet: Print nothing.
        progress: Show a progress bar; ``None``: only when stderr is a terminal and not quiet.
        stop_after: Stop (after checkpointing) once this many steps are done, as if interrupted;
            for tests and time-boxed jobs.

    Returns:
        A :class:`TrainResult`.

    Raises:
        ConfigError: invalid config, or ``resume`` with a changed config and no ``force``.
        CheckpointError: resuming without a checkpoint, or starting over an existing run.
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
                      quiet=quiet, progress=progress, stop_after=stop_after)
    finally:
        ranks.close()


def _train(cfg: RunConfig, run_dir: Path, ranks: Ranks, device: torch.device, start_time: float, *,
           resume: bool, force: bool, quiet: bool, progress: bool | None,
           stop_after: int | None) -> TrainResult:
    ckpt_dir = run_dir / "checkpoints"
    if resume:
        saved = load_checkpoint(ckpt_dir, "last")
        changes = diff(RunConfig.from_dict(saved["config"]), cfg)
        if changes and not force:
            raise ConfigError("the config differs from the one this run was started with:\n  "
                              + "\n  ".join(changes)
                              + "\nresume without --preset/--set to keep it, or pass --force")
    elif (ckpt_dir / "last.json").exists():
        raise CheckpointError(f"{run_dir} already holds a run; pass --resume to continue it or "
                              "choose another --out folder")
    t = cfg.train
    per_rank = t.meta_batch // ranks.world
    main = ranks.is_main
    if main:
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=1))
        except OSError as e:  # read-only, no permission, full disk
            raise OSError(e.errno, f"cannot write the run directory {run_dir} ({e.strerror or e}): "
                          "choose a writable --out folder with free space") from None
    say = (lambda *a: None) if quiet or not main else (lambda *a: print(*a, file=sys.stderr))

    torch.manual_seed(t.seed)  # the initial weights, identical on every rank
    algo = build_algorithm(cfg).to(device)
    sampler = train_sampler(cfg.data, t.seed, rank=ranks.rank)
    val_episodes = fixed_episodes(cfg.data, "val")
    params = [p for p in algo.parameters() if p.requires_grad]
    opt = meta_optimizer(params, t.optimizer, t.lr, t.weight_decay)

    step, best, best_step = 0, None, None
    if resume:
        s = saved["state"]
        load_model_state(algo, s["model"])
        opt.load_state_dict(s["optimizer"])
        if len(s["sampler"]) != ranks.world:
            n = len(s["sampler"])
            raise ConfigError(f"this run was trained with {n} processes, not {ranks.world}: resume it "
                              "with the same number (" + (f"torchrun --nproc-per-node {n} ..." if n > 1
                                                          else "without torchrun") + ")")
        sampler.load_state_dict(s["sampler"][ranks.rank])
        _set_rng_state(s["rng"][ranks.rank])
        step = saved["step"]
        if saved["extra"].get("best") is not None:
            best, best_step = EvalResult.from_dict(saved["extra"]["best"]), saved["extra"]["best_step"]
        say(f"resuming {run_dir} at step {step}")
    logger = RunLogger(run_dir, resume_step=step if resume else None, tensorboard=t.tensorboard) \
        if main else None

    def checkpoint() -> None:  # collective: every rank contributes its sampler and RNG state
        samplers, rngs = ranks.gather(sampler.state_dict()), ranks.gather(_rng_state())
        if main:
            state = {"model": algo.state_dict(), "optimizer": opt.state_dict(),
                     "sampler": samplers, "rng": rngs}
            extra = {"best": best.to_dict() if best else None, "best_step": best_step}
            save_checkpoint(ckpt_dir, "last", state, step=step, config=cfg.to_dict(), extra=extra)

    from tqdm.auto import tqdm

    show = main and ((sys.stderr.isatty() and not quiet) if progress is None else progress)
    bar = tqdm(total=t.steps, initial=step, desc=cfg.name, unit="step", disable=not show,
               dynamic_ncols=True)
    metrics: dict = {}
    end = t.steps if stop_after is None else min(t.steps, stop_after)
    first_step = step
    algo.train()
    try:
        while step < end:
            for group in opt.param_groups:
                group["lr"] = t.lr * lr_factor(t, step)
            batch = sampler.sample_batch(per_rank).to(device)
            try:
                loss, metrics = algo.meta_loss(batch)
                bad = None
            except FloatingPointError as e:  # an algorithm's own finiteness check
                loss, metrics, bad = torch.tensor(float("nan"), device=device), {}, str(e)
            except RuntimeError as e:  # the first batch does not fit the model: a config mistake
                text = str(e)
                if step != first_step or "allocate" in text or not any(
                        w in text for w in ("size", "shape", "channels", "dimension")):
                    raise
                raise ConfigError(
                    f"the model cannot take this data ({text.splitlines()[0]}): match data.image_size "
                    "and data.channels with the backbone's options (model.image_size, "
                    "model.in_channels; `metalearn list --options NAME`)") from e
            mean_loss = ranks.mean(loss.detach().float().reshape(1))  # NaN on all if on one
            if bad is None and not torch.isfinite(mean_loss).all():
                bad = f"the meta-loss is {mean_loss.item()}"
            if bad is not None:
                last = load_checkpoint(ckpt_dir)["step"] if (ckpt_dir / "last.json").exists() else None
                kept = f"the last good checkpoint (step {last}) is kept in {ckpt_dir}" if last is not None \
                    else "no checkpoint was written yet"
                raise NonFiniteLossError(
                    f"{bad} at step {step + 1}: training stopped; {kept}. "
                    "Lower train.lr or the inner learning rate, or set train.grad_clip")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            ranks.average_gradients(params)
            if t.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(params, t.grad_clip)
            opt.step()
            step += 1
            means = ranks.mean(torch.tensor([float(v) for v in metrics.values()], device=device))
            metrics = {"loss": mean_loss.item(), **dict(zip(metrics, means.tolist())),
                       "lr": opt.param_groups[0]["lr"]}
            if main and (step % t.log_every == 0 or step == t.steps):
                logger.log(step, "train", metrics)
            bar.update(1)
            bar.set_postfix({k: f"{v:.4g}" for k, v in metrics.items() if k != "lr"}, refresh=False)
            if step % t.val_every == 0 or step == t.steps:
                # collective: each rank evaluates a strided share, every rank gets the full result
                val = ranks.evaluate(algo, val_episodes, progress=False)
                algo.train()
                improved = _better(val, best)
                if improved:
                    best, best_step = val, step
            if main and (step % t.val_every == 0 or step == t.steps):
                logger.log(step, "val", {"metric": val.metric, "mean": val.mean, "ci95": val.ci95,
                                         **{k: m for k, (m, _) in val.extra.items()}})
                if improved:
                    save_checkpoint(ckpt_dir, "best", {"model": algo.state_dict()}, step=step,
                                    config=cfg.to_dict(), extra={"val": val.to_dict()})
                say_text = f"step {step}: validation {val}" + (" (best)" if best_step == step else "")
                if show:
                    bar.write(say_text, file=sys.stderr)
                else:
                    say(say_text)
            if step % t.checkpoint_every == 0 or step == end:
                checkpoint()
    finally:
        bar.close()
        if logger is not None:
            logger.close()
    if main:
        try:
            plot_learning_curve(run_dir, title=cfg.name)
        except ImportError:  # matplotlib is in the [train] extra, not a core dependency
            print(f"{cfg.name}: learning_curve.png not drawn: matplotlib is not installed "
                  "(pip install 'metalearn[train]'); metrics.jsonl holds the curve", file=sys.stderr)
    ranks.barrier()  # on return, on every rank, rank 0's files are complete (e.g. to resume)
    return TrainResult(run_dir, step, best_step, best, metrics, time.perf_counter() - start_time)


def load_run(run_dir: str | os.PathLike, tag: str = "best", device: str | None = None):
    """Rebuild a trained algorithm from a run directory.

    Args:
        run_dir: A folder written by :func:`train`.
        tag: ``"best"`` (best validation, falling back to ``"last"`` when absent) or ``"last"``.
        device: Where to put it; default ``train.device`` of the run's config.

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
    algo = build_algorithm(cfg)
    load_model_state(algo, saved["state"]["model"], f"checkpoint {ckpt_dir / tag}")
    algo.to(pick_device(device or cfg.train.device)).eval()
    return algo, cfg, saved["step"]
