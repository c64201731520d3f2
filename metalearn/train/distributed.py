"""torchrun-native data parallelism over tasks: each rank samples its own tasks, meta-gradients
are averaged with one explicit all-reduce, evaluation episodes are shared out, and only rank 0
logs and writes files.

Launch the same command on every rank, e.g. ``torchrun --nproc-per-node 2 -m metalearn.cli train
--preset maml-omniglot-5w1s``; ``train.meta_batch`` is the total over ranks. All ranks start from
identical weights (the same seed) and stay identical because they apply the same averaged
gradient. Without ``WORLD_SIZE`` in the environment (or with 1) nothing here communicates.

Environment variables (besides torchrun's ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``, ``MASTER_PORT``):

- ``METALEARN_DIST_BACKEND``: ``auto`` (default: NCCL on CUDA, gloo on CPU), ``gloo`` or ``nccl``.
- ``METALEARN_DIST_TIMEOUT``: seconds a collective waits for the other ranks before this rank
  fails with an error (default 600). A rank that raises tears its process group down, which
  makes the others' pending collectives fail at once; the timeout bounds the wait when a rank
  hangs instead. torchrun and ``torch.multiprocessing.spawn`` both stop the remaining ranks as
  soon as one exits with an error.

Why an explicit all-reduce of the meta-gradient, not ``DistributedDataParallel``. Each rank's
``meta_loss`` is the mean over its ``B / W`` tasks, so its gradient is ``g_r = (W / B) *
sum_{i in r} grad L_i``, and the average over ranks ``(1 / W) * sum_r g_r = (1 / B) * sum_i
grad L_i`` is exactly the gradient of the one-process mean over all ``B`` tasks (equal shards
are required: :func:`check_meta_batch`). The identity only uses linearity in the per-task
gradients, so it holds however those are computed:

- second-order MAML: the per-task meta-gradient is taken inside ``meta_loss`` by
  ``torch.autograd.grad`` through the inner loop (``create_graph=True``), with the backbone
  called through ``torch.func.functional_call`` on parameter dicts, and attached to the returned
  loss (``attach_gradients``);
- Reptile: the "gradient" ``theta - theta_new = eps * mean_i (theta - phi_i)`` is attached the
  same way; averaging it over ranks gives the batched Reptile direction over all tasks, and
  ``train.optimizer=sgd, lr=1`` applies exactly the Reptile update;
- ProtoNet (and the other metric learners): an ordinary mean of per-episode cross-entropies.

DDP would not see most of this. Its reducer is armed by the wrapper's own ``forward`` and fires
from hooks on the parameters' gradient accumulators; our backbones are never called through a
wrapper's ``forward`` (``functional_call`` on per-task parameter dicts, several times per task
and inner step), and ``torch.autograd.grad`` (every inner step, every per-task meta-gradient)
returns gradients without going through those accumulators. Only the last, trivial backward of
the surrogate loss reaches ``.grad``. Averaging ``.grad`` after that backward, in one flat
all-reduce, is correct for all three algorithms and costs one collective of ``4 * n_params``
bytes per meta-step. Every rank then holds bitwise the same gradient, so clipping and the
meta-optimizer (Adam's moments included) stay identical without being synchronised.

Buffers are not synchronised: metalearn's norm layers keep no running statistics and the
algorithms' buffers (e.g. Reptile's step counter) advance identically on every rank. A custom
backbone with running batch-norm statistics would keep rank 0's in the checkpoint.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from metalearn.eval import EvalResult, evaluate, mean_ci95
from metalearn.eval.metrics import pooled_mean_ci95
from metalearn.train.config import ConfigError

DEFAULT_TIMEOUT_S = 600.0
"""Default of ``METALEARN_DIST_TIMEOUT``: seconds a collective waits for the other ranks."""

BACKENDS = ("auto", "gloo", "nccl")
"""Values of ``METALEARN_DIST_BACKEND``."""


class DistributedError(ConfigError):
    """The distributed environment cannot work as given; the message names the fix."""


def check_resume_world(saved: int, world: int) -> None:
    """A run resumes with the number of processes it was trained with (each saved its own
    sampler and generator states).

    Raises:
        ConfigError: another number, with the command that matches.
    """
    if saved != world:
        how = f"torchrun --nproc-per-node {saved} ..." if saved > 1 else "without torchrun"
        raise ConfigError(f"this run was trained with {saved} processes, not {world}: resume it with "
                          f"the same number ({how})")


def check_meta_batch(meta_batch: int, world: int) -> int:
    """Tasks per rank, ``meta_batch // world``, after checking that ranks get equal shares.

    Equal shares are what makes the average of the ranks' mean gradients equal the mean over
    all tasks.

    Raises:
        DistributedError: ``meta_batch`` is not a multiple of ``world``; the message gives the
            nearest valid meta-batch sizes and the process counts that divide ``meta_batch``.

    Examples:
        >>> check_meta_batch(32, 2)
        16
    """
    if meta_batch % world == 0:
        return meta_batch // world
    lower, upper = meta_batch // world * world, (meta_batch // world + 1) * world
    sizes = f"{lower} or {upper}" if lower else f"{upper}"
    counts = [n for n in range(2, meta_batch + 1) if meta_batch % n == 0]
    runs = ""
    if counts:
        shown = [str(n) for n in counts[:8]]
        listed = ", ".join(shown[:-1]) + " or " + shown[-1] if len(shown) > 1 else shown[0]
        runs = f", or run {listed}{' ...' if len(counts) > 8 else ''} processes"
    raise DistributedError(
        f"train.meta_batch={meta_batch} is not a multiple of {world} processes (it is the total "
        f"over ranks, split equally): use --set train.meta_batch={sizes}{runs}")


def timeout_from_env() -> timedelta:
    """``METALEARN_DIST_TIMEOUT`` (seconds, default :data:`DEFAULT_TIMEOUT_S`) as a timedelta.

    Raises:
        DistributedError: not a positive number.
    """
    text = os.environ.get("METALEARN_DIST_TIMEOUT", "").strip()
    if not text:
        return timedelta(seconds=DEFAULT_TIMEOUT_S)
    try:
        seconds = float(text)
    except ValueError:
        seconds = float("nan")
    if not (math.isfinite(seconds) and seconds > 0):
        raise DistributedError(f"METALEARN_DIST_TIMEOUT={text!r} must be a positive number of "
                               f"seconds (default {DEFAULT_TIMEOUT_S:g}); unset it or set e.g. 600")
    return timedelta(seconds=seconds)


def backend_for(device: torch.device) -> str:
    """The process-group backend: ``METALEARN_DIST_BACKEND``, or NCCL on CUDA and gloo on CPU.

    Raises:
        DistributedError: an unknown backend, or NCCL without CUDA or with a CPU device.
    """
    name = os.environ.get("METALEARN_DIST_BACKEND", "auto").strip().lower() or "auto"
    if name not in BACKENDS:
        raise DistributedError(f"METALEARN_DIST_BACKEND={name!r} is not one of {', '.join(BACKENDS)}; "
                               "unset it to get NCCL on CUDA and gloo on CPU")
    if name == "auto":
        return "nccl" if device.type == "cuda" else "gloo"
    if name == "nccl" and not (torch.cuda.is_available() and dist.is_nccl_available()):
        raise DistributedError("METALEARN_DIST_BACKEND=nccl needs CUDA GPUs, but CUDA is not available "
                               "here: set METALEARN_DIST_BACKEND=gloo (or unset it) to train on the "
                               "CPU, or run on a CUDA machine")
    if name == "nccl" and device.type != "cuda":
        raise DistributedError(f"METALEARN_DIST_BACKEND=nccl reduces CUDA tensors only, but the device "
                               f"is {device}: use --device cuda (train.device=cuda or auto), or "
                               "METALEARN_DIST_BACKEND=gloo")
    return name


def _env_int(name: str, default: int | None = None) -> int:
    text = os.environ.get(name)
    if text is None or not text.strip():
        if default is None:
            raise DistributedError(f"{name} is not set but WORLD_SIZE is: launch with torchrun "
                                   "--nproc-per-node N ... (it sets RANK, LOCAL_RANK, WORLD_SIZE, "
                                   "MASTER_ADDR and MASTER_PORT), or set them on every process")
        return default
    try:
        return int(text)
    except ValueError:
        raise DistributedError(f"{name}={text!r} must be an integer; launch with torchrun, which "
                               "sets it") from None


@dataclass
class Ranks:
    """This process's place in the job.

    Attributes:
        rank: Global rank (0 is the one that logs and writes).
        world: Number of processes.
        local_rank: Rank on this machine (selects the GPU).
        owns_group: This object initialised the process group (and so destroys it).
    """

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def average_gradients(self, params: list[torch.Tensor]) -> None:
        """Replace each ``p.grad`` by its mean over ranks (missing gradients count as zero).

        One all-reduce of all gradients flattened into one buffer (see the module docstring
        for why this is the correct meta-gradient for every algorithm).
        """
        if self.world == 1:
            return
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= self.world
        offset = 0
        for p, g in zip(params, grads):
            p.grad = flat[offset:offset + g.numel()].view_as(g)
            offset += g.numel()

    def mean(self, values: torch.Tensor) -> torch.Tensor:
        """Mean over ranks of a float tensor (identity for one process)."""
        if self.world == 1:
            return values
        values = values.clone()
        dist.all_reduce(values)
        return values / self.world

    def gather(self, obj) -> list:
        """Every rank's ``obj`` (a list of ``world`` items, in rank order)."""
        if self.world == 1:
            return [obj]
        out = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        """Wait until every rank gets here (no-op for one process)."""
        if self.world > 1:
            dist.barrier()

    def evaluate(self, algorithm, episodes: Sequence, **kwargs):
        """:func:`~metalearn.eval.evaluate` with the episodes shared out over ranks (collective).

        Rank ``r`` evaluates episodes ``r, r + W, r + 2W, ...``; the per-episode values are
        gathered back into the original order, so ``per_episode``, ``mean`` and ``ci95`` are
        those of the whole episode list, on every rank. The ``extra`` metrics (macro recall,
        F1) are combined from each share's mean and interval (count, sum and sum of squares),
        equal to the one-process values up to float rounding. Only rank 0 shows progress.

        Args:
            algorithm: The algorithm, identical on every rank.
            episodes: An indexable episode list (``FixedEpisodes`` or a list), the same on
                every rank.
            **kwargs: Passed on to :func:`~metalearn.eval.evaluate` (``batch_size``, ``desc``, ...).

        Returns:
            The :class:`~metalearn.eval.EvalResult` of all episodes.
        """
        if self.world == 1:
            return evaluate(algorithm, episodes, **kwargs)
        start = time.perf_counter()
        if not self.is_main:
            kwargs["progress"] = False
        index = range(self.rank, len(episodes), self.world)
        mine = evaluate(algorithm, _Subset(episodes, index), **kwargs) if len(index) else None
        parts = self.gather(None if mine is None else mine.to_dict())
        present = [EvalResult.from_dict(p) for p in parts if p is not None]
        if not present:
            raise ValueError("no episodes to evaluate: pass a non-empty FixedEpisodes or list")
        per_episode: list[float] = [0.0] * len(episodes)
        for r, part in enumerate(parts):
            if part is not None:
                per_episode[r::self.world] = part["per_episode"]
        mean, ci = mean_ci95(per_episode)
        extra = {k: pooled_mean_ci95([(p.n, *p.extra[k]) for p in present]) for k in present[0].extra}
        return EvalResult(present[0].metric, mean, ci, len(per_episode), per_episode, extra,
                          time.perf_counter() - start)

    def close(self) -> None:
        """Destroy the process group if this object created it (idempotent)."""
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()
        self.owns_group = False


class _Subset:
    """Episodes ``episodes[i] for i in index`` as a sized iterable."""

    def __init__(self, episodes: Sequence, index: range):
        self.episodes, self.index = episodes, index

    def __len__(self) -> int:
        return len(self.index)

    def __iter__(self):
        return (self.episodes[i] for i in self.index)


def world_size() -> int:
    """``WORLD_SIZE`` of the environment (1 outside torchrun).

    Raises:
        DistributedError: not a positive integer.
    """
    world = _env_int("WORLD_SIZE", 1)
    if world < 1:
        raise DistributedError(f"WORLD_SIZE={world} must be at least 1; launch with torchrun")
    return world


def setup(device: torch.device) -> tuple[Ranks, torch.device]:
    """Join the job described by the environment, if any.

    Reads ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``, picks this rank's GPU (``cuda:LOCAL_RANK``)
    and initialises the default process group (unless the caller already did) with the
    backend of :func:`backend_for` and the timeout of :func:`timeout_from_env`. Call
    :meth:`Ranks.close` when done, also on error (``try``/``finally``).

    Args:
        device: The configured device; a CUDA device becomes ``cuda:LOCAL_RANK``.

    Returns:
        ``(ranks, device)``.

    Raises:
        DistributedError: ``WORLD_SIZE > 1`` without ``MASTER_ADDR``/``MASTER_PORT`` or
            ``RANK`` (not launched by torchrun), an invalid backend or timeout, or more local
            ranks than GPUs.
    """
    world = world_size()
    if world == 1:
        return Ranks(), device
    rank, local = _env_int("RANK"), _env_int("LOCAL_RANK", 0)
    if not 0 <= rank < world:
        raise DistributedError(f"RANK={rank} is outside 0..{world - 1} (WORLD_SIZE={world}); "
                               "launch with torchrun, which numbers the ranks")
    owns = not dist.is_initialized()
    if owns:
        missing = [v for v in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(v)]
        if missing:
            raise DistributedError(
                f"WORLD_SIZE={world} is set but {' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} "
                f"not: launch with torchrun --nproc-per-node {world} -m metalearn.cli ... (it sets "
                "them), or set MASTER_ADDR and MASTER_PORT (the address and a free port of rank 0) "
                "on every process; unset WORLD_SIZE to run a single process")
        backend, timeout = backend_for(device), timeout_from_env()
    if device.type == "cuda":
        if local >= torch.cuda.device_count():
            raise DistributedError(f"LOCAL_RANK={local} but only {torch.cuda.device_count()} GPUs are "
                                   "visible: start at most that many processes per node "
                                   "(--nproc-per-node)")
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if owns:
        dist.init_process_group(backend, timeout=timeout, rank=rank, world_size=world)
    return Ranks(rank, world, local, owns), device
