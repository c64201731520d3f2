"""Learned optimizers against SGD, momentum and Adam with tuned learning rates.

Andrychowicz et al. 2016 ("Learning to learn by gradient descent by gradient descent"),
figures 2-4, at CPU scale. For each optimizee family (10-d quadratics ``||W theta - y||^2``;
a 10-20-5 sigmoid MLP on sampled Gaussian-blob classification tasks):

1. Tune the learning rate of SGD, SGD+momentum(0.9) and Adam on ``GRID`` by the mean loss after
   ``HORIZON`` (100) steps on *validation* problems.
2. Meta-train the coordinate-wise LSTM rule and the two reference rules (per-parameter MLP on
   gradient+momentum, Meta-SGD rates started at the tuned SGD rate) with truncated BPTT:
   horizon 100, unroll 20, Adam on the rule's parameters; every 10 trajectories the rule is
   scored on the same validation problems and the best one is kept (also when a drawn problem
   diverges and meta-training stops with FloatingPointError; the record then says so).
3. On *held-out test* problems (new seeds), run every optimiser for 2 x HORIZON steps and report
   the loss after 100 steps (the trained horizon) and after 200 (generalisation to twice the
   horizon) as mean +- 95% CI over the test problems; each figure's baseline is the best tuned
   hand-designed optimiser at that step. Loss curves go to benchmarks/figures/learned_optimizer.png.

Budget: the whole script (both families, meta-training included) is sized to run in under 10
minutes on 2 CPU cores. The paper uses the same horizon (100) and unroll (20), batches of 128
quadratics and MNIST minibatches of 128, and meta-trains far longer; here the LSTM sees 200
trajectories of 128 quadratics and 60 trajectories of 16 blob-MLP tasks.

Run (holding the machine lock, 2 threads):
    flock /tmp/metalearn-heavy.lock .venv/bin/python benchmarks/learned_optimizer.py
Smoke test (seconds, records nothing):
    .venv/bin/python benchmarks/learned_optimizer.py --quick
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch

from metalearn.eval.metrics import mean_ci95
from metalearn.optim import (
    BlobMLPFamily,
    LSTMRule,
    MetaSGDRule,
    MLPRule,
    QuadraticFamily,
    RuleTrainingConfig,
    evaluate_rule,
    train_learned_rule,
)

HORIZON = 100
GRID = [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0]
"""Learning rates tried for every hand-designed optimiser (half-decade steps)."""
HAND = {
    "sgd": lambda params, lr: torch.optim.SGD(params, lr=lr),
    "momentum": lambda params, lr: torch.optim.SGD(params, lr=lr, momentum=0.9),
    "adam": lambda params, lr: torch.optim.Adam(params, lr=lr),
}
SETTINGS = {
    # family, problems per meta-training trajectory, trajectories per learned rule, meta lr
    "quadratic": (QuadraticFamily(dim=10), 128, {"lstm": 200, "mlp": 300, "meta_sgd": 300}, 3e-3),
    "mlp": (BlobMLPFamily(in_features=10, n_classes=5, hidden=20, n_points=256, noise=2.0), 16,
            {"lstm": 60, "mlp": 60, "meta_sgd": 60}, 3e-3),
}
N_VAL, N_TEST = 64, 100
FIGURE = Path(__file__).resolve().parent / "figures" / "learned_optimizer.png"


def run_hand(make, lr: float, problem, steps: int) -> torch.Tensor:
    """Losses ``(steps + 1, n_tasks)`` of a torch.optim optimiser on a batch of problems.

    The problems are independent and these optimisers act entry by entry, so optimising the
    sum of the losses is optimising every problem on its own.
    """
    params = {k: v.clone().requires_grad_() for k, v in problem.params.items()}
    opt = make(list(params.values()), lr)
    losses = []
    for t in range(steps + 1):
        loss = problem.loss(params)
        losses.append(loss.detach())
        if t == steps:
            break
        opt.zero_grad()
        loss.sum().backward()
        opt.step()
    return torch.stack(losses)


def final_mean(losses: torch.Tensor) -> float:
    value = losses[HORIZON].mean().item()
    return value if math.isfinite(value) else math.inf


def tune(val, grid) -> dict[str, float]:
    """Best learning rate of each hand-designed optimiser by mean validation loss at HORIZON."""
    best = {}
    for name, make in HAND.items():
        scores = {lr: final_mean(run_hand(make, lr, val, HORIZON)) for lr in grid}
        best[name] = min(scores, key=scores.get)
        print(f"  tune {name}: " + ", ".join(f"{lr:g}:{s:.3g}" for lr, s in scores.items()), flush=True)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny budgets, nothing recorded")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--families", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if not args.quick:
        from _record import record

    curves: dict[str, dict[str, torch.Tensor]] = {}
    for fam_name in args.families:
        family, n_tasks, budgets, meta_lr = SETTINGS[fam_name]
        print(f"== {fam_name}", flush=True)
        val = family.sample(N_VAL, torch.Generator().manual_seed(1001))
        test = family.sample(N_TEST, torch.Generator().manual_seed(2002))
        lrs = tune(val, GRID[::3] if args.quick else GRID)
        results = {name: run_hand(HAND[name], lr, test, 2 * HORIZON) for name, lr in lrs.items()}
        rules = {"lstm": LSTMRule(), "mlp": MLPRule(),
                 "meta_sgd": MetaSGDRule({k: v.shape[1:] for k, v in val.params.items()}, lr=lrs["sgd"])}
        seconds, failures = {}, {}
        for name, module in rules.items():
            torch.manual_seed(0)
            trajectories = 2 if args.quick else budgets[name]
            cfg = RuleTrainingConfig(horizon=HORIZON, unroll=20, trajectories=trajectories,
                                     n_tasks=n_tasks, meta_lr=meta_lr, seed=7)
            start, history = time.perf_counter(), []
            try:
                train_learned_rule(module, family, cfg, validation=val,
                                   callback=lambda _, loss, h=history: h.append(loss))
            except FloatingPointError as err:  # the best validated rule so far is kept
                failures[name] = f"stopped after {len(history)} meta-updates: {str(err)[:80]}"
                print(f"  meta-train {name}: {failures[name]}", flush=True)
            seconds[name] = time.perf_counter() - start
            print(f"  meta-train {name}: {len(history)} meta-updates in {seconds[name]:.1f} s, "
                  f"meta-loss {history[0]:.3g} -> {sum(history[-5:]) / 5:.3g}", flush=True)
            results[name] = evaluate_rule(module, test, 2 * HORIZON)
        curves[fam_name] = results
        for step in (HORIZON, 2 * HORIZON):
            means = {name: mean_ci95(losses[step]) for name, losses in results.items()}
            ref = min(HAND, key=lambda n: means[n][0] if math.isfinite(means[n][0]) else math.inf)
            for name, (mean, ci) in means.items():
                extra = {"ci95": round(ci, 6), "n_test_problems": N_TEST, "trained_horizon": HORIZON}
                if name in HAND:
                    extra["lr"] = lrs[name]
                else:
                    extra.update(trajectories=budgets[name], unroll=20, meta_lr=meta_lr,
                                 meta_train_s=round(seconds[name], 1))
                    if name in failures:
                        extra["meta_training"] = failures[name]
                line = f"  {name:9s} loss@{step}: {mean:.4g} +- {ci:.2g}"
                if args.quick:
                    print(line)
                    continue
                record(f"learned_optimizer.{fam_name}.{name}.loss@{step}", mean, "loss",
                       baseline=f"{ref} (lr {lrs[ref]:g}, tuned at step {HORIZON})",
                       baseline_value=means[ref][0], higher_is_better=False, extra=extra)
    plot(curves, FIGURE if not args.quick else Path("/tmp/learned_optimizer_quick.png"))


def plot(curves: dict[str, dict[str, torch.Tensor]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    titles = {"quadratic": "10-d quadratics", "mlp": "MLP on blob classification"}
    fig, axes = plt.subplots(1, len(curves), figsize=(5.5 * len(curves), 4), squeeze=False)
    for ax, (fam, results) in zip(axes[0], curves.items()):
        lows, start = [], max(float(r[0].mean()) for r in results.values())
        for name, losses in results.items():
            finite = torch.where(torch.isfinite(losses), losses, torch.nan)
            mean = finite.mean(1)
            ci = 1.96 * finite.std(1, unbiased=False) / math.sqrt(losses.shape[1])
            steps = torch.arange(len(mean))
            style = "-" if name in ("lstm", "mlp", "meta_sgd") else "--"
            label = {"lstm": "LSTM (learned)", "mlp": "MLP rule (learned)", "meta_sgd": "Meta-SGD (learned)"}
            ax.plot(steps, mean, style, label=label.get(name, f"{name} (tuned)"))
            ax.fill_between(steps, (mean - ci).clamp(min=1e-12), mean + ci, alpha=0.2)
            lows.append(float(mean.nan_to_num(math.inf).min()))
        ax.axvline(HORIZON, color="grey", lw=0.8, ls=":")
        ax.set_yscale("log")
        ax.set_ylim(0.5 * min(lows), 3 * start)  # early spikes of large tuned rates go off-scale
        ax.set_xlabel("step")
        ax.set_ylabel("loss (mean, 95% CI over test problems)")
        ax.set_title(titles[fam])
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    print(f"figure: {path}")


if __name__ == "__main__":
    main()
