"""Train Prototypical Networks on Omniglot and evaluate 5-way 1-shot on 1,000 fixed test episodes.

Snell et al. 2017's recipe on the Vinyals split (1028/172/423 characters, each in 4 rotations
as separate classes, 28x28): Conv4 (64 filters, batch norm with batch statistics), squared
Euclidean distance, training episodes with many more ways than at test (default 60-way 1-shot,
5 queries per class), Adam 1e-3 halved every 2,000 episodes. Differences from the paper: a
wall-clock budget caps training (this runs on a 2-core CPU), and model selection uses 5-way
1-shot accuracy on fixed vinyals-val episodes (the paper early-stops on validation loss and
then retrains on train+val).

Usage (the tuned allocator settings make large conv batches faster on CPU; see
/work/shared/research/cpu-performance.md):

    GLIBC_TUNABLES=glibc.malloc.hugetlb=1:glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=4294967296 \\
    python examples/train_protonet_omniglot.py --data-root /work/shared/data --out runs/protonet_omniglot

Writes ``curve.jsonl`` (one line per logged step) and ``result.json`` under ``--out``.
"""

from __future__ import annotations

import argparse
import copy
import json
import resource
import sys
import time
from pathlib import Path

import torch

from metalearn.algorithms import ProtoNet
from metalearn.data import EpisodeSampler, FixedEpisodes, Omniglot
from metalearn.eval import evaluate
from metalearn.models import Conv4


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", default=None, help="folder holding omniglot/ (default: $METALEARN_DATA)")
    p.add_argument("--out", type=Path, default=Path("runs/protonet_omniglot"))
    p.add_argument("--train-way", type=int, default=60)
    p.add_argument("--train-shot", type=int, default=1)
    p.add_argument("--train-query", type=int, default=5)
    p.add_argument("--episodes", type=int, default=20_000, help="maximum training episodes")
    p.add_argument("--budget-min", type=float, default=27.0, help="training wall-clock budget (minutes)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--halve-every", type=int, default=2000, help="episodes between learning-rate halvings")
    p.add_argument("--val-every", type=int, default=500)
    p.add_argument("--val-episodes", type=int, default=200)
    p.add_argument("--test-episodes", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--record", action="store_true",
                   help="also append the result to benchmarks/results.jsonl "
                        "(protonet_omniglot_5w1s_test_accuracy, with the learning curve)")
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

    train = Omniglot("vinyals-train", root=args.data_root)
    val = FixedEpisodes(Omniglot("vinyals-val", root=args.data_root), 5, 1, 15, args.val_episodes, seed=1)
    sampler = EpisodeSampler(train, args.train_way, args.train_shot, args.train_query, seed=args.seed)

    algo = ProtoNet(Conv4(in_channels=1, hidden=64, norm="transductive")).to(device)
    if device.type == "cpu":
        algo = algo.to(memory_format=torch.channels_last)  # faster convolutions on CPU
    opt = torch.optim.Adam(algo.parameters(), lr=args.lr)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=args.halve_every, gamma=0.5)

    curve_rows = []
    curve = open(args.out / "curve.jsonl", "w")
    start, cpu0 = time.perf_counter(), cpu_seconds()
    best = (-1.0, 0, None)
    window: list[tuple[float, float]] = []
    episode = 0
    for episode in range(1, args.episodes + 1):
        batch = sampler.sample_batch(1).to(device)
        loss, metrics = algo.meta_loss(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        window.append((metrics["loss"], metrics["accuracy"]))
        elapsed = time.perf_counter() - start
        out_of_time = elapsed > 60 * args.budget_min
        if episode % args.val_every == 0 or out_of_time or episode == args.episodes:
            v = evaluate(algo, val, batch_size=1, progress=False)
            row = {"episode": episode, "seconds": round(elapsed, 1), "lr": sched.get_last_lr()[0],
                   "train_loss": sum(w[0] for w in window) / len(window),
                   "train_acc": sum(w[1] for w in window) / len(window),
                   "val_acc": v.mean, "val_ci95": v.ci95}
            window = []
            print(json.dumps(row), flush=True)
            curve_rows.append(row)
            curve.write(json.dumps(row) + "\n")
            curve.flush()
            if v.mean > best[0]:
                best = (v.mean, episode, copy.deepcopy(algo.state_dict()))
        if out_of_time:
            break
    train_seconds, train_cpu = time.perf_counter() - start, cpu_seconds() - cpu0

    algo.load_state_dict(best[2])
    test = FixedEpisodes(Omniglot("vinyals-test", root=args.data_root), 5, 1, 15, args.test_episodes, seed=0)
    r = evaluate(algo, test, batch_size=1, progress=False)
    result = {
        "test_5way_1shot_accuracy": r.mean, "ci95": r.ci95, "n_episodes": r.n,
        "test_fingerprint": test.fingerprint, "selected_episode": best[1], "val_acc": best[0],
        "episodes_trained": episode, "train_wall_s": round(train_seconds, 1),
        "train_cpu_s": round(train_cpu, 1), "eval_wall_s": round(r.seconds, 1),
        "total_cpu_s": round(cpu_seconds() - cpu0, 1), "args": {k: str(v) for k, v in vars(args).items()},
        "device": str(device), "threads": torch.get_num_threads(),
    }
    (args.out / "result.json").write_text(json.dumps(result, indent=1))
    if args.record:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
        from _record import record

        record("protonet_omniglot_5w1s_test_accuracy", 100 * r.mean, "%",
               extra={"ci95": round(100 * r.ci95, 3), "n_episodes": r.n,
                      "test_fingerprint": test.fingerprint, "episodes_trained": episode,
                      "selected_episode": best[1], "train_wall_s": result["train_wall_s"],
                      "train_cpu_s": result["train_cpu_s"], "eval_wall_s": result["eval_wall_s"],
                      "train_episodes": f"{args.train_way}-way {args.train_shot}-shot "
                                        f"{args.train_query}-query", "target": ">= 98",
                      "threads": torch.get_num_threads(), "curve": curve_rows})
    print(f"5-way 1-shot test accuracy {100 * r.mean:.2f} ± {100 * r.ci95:.2f}% over {r.n} episodes "
          f"(model of episode {best[1]}, trained {episode} episodes in {train_seconds / 60:.1f} min)")


if __name__ == "__main__":
    main()
