"""Time learn2learn's own ``examples/rl/maml_trpo.py`` (run in the peers venv; see setup_rl.sh).

Calls the example's ``main`` unchanged on its 2-D navigation task (``Particles2D-v1``: goal ~
U[-0.5, 0.5]^2, velocity clipped to 0.1, reward -distance, horizon 100) with the MAML paper's
settings, and records when each iteration starts: ``main`` prints ``Iteration i`` once per
iteration, after the rollouts of task data and before the TRPO step, so the time between two
such lines is one whole meta-iteration (TRPO step of one, rollouts of the next). Prints one JSON
object: the median of those intervals after the first (warm-up) and all of them.

Usage (what benchmarks/rl_speed.py runs):
    PYTHONPATH=benchmarks/.venv-peers/rl-site OMP_NUM_THREADS=1 benchmarks/.venv-peers/bin/python \\
        benchmarks/peers/l2l_maml_trpo.py --examples benchmarks/.venv-peers/l2l-examples/rl --iters 3
"""

from __future__ import annotations

import argparse
import builtins
import json
import os
import statistics
import sys
import time
import warnings
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--examples", type=Path, required=True, help="learn2learn's examples/rl folder")
    p.add_argument("--iters", type=int, default=3, help="timed meta-iterations, after one warm-up")
    p.add_argument("--meta-bsz", type=int, default=20)
    p.add_argument("--adapt-bsz", type=int, default=20)
    p.add_argument("--workers", type=int, default=1, help="the example's environment processes")
    p.add_argument("--json", type=Path, default=None,
                   help="write the JSON object to this file instead of stdout (what rl_speed.py does: "
                        "the example's environment processes inherit stdout and may outlive main)")
    args = p.parse_args()
    warnings.filterwarnings("ignore")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.path.insert(0, str(args.examples.resolve()))
    from shim import import_learn2learn

    import_learn2learn()
    import torch

    torch.set_num_threads(1)
    import maml_trpo

    starts: list[float] = []
    real_print = builtins.print

    def stamp(*a, **k):  # the example's own progress lines, timed; kept off stdout
        if a and a[0] == "\nIteration":
            starts.append(time.perf_counter())

    maml_trpo.print = stamp
    try:
        maml_trpo.main(env_name="Particles2D-v1", adapt_lr=0.1, meta_lr=1.0, adapt_steps=1,
                       num_iterations=args.iters + 2, meta_bsz=args.meta_bsz, adapt_bsz=args.adapt_bsz,
                       tau=1.0, gamma=0.99, seed=42, num_workers=args.workers, cuda=0)
    finally:
        maml_trpo.print = real_print
    intervals = [b - a for a, b in zip(starts[:-1], starts[1:])]
    timed = intervals[1:]  # the first interval warms up
    line = json.dumps({"s_per_iter": statistics.median(timed), "intervals": intervals,
                       "meta_bsz": args.meta_bsz, "adapt_bsz": args.adapt_bsz, "horizon": 100,
                       "env": "Particles2D-v1", "policy": "DiagNormalPolicy 100-100 ReLU (the example's)",
                       "workers": args.workers, "torch_threads": torch.get_num_threads()})
    if args.json is None:
        real_print(line)
    else:
        args.json.write_text(line + "\n")
    # The example leaves a thread waiting behind it (the process sat in a futex wait for an hour
    # after main returned): end here, once the figures are out.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
