"""A tour of the data layer: ``python -m metalearn.demo [--data-root DIR] [--out DIR]``.

Samples regression tasks from the sinusoid family (embedded, no download) and, when Omniglot is
found under the data root, N-way K-shot episodes from its Vinyals split; prints their shapes and
label sets and saves a PNG grid of one Omniglot episode.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from metalearn.data import EpisodeSampler, FixedEpisodes, Omniglot, SinusoidTasks, data_root
from metalearn.data.omniglot import locate_part
from metalearn.data.visualize import save_episode_grid


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--data-root", default=None, help="folder holding omniglot/ (default: $METALEARN_DATA or ~/.cache/metalearn)")
    parser.add_argument("--out", default="demo_out", help="where to write the episode picture")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    sampler = EpisodeSampler(SinusoidTasks(), None, k_shot=10, n_query=10, seed=args.seed)
    batch = sampler.sample_batch(4)
    print(f"sinusoid tasks: support_x {tuple(batch.support_x.shape)}, query_y {tuple(batch.query_y.shape)}")
    for i, (amp, phase) in enumerate(batch.task_params.tolist()):
        print(f"  task {i}: y = {amp:.2f} sin(x - {phase:.2f})")

    root = data_root(args.data_root)
    if locate_part(root, "images_background") is None or locate_part(root, "images_evaluation") is None:
        print(f"no Omniglot under {root}: pass --data-root DIR (the folder holding omniglot/) "
              "or set METALEARN_DATA to see image episodes")
        return 0
    start = time.perf_counter()
    train = Omniglot("vinyals-train", root=root, download=False)
    test = Omniglot("vinyals-test", root=root, download=False)
    print(f"Omniglot loaded in {time.perf_counter() - start:.1f}s: train {train}, test {test}")
    episodes = EpisodeSampler(train, n_way=5, k_shot=1, n_query=15, seed=args.seed).sample_batch(32)
    print(f"5-way 1-shot batch: support_x {tuple(episodes.support_x.shape)}, "
          f"query_x {tuple(episodes.query_x.shape)}")
    ep = episodes[0]
    print(f"  episode 0 labels {sorted(set(ep.support_y.tolist()))} are classes "
          f"{[train.class_names[c] for c in ep.class_ids.tolist()]}")
    fixed = FixedEpisodes(test, 5, 1, 15, n_episodes=600, seed=0)
    print(f"fixed evaluation set: {fixed.describe()}")
    path = save_episode_grid(ep, Path(args.out) / "omniglot_episode.png", scale=3)
    print(f"episode picture (support | query): {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
