"""torchrun-native data parallelism over tasks: each rank samples its own tasks, meta-gradients
are averaged with an explicit all-reduce, and only rank 0 logs and writes files.

Launch the same command on every rank, e.g. ``torchrun --nproc_per_node 2 -m metalearn.cli train
--preset maml-omniglot-5w1s``; ``train.meta_batch`` is the total over ranks. All ranks start from
identical weights (the same seed) and stay identical because they apply the same averaged
gradient. Without ``WORLD_SIZE`` in the environment (or with 1) nothing here communicates.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


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
        """Replace each ``p.grad`` by its mean over ranks (missing gradients count as zero)."""
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

    def close(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()


def setup(device: torch.device) -> tuple[Ranks, torch.device]:
    """Read ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``, initialise the process group when needed
    (NCCL on CUDA, gloo on CPU) and pick this rank's GPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Ranks(), device
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Ranks(rank, world, local, owns), device
