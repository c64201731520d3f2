"""ProtoNet training throughput (episodes/s) vs easyfsl 1.5 PrototypicalNetworks, same architecture.

Settings (issue 4): Conv4 (64 filters, batch norm with batch statistics) on Omniglot-shaped
images (1x28x28), 5-way 1-shot 15-query and 60-way 5-shot 5-query; one episode per Adam step.
A training step is: sample an episode, loss, backward, Adam step.

- metalearn: ``EpisodeSampler.sample_batch(1)`` (timed, inside the step), ``ProtoNet.meta_loss``,
  Adam from ``meta_optimizer`` (fused), as the ``metalearn train`` loop runs it (ProtoNet
  itself feeds image batches to the backbone channels-last on CPU; the model is not converted).
- easyfsl: ``PrototypicalNetworks(backbone)``: ``process_support_set`` + ``forward`` +
  cross-entropy, as in its README; its episodes are sampled beforehand (not timed), so its
  data path costs it nothing here. Its backbone is the same Conv4 architecture built from
  ``torch.nn`` layers (conv, ``BatchNorm2d``, ReLU, max-pool), as its users build it: easyfsl
  ships no Conv4. (Runs before 2026-11-22 06:00 gave easyfsl metalearn's own Conv4, so they
  compared the ProtoNet code around one shared backbone implementation.)

Two comparisons, each interleaved round by round (medians over rounds):
1. *users' way*: each library in its own process as its users run it: easyfsl in
   benchmarks/.venv-peers with the default environment; metalearn in the main venv with the
   tuned glibc allocator that the ``metalearn`` command sets (metalearn._runtime). Target >= 2x.
2. *same process*: both in one process of the peers venv, identical environment (default
   allocator), alternating blocks of steps. Target >= 1.5x.
Also the sampler's share of a metalearn step (target <= 5%).

Usage: python benchmarks/protonet_throughput.py [--data-root ../shared/data] [--rounds 3]
(hold the heavy lock: flock /tmp/metalearn-heavy.lock python benchmarks/protonet_throughput.py)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PEERS_PY = HERE / ".venv-peers" / "bin" / "python"
SETTINGS = {"5w1s": (5, 1, 15), "60w5s": (60, 5, 5)}
STEPS = {"5w1s": (5, 20), "60w5s": (2, 5)}  # (warm-up, timed) steps per block


# ----------------------------------------------------------------------------- worker side
def _dataset(data_root: str | None):
    import numpy as np

    from metalearn.data import ArrayDataset, Omniglot

    if data_root and (Path(data_root) / "omniglot").exists():
        return Omniglot("vinyals-train", root=data_root)
    rng = np.random.default_rng(0)  # Omniglot-shaped stand-in: 4112 classes x 20 images, uint8
    return ArrayDataset(rng.integers(0, 256, (4112 * 20, 1, 28, 28), dtype=np.uint8), np.repeat(np.arange(4112), 20))


def _backbone():
    import torch

    from metalearn.models import Conv4

    torch.manual_seed(0)
    return Conv4(in_channels=1, hidden=64, norm="transductive")


def _torch_conv4():
    """The same Conv4 written with torch.nn layers, as easyfsl's users write it (easyfsl ships
    no Conv4; its README passes any ``nn.Module`` backbone). In training mode ``BatchNorm2d``
    normalises with the batch statistics, the same function as metalearn's ``transductive``."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    layers = []
    for c_in in (1, 64, 64, 64):
        layers += [nn.Conv2d(c_in, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2)]
    return nn.Sequential(*layers, nn.Flatten())


class _Metalearn:
    def __init__(self, dataset, way, shot, query):

        from metalearn.algorithms import ProtoNet
        from metalearn.data import EpisodeSampler
        from metalearn.optim import meta_optimizer

        self.algo = ProtoNet(_backbone())  # inputs go channels-last inside metalearn on CPU
        self.opt = meta_optimizer(list(self.algo.parameters()), "adam", lr=1e-3)  # as `metalearn train`
        self.sampler = EpisodeSampler(dataset, way, shot, query, seed=0)
        self.sample_s: list[float] = []

    def step(self):
        t = time.perf_counter()
        batch = self.sampler.sample_batch(1)
        self.sample_s.append(time.perf_counter() - t)
        loss, _ = self.algo.meta_loss(batch)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()


class _Easyfsl:
    def __init__(self, dataset, way, shot, query):
        import torch

        sys.path.insert(0, str(HERE / "peers"))
        from shim import import_easyfsl

        from metalearn.data import EpisodeSampler

        easyfsl = import_easyfsl()
        self.model = easyfsl.methods.PrototypicalNetworks(_torch_conv4())
        self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        sampler = EpisodeSampler(dataset, way, shot, query, seed=0)
        self.episodes = [sampler.sample() for _ in range(8)]
        self.i = 0
        self.F = torch.nn.functional

    def step(self):
        ep = self.episodes[self.i % len(self.episodes)]
        self.i += 1
        self.model.process_support_set(ep.support_x, ep.support_y)
        loss = self.F.cross_entropy(self.model(ep.query_x), ep.query_y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()


def _block(runner, warmup: int, steps: int) -> float:
    """Episodes per second: median of per-step times after ``warmup`` steps."""
    for _ in range(warmup):
        runner.step()
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        runner.step()
        times.append(time.perf_counter() - t)
    return 1.0 / statistics.median(times)


def worker(args) -> None:
    sys.path.insert(0, str(ROOT))
    dataset = _dataset(args.data_root)
    way, shot, query = SETTINGS[args.setting]
    warmup, steps = STEPS[args.setting]
    libs = args.worker.split(",")
    runners = {"metalearn": _Metalearn, "easyfsl": _Easyfsl}
    made = {lib: runners[lib](dataset, way, shot, query) for lib in libs}
    out: dict = {lib: [] for lib in libs}
    for _ in range(args.blocks):  # alternate libraries block by block (same-process comparison)
        for lib in libs:
            out[lib].append(_block(made[lib], warmup, steps))
    if "metalearn" in made:
        m = made["metalearn"]
        n = warmup + steps
        sample = [statistics.median(m.sample_s[i * n + warmup:(i + 1) * n]) for i in range(args.blocks)]
        out["sampler_s"] = sample
    print("RESULT " + json.dumps(out), flush=True)


# ----------------------------------------------------------------------------- orchestrator
def run_worker(python: Path, libs: str, setting: str, env_extra: dict, data_root, blocks: int = 1) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    env.update(env_extra)
    cmd = [str(python), str(Path(__file__).resolve()), "--worker", libs, "--setting", setting,
           "--blocks", str(blocks)]
    if data_root:
        cmd += ["--data-root", data_root]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode or not lines:
        raise RuntimeError(f"worker {libs} {setting} failed:\n{proc.stdout}\n{proc.stderr}")
    return json.loads(lines[-1][len("RESULT "):])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", default=os.environ.get("METALEARN_DATA"))
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--settings", default="5w1s,60w5s")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--setting", default=None, help=argparse.SUPPRESS)
    p.add_argument("--blocks", type=int, default=1, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker(args)
    if not PEERS_PY.exists():
        sys.exit(f"{PEERS_PY} is missing: build it with benchmarks/peers/setup.sh")
    sys.path.insert(0, str(HERE))
    from _record import record

    from metalearn._runtime import tuned_environment  # what the `metalearn` command re-execs with

    tuned = {"GLIBC_TUNABLES": tuned_environment({})["GLIBC_TUNABLES"]}

    main_py = Path(sys.executable)
    for setting in args.settings.split(","):
        users = {"metalearn": [], "easyfsl": []}
        sampler = []
        for _ in range(args.rounds):  # 1. users' way, one process per library, interleaved
            e = run_worker(PEERS_PY, "easyfsl", setting, {}, args.data_root)
            m = run_worker(main_py, "metalearn", setting, tuned, args.data_root)
            users["easyfsl"] += e["easyfsl"]
            users["metalearn"] += m["metalearn"]
            sampler += [s * r for s, r in zip(m["sampler_s"], m["metalearn"])]  # share of a step
        same = run_worker(PEERS_PY, "easyfsl,metalearn", setting, {}, args.data_root, blocks=args.rounds)
        med = {k: statistics.median(v) for k, v in users.items()}
        extra = {"setting": setting, "rounds": args.rounds, "per_round": users}
        record(f"protonet_train_{setting}_users_way", med["metalearn"], "episodes/s",
               baseline="easyfsl 1.5 PrototypicalNetworks, torch.nn Conv4 (own venv, default allocator)",
               baseline_value=med["easyfsl"], extra=extra)
        s_med = {k: statistics.median(same[k]) for k in ("metalearn", "easyfsl")}
        record(f"protonet_train_{setting}_same_process", s_med["metalearn"], "episodes/s",
               baseline="easyfsl 1.5 PrototypicalNetworks, torch.nn Conv4 (same process, default allocator)",
               baseline_value=s_med["easyfsl"],
               extra={"setting": setting, "rounds": args.rounds,
                      "per_round": {k: same[k] for k in ("metalearn", "easyfsl")}})
        record(f"protonet_sampler_share_{setting}", 100 * statistics.median(sampler), "% of step",
               higher_is_better=False, extra={"setting": setting, "target": "<= 5"})


if __name__ == "__main__":
    main()
