"""Meta-train MAML on Omniglot 5-way 1-shot and test it on 600 fixed episodes.

Finn, Abbeel and Levine, "Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks",
ICML 2017: Conv4 (64 filters, batch norm with batch statistics), inner SGD step 0.4, one inner
step in training and three at test, meta-batch 32, Adam 1e-3. Data: the Vinyals split of
Omniglot (1028 + 172 training+validation characters, 423 test characters, each in 4 rotations
as separate classes), 28x28.

Training runs until ``--steps`` meta-updates or ``--max-minutes`` of wall time, whichever comes
first; every ``--val-every`` steps the model is scored on fixed vinyals-val episodes and one line
goes to ``OUT/curve.jsonl``. At the end it is scored on ``--test-episodes`` fixed vinyals-test
episodes (mean accuracy and 95% CI = 1.96 std / sqrt(n)), written to ``OUT/result.json``.

Usage:
    python examples/train_maml_omniglot.py --data-root ../shared/data --out runs/maml_omniglot
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from metalearn._runtime import reexec_with_tuned_allocator


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-root", default=None, help="folder holding omniglot/ (default: $METALEARN_DATA)")
    p.add_argument("--out", default="runs/maml_omniglot")
    p.add_argument("--steps", type=int, default=60000, help="meta-updates (the paper's 60k)")
    p.add_argument("--max-minutes", type=float, default=55.0, help="wall-time budget for training")
    p.add_argument("--meta-batch", type=int, default=32)
    p.add_argument("--n-query", type=int, default=5, help="query examples per class in training")
    p.add_argument("--inner-lr", type=float, default=0.4)
    p.add_argument("--inner-steps", type=int, default=1)
    p.add_argument("--eval-inner-steps", type=int, default=3)
    p.add_argument("--first-order", action="store_true")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--val-every", type=int, default=250)
    p.add_argument("--val-episodes", type=int, default=200)
    p.add_argument("--test-episodes", type=int, default=600)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    reexec_with_tuned_allocator()  # glibc malloc settings, as the `metalearn` entry point does

    import torch

    from metalearn.algorithms import MAML, MAMLConfig
    from metalearn.data import EpisodeSampler, FixedEpisodes, Omniglot
    from metalearn.eval import evaluate
    from metalearn.models import Conv4

    torch.manual_seed(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    train = Omniglot("vinyals-train", root=args.data_root)
    val = FixedEpisodes(Omniglot("vinyals-val", root=args.data_root), 5, 1, 15, args.val_episodes, seed=1)
    sampler = EpisodeSampler(train, n_way=5, k_shot=1, n_query=args.n_query, seed=args.seed)
    config = MAMLConfig(inner_lr=args.inner_lr, inner_steps=args.inner_steps,
                        eval_inner_steps=args.eval_inner_steps, first_order=args.first_order)
    algo = MAML(Conv4(1, 64, out_features=5, norm="transductive"), config)
    opt = torch.optim.Adam(algo.parameters(), lr=args.lr)
    (out / "config.json").write_text(json.dumps(vars(args) | {"maml": vars(config)}, indent=2))

    curve = open(out / "curve.jsonl", "w")
    start, loss_sum, acc_sum, n = time.perf_counter(), 0.0, 0.0, 0
    step = 0
    while step < args.steps and time.perf_counter() - start < 60 * args.max_minutes:
        loss, metrics = algo.meta_loss(sampler.sample_batch(args.meta_batch))
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        loss_sum, acc_sum, n = loss_sum + metrics["loss"], acc_sum + metrics["accuracy"], n + 1
        if step % args.val_every == 0:
            res = evaluate(algo, val, progress=False)
            row = {"step": step, "tasks": step * args.meta_batch,
                   "seconds": round(time.perf_counter() - start, 1),
                   "train_loss": loss_sum / n, "train_acc": acc_sum / n,
                   "val_acc": res.mean, "val_ci95": res.ci95}
            curve.write(json.dumps(row) + "\n")
            curve.flush()
            print(json.dumps(row), flush=True)
            loss_sum, acc_sum, n = 0.0, 0.0, 0
    train_seconds = time.perf_counter() - start
    torch.save(algo.state_dict(), out / "maml.pt")

    test = FixedEpisodes(Omniglot("vinyals-test", root=args.data_root), 5, 1, 15,
                         args.test_episodes, seed=2)
    res = evaluate(algo, test, progress=False)
    result = {"test_acc": res.mean, "test_ci95": res.ci95, "test_episodes": res.n,
              "steps": step, "train_seconds": round(train_seconds, 1),
              "tasks_per_s": round(step * args.meta_batch / train_seconds, 2),
              "test_seconds": round(res.seconds, 1)}
    (out / "result.json").write_text(json.dumps(result, indent=2))
    print(f"test: {res}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
