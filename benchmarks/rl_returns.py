"""Meta-RL returns: MAML-TRPO against its three baselines on the same fixed test tasks.

Issue 20, point 6. For one environment (``--env``, default ``navigation2d``), each method of
:mod:`metalearn.rl` is trained through the public command line::

    metalearn train --preset maml-trpo-ENV --set method=M --out RUNS/ENV-M [--set ...]
    metalearn eval RUNS/ENV-M

with ``M`` one of ``maml`` (MAML-TRPO, the paper), ``multitask`` (one policy trained on all
training tasks, fine-tuned at test with the same inner step), ``random`` (a random
initialisation fine-tuned likewise) and ``oracle`` (the task appended to the observation). The
evaluation is the run's own: the average return over the 40 fixed test tasks (seed 2, the same
for every method) before adaptation and after 1 and 3 inner policy-gradient steps, each step
rolling out 20 trajectories per task with the current policy; mean ± 95% CI over tasks.

A finished run in ``RUNS/ENV-M`` is reused; an unfinished one is resumed (the time adds up).
Every figure is one JSON line on stdout and a record in benchmarks/results.jsonl (``--results``):
``rl/ENV/M/return@K`` for K = 0, 1, 3, with the CI, the tasks, the meta-iterations, the training
wall-clock time (from the run's metrics: the machine may have been shared), the CPU seconds of
the training and evaluation processes this script ran, and the commands. ``table`` writes the
latest of them into benchmarks/RESULTS.md; the MAML run's trajectory and adaptation-curve PNGs
are copied to benchmarks/figures/rl/.

Usage::

    python benchmarks/rl_returns.py run                         # all four methods, paper settings
    python benchmarks/rl_returns.py run --methods maml --set train.meta_iterations=50
    python benchmarks/rl_returns.py table
    python benchmarks/rl_returns.py readme                      # the README's table, printed
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))
from _record import RESULTS, record  # noqa: E402

METHODS = ("maml", "multitask", "random", "oracle")
RESULTS_MD = HERE / "RESULTS.md"
FIGURES = HERE / "figures" / "rl"
START, END = "<!-- begin rl -->", "<!-- end rl -->"
STEPS = ("0", "1", "3")


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "metalearn.cli", *args]


def run_timed(argv: list[str]) -> float:
    """Run ``argv`` with one thread; the CPU seconds of the child. Raises on failure."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    print("$ " + " ".join(argv[2:]).replace("metalearn.cli", "metalearn"), file=sys.stderr, flush=True)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    subprocess.run(argv, env=env, cwd=ROOT, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _iterations_done(run: Path) -> int:
    path = run / "metrics.jsonl"
    rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.exists() else []
    return max((int(r["step"]) for r in rows if r.get("kind") == "train"), default=0)


def _wall(run: Path) -> float:
    path = run / "metrics.jsonl"
    rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.exists() else []
    return max((float(r.get("time_s", 0.0)) for r in rows), default=0.0)


def train_argv(env: str, method: str, run: Path, overrides: list[str]) -> list[str]:
    sets = [a for o in [f"method={method}", *overrides] for a in ("--set", o)]
    return cli("train", "--preset", f"maml-trpo-{env}", *sets, "--out", str(run), "--quiet")


def run_method(env: str, method: str, runs: Path, overrides: list[str], results: Path,
               figures: Path = FIGURES) -> None:
    run = runs / f"{env}-{method}"
    if method == "random":  # its training steps change nothing: one iteration writes the run
        overrides = [*overrides, "train.meta_iterations=1"]
    argv = train_argv(env, method, run, overrides)
    train_cpu = 0.0
    config = run / "config.json"
    wanted = json.loads(config.read_text())["train"]["meta_iterations"] if config.exists() else None
    before = _iterations_done(run)
    if wanted is None or before < wanted:
        train_cpu = run_timed(argv + (["--resume"] if (run / "checkpoints").is_dir() else []))
    eval_cpu = run_timed(cli("eval", str(run)))
    res = json.loads((run / "eval_test.json").read_text())
    cfg = json.loads(config.read_text())
    shown = " ".join(argv[2:]).replace("metalearn.cli", "metalearn").replace(str(ROOT) + "/", "")
    timed = {"train_cpu_s_this_call": round(train_cpu, 1), "iterations_before_this_call": before}
    prev = _latest(results).get(f"rl/{env}/{method}/return@0")
    if wanted is not None and before >= wanted and prev is not None:
        # a finished run, reused: its training time is the one recorded when it was trained
        timed = {key: prev[key] for key in ("train_cpu_s_this_call", "iterations_before_this_call")
                 if key in prev and prev.get("meta_iterations") == wanted}
    for k in STEPS:
        r = res["returns"][k]
        name = f"rl/{env}/{method}/return@{k}"
        record(name, r["mean"], "average return", extra={
            "ci95": round(r["ci95"], 4), "per_task": [round(float(x), 3) for x in r["per_task"]],
            "tasks": res["tasks"], "seed": res["seed"],
            "trajectories": res["trajectories"], "horizon": res["horizon"], "checkpoint": res["checkpoint"],
            "checkpoint_iteration": res["step"], "meta_iterations": cfg["train"]["meta_iterations"],
            "meta_batch": cfg["train"]["meta_batch"], "train_wall_s": round(_wall(run), 1),
            **timed, "eval_cpu_s": round(eval_cpu, 1),
            "train_command": shown, "eval_command": f"metalearn eval {run.relative_to(ROOT) if run.is_relative_to(ROOT) else run}",
        }, results=results)
    if method == "maml":
        figures.mkdir(parents=True, exist_ok=True)
        for png in ("trajectories.png", "adaptation_curve.png"):
            if (run / png).exists():
                shutil.copy(run / png, figures / f"{env}_{png}")


def _latest(results: Path) -> dict[str, dict]:
    rows = {}
    for line in results.read_text().splitlines() if results.exists() else []:
        if line.strip() and (row := json.loads(line))["name"].startswith("rl/"):
            rows[row["name"]] = row
    return rows


def _cpu(r: dict) -> str:
    """The training CPU time a record measured; for a resumed run, only that of the last call."""
    cpu = r.get("train_cpu_s_this_call")
    if cpu is None:
        return "not recorded"
    since = r.get("iterations_before_this_call")
    if since is None:
        return f"{cpu / 60:.0f} min (last call only)"
    if since >= r["meta_iterations"]:
        return "not timed (a finished run, reused)"
    return f"{cpu / 60:.0f} min" + (f" (iterations {since + 1}-{r['meta_iterations']} only)" if since else "")


def _paired(a: list[float], b: list[float]) -> str:
    """``mean ± 95% CI`` of ``a - b`` task by task (the same fixed test tasks)."""
    from metalearn.eval.metrics import mean_ci95

    m, c = mean_ci95([x - y for x, y in zip(a, b)])
    return f"{m:+.2f} ± {c:.2f}"


def table(results: Path) -> str:
    rows = _latest(results)
    envs = sorted({name.split("/")[1] for name in rows})
    lines = ["## Meta-RL returns (MAML-TRPO and baselines)", "",
             "Written by `python benchmarks/rl_returns.py table` from the `rl/*` records of `results.jsonl`. "
             "Average return over the fixed test tasks (the same for every method) before adaptation and "
             "after 1 and 3 inner policy-gradient steps (lr 0.1, 20 trajectories per task and step), "
             "mean ± 95% CI over tasks; the checkpoint is the best on 10 validation tasks. *Train wall* is "
             "the wall-clock time of the training on a shared machine; *train CPU* the CPU time of the "
             "training process (one thread) that this script ran (a resumed run's earlier calls were "
             "not timed).", ""]
    for env in envs:
        lines += [f"**{env}**", "", "| method | before | after 1 step | after 3 steps | 1 step − before (paired) | "
                  "meta-iterations | train wall | train CPU | command |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for m in METHODS:
            got = [rows.get(f"rl/{env}/{m}/return@{k}") for k in STEPS]
            if None in got:
                continue
            cells = " | ".join(f"{r['value']:.2f} ± {r['ci95']:.2f}" for r in got)
            gain = _paired(got[1]["per_task"], got[0]["per_task"]) if "per_task" in got[0] else "not recorded"
            cells += f" | {gain}"
            r = got[0]
            lines.append(f"| {m} | {cells} | {r['meta_iterations']} (checkpoint {r['checkpoint_iteration']}) | "
                         f"{r['train_wall_s'] / 60:.0f} min | {_cpu(r)} | `{r['train_command']}` |")
        maml = rows.get(f"rl/{env}/maml/return@1", {}).get("per_task")
        versus = [f"{m} {_paired(maml, rows[f'rl/{env}/{m}/return@1']['per_task'])}" for m in METHODS[1:]
                  if maml and "per_task" in rows.get(f"rl/{env}/{m}/return@1", {})]
        if versus:
            lines += ["", "MAML after one step minus each baseline after one step, task by task on the same "
                      "test tasks: " + "; ".join(versus) + "."]
        for png in ("trajectories", "adaptation_curve"):
            if (FIGURES / f"{env}_{png}.png").exists():
                lines += ["", f"![{env} {png}](figures/rl/{env}_{png}.png)"]
        lines.append("")
    return "\n".join(lines).rstrip()


README_ENVS = {"navigation2d": "2-D navigation", "halfcheetah-vel": "HalfCheetahVel", "halfcheetah-dir": "HalfCheetahDir"}
README_METHODS = {"maml": "MAML-TRPO", "multitask": "multi-task policy, fine-tuned",
                  "random": "random init, fine-tuned", "oracle": "oracle (sees the task)"}


def readme_table(results: Path) -> str:
    """The README's table: every environment's methods, with MAML minus each baseline (paired)."""
    rows = _latest(results)
    out = ["| average return, 40 test tasks | before | after 1 step | after 3 steps | "
           "MAML − it, after 1 step (paired) | train CPU |", "|---|---|---|---|---|---|"]
    for env, title in README_ENVS.items():
        maml = rows.get(f"rl/{env}/maml/return@1")
        if maml is None:
            continue
        out.append(f"| **{title}, {maml['meta_iterations']} iterations × {maml['meta_batch']} tasks** | | | | | |")
        for m, label in README_METHODS.items():
            got = [rows.get(f"rl/{env}/{m}/return@{k}") for k in STEPS]
            if None in got:
                continue
            versus = "" if m == "maml" or "per_task" not in got[1] else _paired(maml["per_task"], got[1]["per_task"])
            cpu = "none" if m == "random" else _cpu(got[0])
            out.append(f"| {label} | " + " | ".join(f"{g['value']:.2f} ± {g['ci95']:.2f}" for g in got)
                       + f" | {versus} | {cpu} |")
    return "\n".join(out)


def write_table(results: Path, out: Path = RESULTS_MD) -> None:
    block = f"{START}\n{table(results)}\n{END}"
    text = out.read_text() if out.exists() else "# Benchmark results\n"
    if START in text:
        text = re.sub(re.escape(START) + ".*?" + re.escape(END), lambda _: block, text, flags=re.S)
    else:
        marker = "<!-- begin latest-figures -->"
        text = text.replace(marker, block + "\n\n" + marker) if marker in text else text + "\n" + block + "\n"
    out.write_text(text)
    print(f"wrote {out}", file=sys.stderr)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="train (or resume) and evaluate methods, record their returns")
    r.add_argument("--env", default="navigation2d", help="navigation2d, halfcheetah-vel or halfcheetah-dir")
    r.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    r.add_argument("--runs", type=Path, default=ROOT / "runs" / "rl", help="run directories")
    r.add_argument("--set", dest="overrides", action="append", default=[], help="key=value for every run")
    r.add_argument("--results", type=Path, default=RESULTS)
    r.add_argument("--figures", type=Path, default=FIGURES, help="where the MAML run's PNGs are copied")
    t = sub.add_parser("table", help="write the returns table into benchmarks/RESULTS.md")
    t.add_argument("--results", type=Path, default=RESULTS)
    t.add_argument("--out", type=Path, default=RESULTS_MD)
    rd = sub.add_parser("readme", help="print the README's table of returns (markdown)")
    rd.add_argument("--results", type=Path, default=RESULTS)
    args = p.parse_args()
    if args.command == "readme":
        print(readme_table(args.results))
        return
    if args.command == "table":
        write_table(args.results, args.out)
        return
    start = time.perf_counter()
    for method in args.methods:
        run_method(args.env, method, args.runs, args.overrides, args.results, args.figures)
    print(f"done in {time.perf_counter() - start:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
