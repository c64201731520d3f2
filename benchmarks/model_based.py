"""Model-based meta-learners against MAML and ProtoNet at an equal, stated training budget.

Every method is trained and evaluated through the public CLI (``metalearn train`` /
``metalearn eval``) and scored on the same fixed test episodes (``data.test_seed`` = 2), so
per-episode differences are paired:

* ``omniglot``: parameter generator (and its FiLM variant, ``generator_film``) vs ProtoNet vs
  MAML on Omniglot 5-way 1-shot; each trains
  on 5-way 1-shot episodes with 5 queries per class, meta-batch 16, Adam 1e-3 at a constant
  rate, ``--steps`` meta-updates (the same number of training tasks for all), best of
  3 validations on 100 fixed val episodes; test: 600 FixedEpisodes of vinyals-test, 15 queries.
* ``sinusoid``: CNP vs MAML on 10-shot sinusoids (the two presets, K support and K query points,
  meta-batch 25, ``--sinusoid-steps`` steps each); test: the presets' 600 fixed tasks.

Training runs at ``nice 10`` outside the heavy-job lock (accuracies, not timings, are reported).

Usage:
    python benchmarks/model_based.py --out runs/model_based [--steps 150] [--sinusoid-steps 10000]
        [--only omniglot|sinusoid] [--parallel] [--methods generator_film ...]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from pathlib import Path

from _record import record

ROOT = Path(__file__).resolve().parent.parent
METALEARN = [sys.executable, "-m", "metalearn.cli"]


def omniglot_runs(steps: int) -> dict[str, list[str]]:
    common = ["data.n_query=5", "train.meta_batch=16", f"train.steps={steps}",
              f"train.val_every={max(1, steps // 3)}", f"train.checkpoint_every={steps}",
              "data.val_episodes=100", "data.test_episodes=600", "train.schedule=constant",
              "train.tensorboard=false", "train.lr=0.001"]
    return {
        "generator": ["generator-omniglot-5w1s", *common],
        "generator_film": ["generator-omniglot-5w1s", "algorithm.film=true", *common],
        "protonet": ["protonet-omniglot-5w1s", "data.n_way=5", *common],
        "maml": ["maml-omniglot-5w1s", *common],
    }


def sinusoid_runs(steps: int) -> dict[str, list[str]]:
    common = [f"train.steps={steps}", f"train.val_every={max(1, steps // 5)}",
              f"train.checkpoint_every={steps}", "train.tensorboard=false"]
    return {"cnp": ["cnp-sinusoid-10shot", *common], "maml": ["maml-sinusoid-10shot", *common]}


def commands(out: Path, name: str, spec: list[str]) -> tuple[list[str], list[str]]:
    """The ``metalearn train`` and ``metalearn eval`` command lines of one method."""
    run = out / name
    preset, overrides = spec[0], spec[1:]
    train_cmd = ["nice", "-n", "10", *METALEARN, "train", "--preset", preset,
                 *[a for o in overrides for a in ("--set", o)], "--out", str(run), "--quiet"]
    return train_cmd, ["nice", "-n", "10", *METALEARN, "eval", str(run), "--quiet"]


def train_and_eval(out: Path, specs: dict[str, list[str]], parallel: bool) -> dict[str, dict]:
    """Train every method (concurrently with ``parallel``) unless done, evaluate, load the results."""
    cmds = {name: commands(out, name, spec) for name, spec in specs.items()}
    todo = [name for name in specs if not (out / name / "checkpoints" / "last.json").exists()]
    if parallel:
        procs = [subprocess.Popen(cmds[name][0], cwd=ROOT) for name in todo]
        if any(p.wait() for p in procs):
            raise SystemExit("a training run failed; see its run folder")
    else:
        for name in todo:
            subprocess.run(cmds[name][0], check=True, cwd=ROOT)
    runs = {}
    for name, (train_cmd, eval_cmd) in cmds.items():
        result = out / name / "eval_test.json"
        if not result.exists():
            subprocess.run(eval_cmd, check=True, cwd=ROOT)
        res = json.loads(result.read_text())["result"]
        res["command"] = " ".join(train_cmd[3:]) + " && " + " ".join(eval_cmd[3:])
        runs[name] = res
    return runs


def paired(a: list[float], b: list[float]) -> tuple[float, float]:
    """Mean and 95% CI half-width of the per-episode difference ``a - b``."""
    d = [x - y for x, y in zip(a, b)]
    m = sum(d) / len(d)
    sd = math.sqrt(sum((x - m) ** 2 for x in d) / len(d))
    return m, 1.96 * sd / math.sqrt(len(d))


def report(task: str, runs: dict[str, dict], ours: str, methods: list[str] | None, budget: str) -> None:
    """Record each method's figure and its paired difference from ``ours`` (only ``methods``)."""
    acc = runs[ours]["metric"] == "accuracy"
    scale, unit = (100.0, "%") if acc else (1.0, "mse")
    for name, res in runs.items():
        if methods and name not in methods:
            continue
        record(f"model_based_{task}_{name}_{res['metric']}", round(scale * res["mean"], 4), unit,
               higher_is_better=acc,
               extra={"ci95": round(scale * res["ci95"], 4), "n_episodes": res["n"],
                      "budget": budget, "run_command": res["command"]})
    for name, res in runs.items():
        if name == ours or (methods and name not in methods):
            continue
        m, ci = paired(runs[ours]["per_episode"], res["per_episode"])
        record(f"model_based_{task}_{ours}_minus_{name}", round(scale * m, 4), unit,
               higher_is_better=acc,
               extra={"ci95": round(scale * ci, 4), "n_episodes": res["n"], "paired": True,
                      "budget": budget})


def pick(specs: dict[str, list[str]], ours: str, methods: list[str] | None) -> dict[str, list[str]]:
    return specs if not methods else {k: v for k, v in specs.items() if k in methods or k == ours}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/model_based", help="folder of the training runs")
    p.add_argument("--steps", type=int, default=150, help="Omniglot meta-updates per method")
    p.add_argument("--sinusoid-steps", type=int, default=10_000, help="sinusoid steps per method")
    p.add_argument("--only", choices=("omniglot", "sinusoid"), default=None)
    p.add_argument("--parallel", action="store_true", help="train the methods concurrently")
    p.add_argument("--methods", nargs="+", default=None,
                   help="only these methods (the reference method is loaded for the differences)")
    args = p.parse_args()
    out = Path(args.out)
    os.environ.setdefault("METALEARN_DATA", "/work/shared/data")
    if args.only in (None, "sinusoid"):
        runs = train_and_eval(out / "sinusoid", pick(sinusoid_runs(args.sinusoid_steps), "cnp", args.methods),
                              args.parallel)
        report("sinusoid_10shot", runs, "cnp", args.methods,
               f"{args.sinusoid_steps} steps x 25 tasks (10 support + 10 query points) each")
    if args.only in (None, "omniglot"):
        runs = train_and_eval(out / "omniglot", pick(omniglot_runs(args.steps), "generator", args.methods),
                              args.parallel)
        report("omniglot_5w1s", runs, "generator", args.methods,
               f"{args.steps} steps x 16 tasks of 5-way 1-shot 5-query each, Adam 1e-3")


if __name__ == "__main__":
    main()
