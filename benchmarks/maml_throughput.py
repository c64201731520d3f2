"""MAML meta-training throughput: metalearn vs learn2learn 0.2.0, interleaved (issue 3).

Setting (the MAML paper's Omniglot one, synthetic 1x28x28 data): Conv4 (64 filters, batch
norm with batch statistics, ReLU, 2x2 max-pool), 5-way 1-shot, 15 queries per class,
meta-batch 32, 1 inner step with lr 0.4, Adam 1e-3; second order and first order. Also 20-way
1-shot, meta-batch 16, 5 inner steps (second order). Both libraries train the identical network.

Each measurement is a fresh worker process that builds the model, runs ``--warmup`` meta-batches
and times ``--batches`` more (tasks/s), and reports its peak resident memory. Workers of the
two libraries alternate within each round; the figures are medians over ``--rounds``. Variants:

- ``l2l-plain``: learn2learn as a plain script in the environment as it is (how its users run it).
- ``metalearn-entry``: metalearn the way its ``metalearn`` entry point runs, i.e. after
  :func:`metalearn._runtime.reexec_with_tuned_allocator` (glibc malloc tunables).
- ``l2l-tuned`` / ``metalearn-plain``: each library in the other's environment, so both pairs
  (plain/plain and tuned/tuned) compare the code under an identical process environment.

All workers use the interpreter of ``benchmarks/.venv-peers`` (torch 2.13.0 CPU, learn2learn
0.2.0; see benchmarks/peers/README.md), with the repository root on ``sys.path`` for metalearn.
Also measured: the roofline, Conv4 forward+backward on the same images (32 x 80) in one batch.

Usage: python benchmarks/maml_throughput.py [--rounds 3] [--only so,fo,20w]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PEERS_PY = HERE / ".venv-peers" / "bin" / "python"

SETTINGS = {
    "so": dict(n_way=5, tasks=32, steps=1, first_order=False, warmup=1, batches=3),
    "fo": dict(n_way=5, tasks=32, steps=1, first_order=True, warmup=1, batches=3),
    "20w": dict(n_way=20, tasks=16, steps=5, first_order=False, warmup=1, batches=2),
}
LABEL = {"so": "5w1s_second_order", "fo": "5w1s_first_order", "20w": "20w1s_5steps_second_order"}


# ----------------------------------------------------------------------------- workers


def _data(torch, n_way, tasks, seed=0):
    g = torch.Generator().manual_seed(seed)
    sx = torch.rand(tasks, n_way, 1, 28, 28, generator=g)
    qx = torch.rand(tasks, n_way * 15, 1, 28, 28, generator=g)
    sy = torch.arange(n_way).repeat(tasks, 1)
    qy = torch.arange(n_way).repeat_interleave(15).repeat(tasks, 1)
    return sx, sy, qx, qy


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker_metalearn(cfg: dict) -> dict:
    if cfg["entry"]:
        from metalearn._runtime import reexec_with_tuned_allocator

        reexec_with_tuned_allocator()
    import torch

    from metalearn.algorithms import MAML, MAMLConfig
    from metalearn.models import Conv4
    from metalearn.types import EpisodeBatch

    torch.manual_seed(0)
    sx, sy, qx, qy = _data(torch, cfg["n_way"], cfg["tasks"])
    batch = EpisodeBatch(sx, sy, qx, qy)
    algo = MAML(Conv4(1, 64, out_features=cfg["n_way"]),
                MAMLConfig(inner_lr=0.4, inner_steps=cfg["steps"], first_order=cfg["first_order"]))
    opt = torch.optim.Adam(algo.parameters(), lr=1e-3)

    def step():
        opt.zero_grad()
        loss, _ = algo.meta_loss(batch)
        loss.backward()
        opt.step()

    return _time(step, cfg)


def worker_l2l(cfg: dict) -> dict:
    sys.path.insert(0, str(HERE / "peers"))
    from shim import import_learn2learn

    l2l = import_learn2learn()
    import torch
    import torch.nn.functional as F
    from torch import nn

    torch.manual_seed(0)
    sx, sy, qx, qy = _data(torch, cfg["n_way"], cfg["tasks"])

    def block(c_in):
        return [nn.Conv2d(c_in, 64, 3, padding=1), nn.BatchNorm2d(64, track_running_stats=False),
                nn.ReLU(), nn.MaxPool2d(2)]

    model = nn.Sequential(*block(1), *block(64), *block(64), *block(64), nn.Flatten(),
                          nn.Linear(64, cfg["n_way"]))
    maml = l2l.algorithms.MAML(model, lr=0.4, first_order=cfg["first_order"])
    opt = torch.optim.Adam(maml.parameters(), lr=1e-3)
    n = cfg["tasks"]

    def step():  # learn2learn's documented loop (README / examples/vision/maml_omniglot.py)
        opt.zero_grad()
        for i in range(n):
            learner = maml.clone()
            for _ in range(cfg["steps"]):
                learner.adapt(F.cross_entropy(learner(sx[i]), sy[i]))
            (F.cross_entropy(learner(qx[i]), qy[i]) / n).backward()
        opt.step()

    return _time(step, cfg)


def worker_roofline(cfg: dict) -> dict:
    from metalearn._runtime import reexec_with_tuned_allocator

    reexec_with_tuned_allocator()
    import torch

    from metalearn.models import Conv4

    torch.manual_seed(0)
    n_images = cfg["tasks"] * (cfg["n_way"] + cfg["n_way"] * 15)
    x = torch.rand(n_images, 1, 28, 28)
    y = torch.arange(cfg["n_way"]).repeat(n_images // cfg["n_way"] + 1)[:n_images]
    net = Conv4(1, 64, out_features=cfg["n_way"])

    def step():
        loss = torch.nn.functional.cross_entropy(net(x), y)
        torch.autograd.grad(loss, list(net.parameters()))

    return _time(step, cfg)


def _time(step, cfg: dict) -> dict:
    for _ in range(cfg["warmup"]):
        step()
    start = time.perf_counter()
    for _ in range(cfg["batches"]):
        step()
    seconds = time.perf_counter() - start
    return {"tasks_per_s": cfg["tasks"] * cfg["batches"] / seconds, "peak_mib": _peak_mib(),
            "glibc_tunables": os.environ.get("GLIBC_TUNABLES", "")}


# ----------------------------------------------------------------------------- driver


def run_worker(kind: str, cfg: dict, tuned: bool) -> dict:
    from metalearn._runtime import tuned_environment

    env = {k: v for k, v in os.environ.items()
           if k not in ("GLIBC_TUNABLES", "METALEARN_TUNED_RUNTIME", "METALEARN_NO_TUNE")}
    if tuned:
        env = tuned_environment(env)
    if kind == "metalearn" and not cfg.get("entry"):
        env["METALEARN_NO_TUNE"] = "1"
    env["PYTHONPATH"] = str(ROOT)
    cmd = [str(PEERS_PY), str(Path(__file__).resolve()), "--worker", kind, "--cfg", json.dumps(cfg)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        raise RuntimeError(f"worker {kind} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", default="so,fo,20w", help="settings: so, fo, 20w")
    parser.add_argument("--no-roofline", action="store_true")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--cfg", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        fn = {"metalearn": worker_metalearn, "l2l": worker_l2l, "roofline": worker_roofline}
        print(json.dumps(fn[args.worker](json.loads(args.cfg))))
        return
    if not PEERS_PY.exists():
        sys.exit(f"{PEERS_PY} is missing: build it with benchmarks/peers/setup.sh")
    sys.path.insert(0, str(HERE))
    from _record import record

    variants = [("l2l-plain", "l2l", False, False), ("metalearn-entry", "metalearn", True, True),
                ("l2l-tuned", "l2l", True, False), ("metalearn-plain", "metalearn", False, False)]
    for key in args.only.split(","):
        base = SETTINGS[key]
        runs: dict[str, list[dict]] = {name: [] for name, *_ in variants}
        for r in range(args.rounds):
            order = variants if r % 2 == 0 else variants[::-1]
            for name, kind, tuned, entry in order:
                res = run_worker(kind, dict(base, entry=entry), tuned)
                runs[name].append(res)
                print(f"# {key} round {r} {name}: {res['tasks_per_s']:.2f} tasks/s, "
                      f"peak {res['peak_mib']:.0f} MiB", file=sys.stderr, flush=True)
        med = {n: statistics.median(x["tasks_per_s"] for x in v) for n, v in runs.items()}
        mem = {n: statistics.median(x["peak_mib"] for x in v) for n, v in runs.items()}
        extra = {"setting": base, "rounds": args.rounds,
                 "all_tasks_per_s": {n: [round(x["tasks_per_s"], 3) for x in v] for n, v in runs.items()}}
        label = LABEL[key]
        record(f"maml_{label}_tasks_per_s_entry_vs_l2l_script", med["metalearn-entry"], "tasks/s",
               baseline="learn2learn 0.2.0 (plain script)", baseline_value=med["l2l-plain"], extra=extra)
        record(f"maml_{label}_tasks_per_s_same_env_tuned", med["metalearn-entry"], "tasks/s",
               baseline="learn2learn 0.2.0 (same tuned env)", baseline_value=med["l2l-tuned"], extra=extra)
        record(f"maml_{label}_tasks_per_s_same_env_plain", med["metalearn-plain"], "tasks/s",
               baseline="learn2learn 0.2.0 (same plain env)", baseline_value=med["l2l-plain"], extra=extra)
        record(f"maml_{label}_peak_rss_entry_vs_l2l_script", mem["metalearn-entry"], "MiB",
               baseline="learn2learn 0.2.0 (plain script)", baseline_value=mem["l2l-plain"],
               higher_is_better=False)
        record(f"maml_{label}_peak_rss_same_env_plain", mem["metalearn-plain"], "MiB",
               baseline="learn2learn 0.2.0 (same plain env)", baseline_value=mem["l2l-plain"],
               higher_is_better=False)
        if not args.no_roofline and key != "fo":
            roof = [run_worker("roofline", dict(base, batches=3), True)["tasks_per_s"]
                    for _ in range(args.rounds)]
            record(f"maml_{label}_roofline_conv4_fwd_bwd_one_batch", statistics.median(roof),
                   "tasks/s-equivalent", extra={
                       "what": "Conv4 forward+backward of all the setting's images (tasks x "
                               "(support + query)) in one batch, tuned allocator",
                       "metalearn_entry_fraction_of_roofline":
                           round(med["metalearn-entry"] / statistics.median(roof), 4)})


if __name__ == "__main__":
    main()
