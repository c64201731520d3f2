"""Meta-Dataset protocol figures (issue 22, points 8 and 10-12): Omniglot, adapters, multi-source, speed.

Episodes follow Meta-Dataset (Triantafillou et al., ICLR 2020; :mod:`metalearn.data.metadataset`):
one alphabet per episode, 5-50 ways, imbalanced shots, up to 10 queries per class, the 25/5/20
alphabet split (presets ``*-omniglot-md``, :mod:`metalearn.presets.metadataset`). Every accuracy
is a mean ± 95% CI over the same fixed, seeded test episodes (>= 600 for a reported figure; their
fingerprint is recorded and checked to agree between the methods of one figure).

Subcommands (each figure one JSON line on stdout and a record in benchmarks/results.jsonl,
``--results`` to redirect; trainings and evaluations run the public ``metalearn`` command line
in child processes with ``OMP_NUM_THREADS=1``, their wall and CPU seconds measured):

* ``omniglot [METHODS...]`` (point 10): each of ``protonet``, ``proto-maml``, ``finetune``,
  ``baseline-pp``, ``tsa`` trains its ``METHOD-omniglot-md`` preset (its own budget unless
  ``--steps``) into ``RUNS/omniglot/METHOD``, then ``metalearn eval`` on ``--episodes`` test
  episodes; figure ``md/omniglot/METHOD/accuracy``. ``finetune`` is Meta-Dataset's Finetune as
  its best configs run it (``learn/gin/best/baselinefinetune_*.gin``): pretraining as Baseline
  (linear head), then a new linear head only, plain SGD at 0.01 for 75 steps on each support set
  (``--set algorithm.finetune=head algorithm.finetune_optimizer=sgd algorithm.finetune_lr=0.01
  algorithm.finetune_steps=75``). The leaderboard's figure is the context (``baseline_value``),
  with a note of the conditions that differ.
* ``adapters`` (point 8): ONE pretrained backbone (the best checkpoint of ``RUNS/omniglot/finetune``,
  trained first if absent), adapted on the same fixed test episodes by a new head only
  (``head``), the whole network with a new head (``all``, SGD 0.01, 75 steps, as Meta-Dataset's
  Finetune with ``finetune_all_layers``) and task-specific adapters (``tsa``, 40 Adadelta steps,
  the backbone frozen), all built in this process around the loaded backbone; figures
  ``md/omniglot/adapters/MODE/accuracy``. Whole-network fine-tuning and TSA take seconds per
  episode on a CPU: progress and an ETA go to stderr.
* ``multi-source`` (point 11): ProtoNet on Omniglot and the synthetic image tree
  (:mod:`metalearn.data.synthetic_images`, ``folder-tree``; written to ``RUNS/synthetic-tree``
  unless ``--tree``) trained together (``data.sources``) and evaluated per source, against the
  same budget trained on each alone; figures ``md/multi/TRAINED-ON/EVAL-SOURCE/accuracy``.
  The tree is SYNTHETIC (procedural textures): there is no second real image dataset here.
* ``speed`` (point 12): Meta-Dataset episodes of Omniglot md-train sampled per second (the index
  plans alone, and full episodes with the images gathered) and the sampling's share of a ProtoNet
  training step, measured in this process over ``--speed-steps`` (>= 50) steps; figures
  ``md/speed/omniglot/...``.
* ``table``: the ``<!-- begin metadataset -->`` block of benchmarks/RESULTS.md (``--results-md``)
  from the latest records: every figure, its CI, CPU time and command, and the conditions that
  differ from the leaderboard.

``--tree-as-omniglot`` runs ``omniglot`` and ``adapters`` on the synthetic tree instead (smoke
tests without Omniglot); their figures are then named ``md/synthetic-tree/...``.

Usage:
    python benchmarks/metadataset.py omniglot [protonet proto-maml finetune baseline-pp tsa]
        [--runs runs/metadataset] [--data-root PATH] [--steps N] [--episodes 600]
    python benchmarks/metadataset.py adapters [--episodes 600] [--modes head all tsa]
    python benchmarks/metadataset.py multi-source [--steps N] [--episodes 600]
    python benchmarks/metadataset.py speed [--speed-steps 50]
    python benchmarks/metadataset.py table [--results-md benchmarks/RESULTS.md]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from _record import RESULTS, record
from reproduce import cli, shown, write_block
from text_fewshot import child_cpu

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS_MD = HERE / "RESULTS.md"
START, END = "<!-- begin metadataset -->", "<!-- end metadataset -->"
METHODS = ("protonet", "proto-maml", "finetune", "baseline-pp", "tsa")
LABELS = {"protonet": "ProtoNet", "proto-maml": "fo-Proto-MAML", "finetune": "Finetune",
          "baseline-pp": "Baseline++", "tsa": "TSA"}
PRESETS = {"protonet": "protonet-omniglot-md", "proto-maml": "proto-maml-omniglot-md",
           "finetune": "finetune-omniglot-md", "baseline-pp": "baseline-pp-omniglot-md", "tsa": "tsa-omniglot-md"}
FINETUNE = ("algorithm.finetune=head", "algorithm.finetune_optimizer=sgd", "algorithm.finetune_lr=0.01",
            "algorithm.finetune_steps=75")
"""Meta-Dataset's Finetune as its best configs run it: a new linear head, SGD 0.01, 75 steps."""
LEADERBOARD = {"protonet": (0.7956, "ProtoNet"), "proto-maml": (0.8392, "fo-MAML (fo-Proto-MAML is not listed)"),
               "tsa": (0.9496, "TSA")}
"""Meta-Dataset leaderboard, Omniglot, trained on all datasets (../shared/research/nextwave-references.md
section 4); Finetune and Baseline++ have no entry there."""
CONDITIONS = ("trained on Omniglot alone (the leaderboard: all ten sources), Conv4 on 28x28 grey images "
              "(ResNet-18 on 84x84), a CPU budget of a few thousand episodes (tens of thousands)")
ADAPTER_MODES = ("head", "all", "tsa")
SYNTHETIC = "synthetic-tree"


def run_timed(argv: list[str]) -> tuple[float, float]:
    """Run ``argv`` with ``OMP_NUM_THREADS=1``, its output to our stderr (stdout holds the figures
    only); return its wall and CPU seconds. Raises on failure."""
    import subprocess

    print("$ " + shown(argv), file=sys.stderr, flush=True)
    cpu, start = child_cpu(), time.perf_counter()
    subprocess.run(argv, env={**os.environ, "OMP_NUM_THREADS": "1"}, cwd=ROOT, check=True, stdout=sys.stderr)
    return time.perf_counter() - start, child_cpu() - cpu


def data_label(args) -> str:
    return SYNTHETIC if args.tree_as_omniglot else "omniglot"


def tree_root(args) -> Path:
    """The synthetic tree (written once, with the generator's defaults, when absent)."""
    from metalearn.data.synthetic_images import write_synthetic_image_tree

    root = (args.tree or args.runs / SYNTHETIC).resolve()
    if not (root / "complete").exists():
        write_synthetic_image_tree(root)
        (root / "complete").write_text("written by write_synthetic_image_tree(root) with its defaults\n")
    return root


def tree_sets(args) -> list[str]:
    """``data.*`` overrides that put the synthetic tree in Omniglot's place."""
    return ["data.dataset=folder-tree", f"data.root={json.dumps(str(tree_root(args)))}"]


def method_sets(method: str, args) -> list[str]:
    sets = list(FINETUNE) if method == "finetune" else []
    if args.tree_as_omniglot:
        sets += tree_sets(args) + (["algorithm.n_classes=0"] if method in ("finetune", "baseline-pp", "tsa") else [])
    return sets + ([f"train.steps={args.steps}"] if args.steps else []) + args.set


def train_and_eval(preset: str, sets: list[str], run: Path, args) -> dict:
    """Train ``preset`` into ``run`` (kept when finished: same config, same step count) and
    evaluate it on ``--episodes`` fixed test episodes; returns eval_test.json, the commands and
    the timings."""
    train = cli("train", "--preset", preset, *[a for s in sets for a in ("--set", s)], "--out", str(run), "--quiet")
    if args.data_root and not any(s.startswith("data.root=") for s in sets):  # the tree in Omniglot's place
        train += ["--data-root", str(Path(args.data_root).resolve())]
    evaluate = cli("eval", str(run), "--episodes", str(args.episodes), "--quiet")
    timing = run / "timing.json"
    t = json.loads(timing.read_text()) if timing.exists() else {}
    if t.get("train_command") != shown(train):
        if run.exists() and any(run.iterdir()):
            raise SystemExit(f"{run} holds another run (or an unfinished one): delete it or give another --runs")
        t = {"train_command": shown(train)}
        t["train_wall_s"], t["train_cpu_s"] = run_timed(train)
        timing.write_text(json.dumps(t))
    else:
        print(f"# reusing the finished run {run}", file=sys.stderr)
    if t.get("eval_command") != shown(evaluate) or not (run / "eval_test.json").exists():
        t["eval_command"] = shown(evaluate)
        t["eval_wall_s"], t["eval_cpu_s"] = run_timed(evaluate)
        timing.write_text(json.dumps(t))
    out = json.loads((run / "eval_test.json").read_text())
    return {**out, **t}


def timings(t: dict) -> dict:
    return {k: round(t[k], 2) for k in ("train_wall_s", "train_cpu_s", "eval_wall_s", "eval_cpu_s") if k in t}


def accuracy_record(name: str, result: dict, episodes: dict, args, **extra) -> dict:
    return record(name, result["mean"], "accuracy", results=args.results,
                  extra={"ci95": round(result["ci95"], 6), "n_episodes": result["n"],
                         "episodes_fingerprint": episodes.get("fingerprint"), **extra})


def omniglot(args) -> None:
    methods = args.methods or list(METHODS)
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise SystemExit(f"unknown methods {unknown}: choose from {', '.join(METHODS)}")
    label, prints = data_label(args), set()
    for method in methods:
        out = train_and_eval(PRESETS[method], method_sets(method, args), args.runs / label / method, args)
        prints.add(out["episodes"]["fingerprint"])
        if len(prints) > 1:
            raise SystemExit(f"{method} was evaluated on other test episodes than the methods before it "
                             "(fingerprints differ): delete its eval_test.json and evaluate again")
        base, note = LEADERBOARD.get(method, (None, "no leaderboard entry"))
        context = {"baseline": f"Meta-Dataset leaderboard: {note}", "baseline_value": base} if base else {}
        accuracy_record(f"md/{label}/{method}/accuracy", out["result"], out["episodes"], args, **context,
                        method=LABELS[method], checkpoint_step=out["step"], **timings(out),
                        train_command=out["train_command"], eval_command=out["eval_command"],
                        conditions=f"differs from the leaderboard: {CONDITIONS}" + (
                            "" if base else f"; {note}"),
                        **({"finetune": "Meta-Dataset's Finetune (best configs): a new linear head only, "
                                        "SGD lr 0.01, 75 steps"} if method == "finetune" else {}))


class Progress:
    """Episode progress with an ETA on stderr (``evaluate`` of one episode at a time)."""

    def __init__(self, label: str, total: int):
        self.label, self.total, self.start, self.done = label, total, time.perf_counter(), 0

    def step(self) -> None:
        self.done += 1
        spent = time.perf_counter() - self.start
        if self.done == self.total or self.done % max(1, self.total // 20) == 0:
            eta = spent / self.done * (self.total - self.done)
            print(f"# {self.label}: {self.done}/{self.total} episodes, {spent / self.done:.2f} s each, "
                  f"ETA {eta / 60:.1f} min", file=sys.stderr, flush=True)


def adapter(mode: str, backbone, n_classes: int):
    """The learner of ``mode`` around the (shared, never changed) pretrained ``backbone``."""
    from metalearn.algorithms import TSA, Baseline
    from metalearn.algorithms.baseline import BaselineConfig
    from metalearn.algorithms.tsa import TSAConfig

    if mode == "tsa":
        return TSA(backbone, TSAConfig(n_classes=n_classes))
    return Baseline(backbone, BaselineConfig(n_classes=n_classes, head="linear", finetune=mode, finetune_lr=0.01,
                                             finetune_optimizer="sgd", finetune_steps=75, body_lr=0.01,
                                             body_optimizer="sgd"))


def adapters(args) -> None:
    import resource

    from metalearn.eval import combine_results, evaluate
    from metalearn.train.data import fixed_episodes
    from metalearn.train.loop import load_run

    label = data_label(args)
    run = args.runs / label / "finetune"
    if not (run / "checkpoints").is_dir():
        print(f"# no pretrained backbone in {run}: training the finetune preset first", file=sys.stderr)
        train_and_eval(PRESETS["finetune"], method_sets("finetune", args), run, args)
    root = str(Path(args.data_root).resolve()) if args.data_root else None
    algo, cfg, step = load_run(run, "best", "cpu", data_root=root)
    backbone = algo.backbone
    for p in backbone.parameters():
        p.requires_grad_(False)
    episodes = fixed_episodes(cfg.data, "test", args.episodes)
    modes = args.modes or list(ADAPTER_MODES)
    for mode in modes:
        learner = adapter(mode, backbone, algo.config.n_classes).eval()
        progress, parts = Progress(f"adapters {mode}", len(episodes)), []
        cpu0, wall0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        for episode in episodes:
            parts.append(evaluate(learner, [episode], progress=False))
            progress.step()
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        result = combine_results(parts)
        what = {"head": "a new linear head on the frozen backbone, SGD 0.01, 75 steps",
                "all": "the whole network with a new linear head, SGD 0.01 (both), 75 steps, from the "
                       "pretrained weights per episode",
                "tsa": "residual adapters + pre-classifier transform, 40 Adadelta steps, backbone frozen"}[mode]
        # --tag names a second comparison (e.g. the first 100 of the same episodes, where the slow
        # whole-network fine-tuning fits the CPU budget) beside the main one
        group = "adapters" if args.tag is None else f"adapters-{args.tag}"
        accuracy_record(f"md/{label}/{group}/{mode}/accuracy", result.to_dict(), episodes.describe(), args,
                        mode=mode, adaptation=what, backbone_run=str(run), checkpoint_step=step,
                        eval_cpu_s=round(cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime, 2),
                        eval_wall_s=round(time.perf_counter() - wall0, 2),
                        train_command=json.loads((run / "timing.json").read_text())["train_command"]
                        if (run / "timing.json").exists() else None)


def multi_source(args) -> None:
    tree = tree_root(args)
    steps = ([f"train.steps={args.steps}"] if args.steps else []) + args.set
    source = json.dumps([{"dataset": "folder-tree", "root": str(tree), "name": SYNTHETIC}])
    runs = {"omniglot": [], SYNTHETIC: tree_sets(args), f"omniglot+{SYNTHETIC}": [f"data.sources={source}"]}
    for trained_on, sets in runs.items():
        out = train_and_eval(PRESETS["protonet"], sets + steps, args.runs / "multi" / trained_on, args)
        per_source = out.get("per_source") or {trained_on: out["result"]}
        described = out["episodes"].get("sources", {trained_on: out["episodes"]})
        for name, result in per_source.items():
            eval_source = "omniglot" if name == "omniglot" else SYNTHETIC
            accuracy_record(f"md/multi/{trained_on}/{eval_source}/accuracy", result, described[name], args,
                            trained_on=trained_on, eval_source=eval_source, checkpoint_step=out["step"],
                            **timings(out), train_command=out["train_command"], eval_command=out["eval_command"],
                            note="ProtoNet, one training budget for every run; the synthetic tree is procedural "
                                 "textures (metalearn.data.synthetic_images), not a real dataset")


def speed(args) -> None:
    import torch

    from metalearn.presets import get_preset
    from metalearn.train.config import apply_overrides
    from metalearn.train.data import train_sampler
    from metalearn.train.distributed import Ranks
    from metalearn.train.loop import _meta_step, build_algorithm

    if args.speed_steps < 1:
        raise SystemExit("--speed-steps must be at least 1 (50 or more for a reported figure)")
    torch.set_num_threads(1)
    sets = tree_sets(args) if args.tree_as_omniglot else []
    root = [f"data.root={json.dumps(str(Path(args.data_root).resolve()))}"] if args.data_root else []
    cfg = apply_overrides(get_preset(PRESETS["protonet"]), sets + (root if not sets else []))
    label = data_label(args)
    sampler = train_sampler(cfg.data, seed=0)
    n = args.speed_steps
    sampler.sample()  # warm-up: the decoded cache opened
    t = time.perf_counter()
    for _ in range(n):
        sampler.draw_plan()
    plan_s = (time.perf_counter() - t) / n
    t = time.perf_counter()
    for _ in range(n):
        sampler.sample()
    episode_s = (time.perf_counter() - t) / n
    torch.manual_seed(0)
    algo = build_algorithm(cfg)
    params = [p for p in algo.parameters() if p.requires_grad]
    opt, ranks = torch.optim.Adam(params, lr=cfg.train.lr), Ranks()
    _meta_step(algo, opt, params, sampler.sample_batch(cfg.train.meta_batch), ranks, None)  # warm-up
    sampling = stepping = 0.0
    for _ in range(n):
        t0 = time.perf_counter()
        batch = sampler.sample_batch(cfg.train.meta_batch)
        t1 = time.perf_counter()
        _meta_step(algo, opt, params, batch, ranks, None)
        sampling, stepping = sampling + t1 - t0, stepping + time.perf_counter() - t1
    common = {"source": f"{label} {cfg.data.train_split}", "steps": n, "threads": 1,
              "meta_batch": cfg.train.meta_batch,
              "pool": {k: v for k, v in sampler.pool.describe().items() if k in ("kind", "n_classes", "n_groups")}}
    record(f"md/speed/{label}/plans_per_s", 1 / plan_s, "episodes/s", results=args.results,
           extra={**common, "note": "MetaDatasetSampler.draw_plan: the classes, shots and example indices"})
    record(f"md/speed/{label}/episodes_per_s", 1 / episode_s, "episodes/s", results=args.results,
           extra={**common, "note": "MetaDatasetSampler.sample: the plan and its images gathered"})
    record(f"md/speed/{label}/sampling_share_of_step", sampling / (sampling + stepping), "fraction",
           higher_is_better=False, results=args.results,
           extra={**common, "sampling_s": round(sampling / n, 6), "step_s": round(stepping / n, 6),
                  "target": 0.05, "note": "time drawing the meta-batch / (that + the ProtoNet meta-step), "
                                          "the same process, one thread"})


def latest(results: Path) -> dict[str, dict]:
    rows = {}
    for line in results.read_text().splitlines() if results.exists() else []:
        if line.strip() and (row := json.loads(line))["name"].startswith("md/"):
            rows[row["name"]] = row
    return rows


def _minutes(s) -> str:
    return "" if s is None else (f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min")


def _acc(r: dict) -> str:
    return f"{100 * r['value']:.2f} ± {100 * r['ci95']:.2f}"


def table_block(rows: dict[str, dict]) -> str:
    lines = ["## Meta-Dataset protocol (issue 22)", "",
             "Fixed seeded test episodes (mean ± 95% CI, % accuracy), Meta-Dataset's sampler (one alphabet per "
             f"episode, 5-50 ways, imbalanced shots). Conditions that differ from the leaderboard: {CONDITIONS}.", ""]
    commands: dict[str, None] = {}
    for label in ("omniglot", SYNTHETIC):
        present = [m for m in METHODS if f"md/{label}/{m}/accuracy" in rows]
        if present:
            lines += [f"Trained and tested on {label} (md-train / md-test):", "",
                      "| method | accuracy | episodes | leaderboard (all sources, ResNet-18) | train wall / CPU | "
                      "eval CPU | commands |", "|---|---|---|---|---|---|---|"]
            for m in present:
                r = rows[f"md/{label}/{m}/accuracy"]
                board = f"{100 * r['baseline_value']:.2f} ({r['baseline']})" if "baseline_value" in r else "—"
                lines.append(f"| {LABELS[m]} | {_acc(r)} | {r['n_episodes']} | {board} | "
                             f"{_minutes(r.get('train_wall_s'))} / {_minutes(r.get('train_cpu_s'))} | "
                             f"{_minutes(r.get('eval_cpu_s'))} | `{r['train_command']}`; `{r['eval_command']}` |")
            lines += ["", "Finetune is Meta-Dataset's as its best configs run it: a new linear head only, SGD "
                      "at 0.01 for 75 steps on each support set.", ""]
        groups = sorted({n.split("/")[2] for n in rows if n.startswith(f"md/{label}/adapters")})
        for group in groups:
            modes = [m for m in ADAPTER_MODES if f"md/{label}/{group}/{m}/accuracy" in rows]
            lines += [f"One pretrained backbone ({label}, the Finetune run's best checkpoint), the same test "
                      f"episodes ({group}):", "", "| adaptation | accuracy | episodes | eval wall / CPU | "
                      "what is learned |", "|---|---|---|---|---|"]
            for m in modes:
                r = rows[f"md/{label}/{group}/{m}/accuracy"]
                lines.append(f"| {m} | {_acc(r)} | {r['n_episodes']} | {_minutes(r['eval_wall_s'])} / "
                             f"{_minutes(r['eval_cpu_s'])} | {r['adaptation']} |")
                commands[r["command"]] = None
            lines.append("")
    multi = sorted(n for n in rows if n.startswith("md/multi/"))
    if multi:
        lines += ["Multi-source (ProtoNet, the same budget per run; the image folder is the SYNTHETIC tree of "
                  "`metalearn.data.synthetic_images`, procedural textures, not a real dataset):", "",
                  "| trained on | evaluated on | accuracy | episodes | train wall / CPU | commands |",
                  "|---|---|---|---|---|---|"]
        for n in multi:
            r = rows[n]
            lines.append(f"| {r['trained_on']} | {r['eval_source']} | {_acc(r)} | {r['n_episodes']} | "
                         f"{_minutes(r.get('train_wall_s'))} / {_minutes(r.get('train_cpu_s'))} | "
                         f"`{r['train_command']}`; `{r['eval_command']}` |")
        lines.append("")
    speeds = sorted(n for n in rows if n.startswith("md/speed/"))
    if speeds:
        lines += ["| speed (one thread) | value | unit |", "|---|---|---|"]
        for n in speeds:
            lines.append(f"| {n} | {rows[n]['value']:.4g} | {rows[n]['unit']} |")
            commands[rows[n]["command"]] = None
        lines.append("")
    if commands:
        lines += ["Benchmark commands:", "", *[f"    {c}" for c in commands], ""]
    return "\n".join(lines).rstrip()


def table(args) -> None:
    rows = latest(args.results)
    if not rows:
        raise SystemExit(f"no md/ figures in {args.results}: run omniglot, adapters, multi-source or speed first")
    write_block(args.results_md, START, END, table_block(rows))
    print(f"# wrote {args.results_md}", file=sys.stderr)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("command", choices=("omniglot", "adapters", "multi-source", "speed", "table"))
    p.add_argument("methods", nargs="*", help=f"omniglot: of {', '.join(METHODS)} (default all)")
    p.add_argument("--runs", type=Path, default=Path("runs/metadataset"), help="folder of the training runs")
    p.add_argument("--data-root", default=None, help="the folder holding omniglot/ (default: $METALEARN_DATA)")
    p.add_argument("--steps", type=int, default=None, help="override train.steps of the presets (smoke tests)")
    p.add_argument("--set", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                   help="a config override for every training (e.g. data.val_episodes=4 in smoke tests)")
    p.add_argument("--episodes", type=int, default=600, help="fixed test episodes (>= 600 for a reported figure)")
    p.add_argument("--modes", nargs="+", choices=ADAPTER_MODES, default=None, help="adapters: which (default all)")
    p.add_argument("--tag", default=None, help="adapters: record the figures as md/DATA/adapters-TAG/... (a second comparison, e.g. on fewer episodes)")
    p.add_argument("--tree", type=Path, default=None, help="the synthetic tree's folder (default RUNS/synthetic-tree)")
    p.add_argument("--tree-as-omniglot", action="store_true",
                   help="omniglot/adapters/speed on the synthetic tree instead of Omniglot (smoke tests)")
    p.add_argument("--speed-steps", type=int, default=50, help="speed: sampler draws and training steps timed")
    p.add_argument("--results", type=Path, default=RESULTS, help="results file to append to / read")
    p.add_argument("--results-md", type=Path, default=RESULTS_MD, help="table: the markdown file to update")
    args = p.parse_args()
    args.runs = args.runs.resolve()
    if args.methods and args.command != "omniglot":
        raise SystemExit(f"{args.command} takes no methods (got {args.methods})")
    start = time.time()
    {"omniglot": omniglot, "adapters": adapters, "multi-source": multi_source, "speed": speed,
     "table": table}[args.command](args)
    print(f"# {args.command} done in {time.time() - start:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
