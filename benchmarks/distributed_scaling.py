"""Scaling out on one machine: 1 process x 2 threads vs 2 gloo processes x 1 thread (issue 6).

Same total meta-batch either way. The measured step is the one of ``metalearn train``: sample
this rank's share of the tasks (``EpisodeSampler``), ``meta_loss``, backward, average the
meta-gradient over ranks (``Ranks.average_gradients``: one flat all-reduce), Adam step.

Settings (synthetic data: uniform random 1x28x28 images, 50 classes x 20, so Omniglot-shaped
but not Omniglot):

- ``maml``: second-order MAML, Conv4 (64 filters, batch statistics), 5-way 1-shot, 15 queries
  per class, 1 inner step at 0.4, meta-batch 32 (16 per rank with 2 processes), Adam 1e-3;
- ``protonet``: ProtoNet on the same Conv4 without head, 5-way 1-shot, 15 queries, 32 episodes
  per meta-step.

Each measurement starts fresh worker processes (``torch.multiprocessing.spawn``, gloo on
localhost, the tuned glibc allocator of the ``metalearn`` command for both), runs ``--warmup``
meta-steps, then times ``--steps`` meta-steps between two barriers. The layouts (and, for
context, 1 process x 1 thread) rotate within each round; reported figures are the best of
``--rounds`` (other jobs only ever slow a measurement down). The 1-minute load average is recorded: other jobs on the machine make two
threads of one process wait for each other far more than two single-threaded processes. The workers also time the
all-reduce of a flat buffer of the model's size.

Also printed and recorded: the parameter counts of Conv4 (Omniglot 28x28 5-way head; 84x84
32-filter 5-way head) and ResNet-12 (5-way head), and the bytes of one meta-gradient all-reduce
(4 bytes per parameter; a ring all-reduce sends and receives ``2 (N-1)/N`` times that per rank).

Usage (hold the heavy lock and pause the background trainings, see common.md):
    python benchmarks/distributed_scaling.py [--rounds 2] [--only maml,protonet] [--counts-only]
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from _record import record  # noqa: E402

SETTINGS = {
    "maml": dict(algorithm="maml", meta_batch=32, warmup=1, steps=6),
    "protonet": dict(algorithm="protonet", meta_batch=32, warmup=2, steps=12),
}


def parameter_counts() -> dict[str, int]:
    """Parameters of the standard backbones with a 5-way head (what one all-reduce carries)."""
    from metalearn.models import Conv4, ResNet12

    nets = {
        "conv4_omniglot_28x28_64f_5way": Conv4(1, 64, out_features=5, image_size=28),
        "conv4_miniimagenet_84x84_32f_5way": Conv4(3, 32, out_features=5, image_size=84),
        "resnet12_64-160-320-640_5way": ResNet12(3, out_features=5),
    }
    return {name: sum(p.numel() for p in net.parameters()) for name, net in nets.items()}


def _build(setting: dict):
    import torch

    from metalearn.algorithms import MAML, MAMLConfig, ProtoNet
    from metalearn.models import Conv4

    torch.manual_seed(0)
    if setting["algorithm"] == "maml":
        return MAML(Conv4(1, 64, out_features=5), MAMLConfig(inner_lr=0.4, inner_steps=1))
    return ProtoNet(Conv4(1, 64))


def _worker(rank: int, world: int, port: int, threads: int, setting: dict, out: str) -> None:
    import torch

    from metalearn.data import ArrayDataset
    from metalearn.data.samplers import EpisodeSampler
    from metalearn.train.distributed import setup

    if world > 1:
        os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                          MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(threads)
    faulthandler.enable()  # a native crash of a worker shows where it happened
    ranks, _ = setup(torch.device("cpu"))
    try:
        g = torch.Generator().manual_seed(0)
        images = torch.rand(1000, 1, 28, 28, generator=g)
        sampler = EpisodeSampler(ArrayDataset(images, [i // 20 for i in range(1000)]), 5, 1, 15,
                                 seed=1, rank=ranks.rank)
        algo = _build(setting)
        params = [p for p in algo.parameters() if p.requires_grad]
        opt = torch.optim.Adam(params, lr=1e-3)
        per_rank = setting["meta_batch"] // ranks.world

        def step() -> None:
            loss, _ = algo.meta_loss(sampler.sample_batch(per_rank))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            ranks.average_gradients(params)
            opt.step()

        for _ in range(setting["warmup"]):
            step()
        ranks.barrier()
        start = time.perf_counter()
        for _ in range(setting["steps"]):
            step()
        ranks.barrier()
        seconds = time.perf_counter() - start
        reduce_ms = None
        if ranks.world > 1:
            import torch.distributed as dist

            flat = torch.zeros(sum(p.numel() for p in params))
            dist.all_reduce(flat)
            ranks.barrier()
            t0 = time.perf_counter()
            for _ in range(20):
                dist.all_reduce(flat)
            reduce_ms = 1000 * (time.perf_counter() - t0) / 20
        if ranks.is_main:
            Path(out).write_text(json.dumps({"seconds": seconds, "tasks": setting["meta_batch"] * setting["steps"],
                                             "allreduce_ms": reduce_ms}))
        ranks.barrier()  # leave together: a rank exiting while another still works has aborted
    finally:
        ranks.close()


def measure(setting: dict, world: int, threads: int, attempts: int = 3) -> dict:
    """Tasks per second of ``world`` fresh processes with ``threads`` threads each."""
    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        try:
            mp.spawn(_worker, args=(world, port, threads, setting, str(out)), nprocs=world, join=True)
        except mp.ProcessExitedException as e:
            # seen twice in ~20 two-process runs on a loaded machine: a rank aborted ("terminate
            # called without an active exception") after rank 0 had timed and written its result;
            # keep a complete result (the timing is done) and say so, otherwise measure again
            if not out.exists():
                if attempts <= 1:
                    raise
                print(f"# worker failed before its result ({e}); measuring again", file=sys.stderr)
                return measure(setting, world, threads, attempts - 1)
            print(f"# a worker failed after the timed steps ({e}); result kept", file=sys.stderr)
        result = json.loads(out.read_text())
    result["tasks_per_s"] = result["tasks"] / result["seconds"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--only", default="maml,protonet", help="comma-separated settings")
    parser.add_argument("--counts-only", action="store_true", help="parameter counts and bytes only")
    parser.add_argument("--steps", type=int, help="timed meta-steps per measurement (default per setting)")
    parser.add_argument("--no-record", action="store_true", help="print, do not append to results.jsonl")
    args = parser.parse_args()

    emit = (lambda name, value, unit, **kw: print(json.dumps({"name": name, "value": value, **kw}))) \
        if args.no_record else record
    for name, n in parameter_counts().items():
        mb = 4 * n / 1e6
        emit(f"distributed_allreduce_{name}", mb, "MB per meta-step", higher_is_better=False,
               extra={"params": n, "bytes": 4 * n,
                      "ring_sent_per_rank_MB": {str(k): round(2 * (k - 1) / k * mb, 3) for k in (2, 8, 16)}})
    if args.counts_only:
        return

    from metalearn._runtime import tuned_environment

    os.environ.update(tuned_environment())  # spawned workers start with the tuned allocator
    # 1 process x 1 thread is context: it tells whether the second thread helps at all (on a
    # loaded machine two OpenMP threads can be slower than one)
    layouts = {"1proc_x2threads": (1, 2), "2procs_x1thread": (2, 1), "1proc_x1thread": (1, 1)}
    for key in args.only.split(","):
        setting = dict(SETTINGS[key], **({"steps": args.steps} if args.steps else {}))
        runs: dict[str, list[dict]] = {k: [] for k in layouts}
        for r in range(args.rounds):
            order = list(layouts)[r % len(layouts):] + list(layouts)[:r % len(layouts)]
            for layout in order:
                runs[layout].append(measure(setting, *layouts[layout]))
                print(f"# {key} round {r + 1} {layout}: {runs[layout][-1]['tasks_per_s']:.2f} tasks/s "
                      f"(load {os.getloadavg()[0]:.1f})",
                      file=sys.stderr, flush=True)
        # best of the rounds: jobs of other users slow a measurement down, never up (two
        # threads of one process suffer most); per-round values are recorded too
        one, two, single = (max(x["tasks_per_s"] for x in runs[k])
                            for k in ("1proc_x2threads", "2procs_x1thread", "1proc_x1thread"))
        unit = "tasks/s" if key == "maml" else "episodes/s"
        label = {"maml": "maml2_conv4_5w1s_mb32", "protonet": "protonet_conv4_5w1s_32ep"}[key]
        emit(f"distributed_scaling_{label}_2procs_x1thread", two, unit,
               baseline="1 process x 2 threads (same meta-batch, same machine)", baseline_value=one,
               extra={"rounds": args.rounds, "statistic": "best of rounds", "data": "synthetic 1x28x28",
                      "per_round": {k: [round(x["tasks_per_s"], 3) for x in v] for k, v in runs.items()},
                      "allreduce_ms": statistics.median(x["allreduce_ms"] for x in runs["2procs_x1thread"]),
                      "load_average_1min_at_end": round(os.getloadavg()[0], 2),
                      "setting": setting})
        emit(f"distributed_scaling_{label}_1proc_x1thread", single, unit,
             baseline="1 process x 2 threads (same meta-batch, same machine)", baseline_value=one,
             extra={"rounds": args.rounds, "statistic": "best of rounds", "data": "synthetic 1x28x28",
                    "setting": setting})


if __name__ == "__main__":
    main()
