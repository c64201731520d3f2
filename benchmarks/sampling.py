"""Episode sampling speed on Omniglot (issue: foundation), and the cached load time.

Measures, single process, from the decoded cache:
- episodes per second for EpisodeBatches of 32 tasks, 5-way 1-shot 15-query and 20-way 5-shot
  15-query, on the Vinyals train split (4112 classes, rotations included), median of rounds;
- seconds for a second (cached) load of the whole of Omniglot (both Lake parts).
Target: >= 20,000 episodes/s at 5w1s15q, so sampling stays under 5% of a training step.

Usage: python benchmarks/sampling.py --data-root ../shared/data [--rounds 30]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import record  # noqa: E402

from metalearn.data import EpisodeSampler, Omniglot  # noqa: E402


def episodes_per_second(dataset, n_way, k_shot, n_query, tasks, rounds, batches_per_round):
    sampler = EpisodeSampler(dataset, n_way, k_shot, n_query, seed=0)
    sampler.sample_batch(tasks)  # warm up
    rates = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(batches_per_round):
            sampler.sample_batch(tasks)
        rates.append(tasks * batches_per_round / (time.perf_counter() - start))
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", required=True, help="folder holding omniglot/")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--tasks", type=int, default=32)
    args = parser.parse_args()
    torch.set_num_threads(1)  # single process, single thread: the sampler's own cost

    Omniglot("all", root=args.data_root)  # builds the cache if needed
    start = time.perf_counter()
    Omniglot("all", root=args.data_root)
    record("omniglot_cached_load_all", time.perf_counter() - start, "s", higher_is_better=False,
           extra={"target": "< 2 s"})

    train = Omniglot("vinyals-train", root=args.data_root)
    for n_way, k_shot, n_query, per_round in [(5, 1, 15, 20), (20, 5, 15, 2)]:
        rate = episodes_per_second(train, n_way, k_shot, n_query, args.tasks, args.rounds, per_round)
        record(f"sampling_omniglot_{n_way}w{k_shot}s{n_query}q_batch{args.tasks}", rate, "episodes/s",
               extra={"threads": 1, "split": "vinyals-train",
                      **({"target": ">= 20000"} if (n_way, k_shot) == (5, 1) else {})})


if __name__ == "__main__":
    main()
