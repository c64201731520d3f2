"""The ``metalearn`` command: train, eval, adapt, recommend, list, prepare-data.

Bad input (unknown names, wrong types, missing checkpoints, unusable folders) ends with a
one-paragraph message naming the fix and exit status 2, never a traceback (set
``METALEARN_DEBUG=1`` to see one).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import errno
import json
import os
import sys
import warnings
from pathlib import Path

DEFAULT_RUNS = "runs"
MODIFIED = "+modified"
"""Appended to a preset's name when ``--set`` changes its recipe and no ``--name`` is given."""
#: Keys that say where and how to run, not what: setting them keeps the preset's name.
_ENVIRONMENT_KEYS = ("name", "data.root", "train.device", "train.tensorboard")


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows every default; help texts that already explain theirs ("default ...") are kept."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.default is False:
            return text + " (off by default)"
        if "default" in text or action.default in (None, argparse.SUPPRESS):
            return text
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose ``epilog`` may be a function, called only when the help is shown.

    The ``train`` epilog lists every config key, read from :mod:`metalearn.train.config`; building
    it for every command line would cost each call that module's imports.
    """

    def format_help(self) -> str:
        if callable(self.epilog):
            self.epilog = self.epilog()
        return super().format_help()


def _config_keys_help() -> str:
    from metalearn.train.config import (
        AlgorithmConfig,
        DataConfig,
        ModelConfig,
        TrainConfig,
        field_docs,
    )

    lines = ["config keys for --set (section.field=value; JSON values, e.g. [40,40], true, null):"]
    for section, cls in (("data", DataConfig), ("model", ModelConfig), ("algorithm", AlgorithmConfig),
                         ("train", TrainConfig)):
        docs = field_docs(cls)
        for f in dataclasses.fields(cls):
            if f.name == "options":
                continue
            default = f.default if f.default is not dataclasses.MISSING else "{}"
            lines.append(f"  {section}.{f.name} (default {default!r}): {docs.get(f.name, '')}")
    lines.append("  model.<option>, algorithm.<option> (or model.options.<option>, ...): options of "
                 "the chosen backbone and algorithm; `metalearn list --options NAME` shows them")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="metalearn", formatter_class=_Formatter,
                description="Meta-learning on PyTorch: meta-train, evaluate with "
                            "confidence intervals, adapt to your own classes.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    t = sub.add_parser("train", formatter_class=_Formatter, help="meta-train a preset",
                       description="Meta-train a preset into a run directory (config.json, "
                                   "metrics.jsonl, checkpoints/, learning_curve.png).",
                       epilog=_config_keys_help)
    t.add_argument("--preset", help="preset name (`metalearn list presets`); no default, optional "
                   "with --resume")
    t.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config field, e.g. --set algorithm.inner_lr=0.4 (repeatable)")
    t.add_argument("--data-root", help="dataset folder (sets data.root; default $METALEARN_DATA)")
    t.add_argument("--name", help="name of the run (sets the config's name; default: the preset's, "
                   f"with '{MODIFIED}' appended when --set changes its recipe)")
    t.add_argument("--out", help=f"run directory: new, empty or a run's (default {DEFAULT_RUNS}/<name>)")
    t.add_argument("--resume", action="store_true", help="continue the run in --out from its last "
                   "checkpoint; --set train.steps=N with a higher N trains it longer")
    t.add_argument("--force", action="store_true", help="with --resume, accept any other config change")
    t.add_argument("--overwrite", action="store_true",
                   help="start over in --out, deleting the files the run wrote there (config, "
                   "checkpoints, metrics, curve, TensorBoard, eval results) and nothing else")
    t.add_argument("--device", help="cpu, cuda, cuda:N or auto (sets train.device; default: the "
                   "preset's, auto = CUDA when available)")
    t.add_argument("--show-config", action="store_true", help="print the resolved config and exit")
    t.add_argument("--quiet", action="store_true", help="no progress bar or messages")

    e = sub.add_parser("eval", formatter_class=_Formatter, help="evaluate a run on fixed episodes",
                       description="Evaluate a trained run on fixed, seeded episodes; prints mean "
                                   "± 95% CI and writes RUN_DIR/eval_<split>.json.")
    e.add_argument("run_dir", metavar="RUN_DIR")
    e.add_argument("--episodes", type=int, help="number of episodes (default: data.test_episodes "
                   "of the run, 600 or more)")
    e.add_argument("--split", default="test", choices=["test", "val"], help="class split to evaluate on")
    e.add_argument("--seed", type=int, help="episode seed (default: data.test_seed / data.val_seed)")
    e.add_argument("--checkpoint", default="best", choices=["best", "last"], help="which weights")
    e.add_argument("--n-way", type=int, help="classes per episode (default: the run's data.eval_n_way); "
                   "e.g. test a ProtoNet trained 60-way at 5-way and at 20-way")
    e.add_argument("--k-shot", type=int, help="support examples per class (default: the run's data.eval_k_shot)")
    e.add_argument("--batch-size", type=int, default=1, help="episodes adapted together (when the "
                   "algorithm supports it)")
    e.add_argument("--data-root", help="dataset folder (default: the run's data.root)")
    e.add_argument("--device", help="cpu, cuda, ... (default: the run's train.device)")
    e.add_argument("--quiet", action="store_true", help="print only the result line")

    a = sub.add_parser("adapt", formatter_class=_Formatter, help="adapt a run to your own classes",
                       description="Adapt a meta-trained run to the classes in --support and "
                                   "classify --query. Image runs: SUPPORT/<class>/<images> (a few "
                                   "per class) and a query folder (flat, or in class folders to also "
                                   "score). Text runs: a CSV/TSV/JSONL of labelled sentences and a "
                                   ".txt of sentences (one per line) or a CSV/TSV/JSONL (with labels "
                                   "to also score).")
    a.add_argument("run_dir", metavar="RUN_DIR")
    a.add_argument("--support", required=True, metavar="PATH",
                   help="labelled examples: DIR/<class>/<images>, or a file of sentences and labels")
    a.add_argument("--query", required=True, metavar="PATH",
                   help="images to classify (flat or DIR/<class>/), or sentences (.txt, .csv, .tsv, .jsonl)")
    a.add_argument("--out", default="predictions.csv", help="CSV with one row per query")
    a.add_argument("--text-column", default="text", help="text runs: the column holding the sentences")
    a.add_argument("--label-column", default="label", help="text runs: the column holding the labels")
    a.add_argument("--reject", type=float, nargs="?", const=0.05, metavar="QUANTILE",
                   help="answer out_of_scope for queries scored below a threshold calibrated on the "
                   "support set alone (leave one out; QUANTILE of the support's scores fall below it, "
                   "default 0.05); needs two or more examples per class")
    a.add_argument("--checkpoint", default="best", choices=["best", "last"], help="which weights")
    a.add_argument("--device", help="cpu, cuda, ... (default: the run's train.device)")
    a.add_argument("--transductive", action="store_true",
                   help="normalise with the statistics of all the query images together, as the "
                   "benchmarks do (a prediction then depends on the other images); by default each "
                   "image is classified on its own with the support set")

    r = sub.add_parser("recommend", formatter_class=_Formatter, help="recommend items to a new user",
                       description="Adapt a meta-trained recommender to a new user's few ratings "
                                   "(--ratings, a CSV with columns item,rating; item = id or title) "
                                   "and list the unrated items with the highest predicted rating.")
    r.add_argument("run_dir", metavar="RUN_DIR")
    r.add_argument("--ratings", required=True, metavar="CSV", help="the new user's ratings: columns "
                   "item (id or title) and rating")
    r.add_argument("--top", type=int, default=10, help="how many items to recommend")
    r.add_argument("--user", action="append", default=[], metavar="ATTR=VALUE",
                   help="an attribute of the new user, e.g. --user gender=F --user age=25-34 "
                   "(values as in the data; unknown ones are left out)")
    r.add_argument("--out", metavar="CSV", help="also write the recommendations to this CSV")
    r.add_argument("--data-root", help="dataset folder (default: the run's data.root)")
    r.add_argument("--checkpoint", default="best", choices=["best", "last"], help="which weights")
    r.add_argument("--device", help="cpu, cuda, ... (default: the run's train.device)")

    s = sub.add_parser("list", formatter_class=_Formatter,
                       help="list presets, algorithms, backbones, datasets")
    s.add_argument("kind", nargs="?", default="all",
                   choices=["all", "presets", "algorithms", "backbones", "datasets"])
    s.add_argument("--options", metavar="NAME", help="show the options of one algorithm or backbone")

    d = sub.add_parser("prepare-data", formatter_class=_Formatter, help="download/import and cache a dataset",
                       description="Download (or import from --from), verify and cache a dataset; "
                                   "report its counts.")
    d.add_argument("dataset", choices=["omniglot", "banking77", "clinc150", "hwu64", "movielens-100k",
                                       "movielens-1m"])
    d.add_argument("--data-root", help="where datasets live (default $METALEARN_DATA or ~/.cache/metalearn)")
    d.add_argument("--from", dest="source", metavar="PATH", help="folder to import instead of downloading: "
                   "Omniglot's images_background.zip and images_evaluation.zip (or their extracted "
                   "folders); an intent dataset's files as its MANIFEST lists them (with splits/); "
                   "MovieLens: its official zip or extracted folder")
    d.add_argument("--image-size", type=int, default=28, help="side of the cached images")
    return p


DEMO_MINUTES = {"demo": 6.5, "demo-omniglot": 6.5}
"""Measured wall-clock minutes of ``make demo`` per demo preset, training plus the 600-episode
evaluation, on a 2-core machine shared with other jobs (load average 5-7), once each: demo 392 s
(train 386 s, eval 5 s), demo-omniglot 392 s (train 354 s, eval 38 s). ``train`` prints them
when it starts; the Makefile and README quote them. Re-measure with ``time make demo`` (with
and without Omniglot under the data root)."""


def _print(*a) -> None:
    if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 alone speaks (errors: every rank)
        print(*a, flush=True)


def _run_name(base, cfg, preset: str | None, name: str | None) -> str:
    """The run's name: ``--name``; else a preset's name plus :data:`MODIFIED` when the config
    differs from the preset in more than :data:`_ENVIRONMENT_KEYS`; else the config's own."""
    from metalearn.train.config import ConfigError, changes

    if name is not None:
        if not name.strip() or any(c in name for c in '/\\:*?"<>|') or name in (".", ".."):
            raise ConfigError(f"--name {name!r} must be usable as a folder name (no / \\ : * ? \" < > |)")
        return name
    if preset is not None and cfg.name == base.name and set(changes(base, cfg)) - set(_ENVIRONMENT_KEYS):
        return base.name + MODIFIED
    return cfg.name


def _is_rl_train(args) -> bool:
    from metalearn.presets import RL_PRESETS

    if args.preset is not None:
        return args.preset in RL_PRESETS
    from metalearn.rl.loop import is_rl_run

    return bool(args.out) and is_rl_run(args.out)


def _cmd_train(args) -> int:
    if _is_rl_train(args):  # a meta-RL preset or run: its own config and loop (metalearn.rl)
        from metalearn.presets import RL_PRESETS
        from metalearn.rl.loop import train_command

        return train_command(args, RL_PRESETS)
    from metalearn.presets import get_preset
    from metalearn.train.config import ConfigError, RunConfig, apply_overrides
    from metalearn.train.loop import train
    from metalearn.train.runlog import is_run_dir, remove_run_files

    overrides = list(args.overrides)
    if args.data_root:
        overrides.append(f"data.root={json.dumps(str(Path(args.data_root).resolve()))}")
    if args.device:
        overrides.append(f"train.device={args.device}")
    if args.preset is None and not args.resume:
        raise ConfigError("give --preset NAME (see `metalearn list presets`), or --resume --out RUN_DIR")
    if args.preset is None:
        if not args.out:
            raise ConfigError("--resume without --preset needs --out RUN_DIR")
        cfg_path = Path(args.out) / "config.json"
        if not cfg_path.is_file():
            raise ConfigError(f"{cfg_path} not found: {args.out} is not a run directory")
        try:
            saved = json.loads(cfg_path.read_text())
        except json.JSONDecodeError as e:
            raise ConfigError(f"{cfg_path} is not valid JSON ({e}); the file is damaged: restore it "
                              "or start the run again with --preset") from None
        base = RunConfig.from_dict(saved)
    else:
        base = get_preset(args.preset)
    cfg = apply_overrides(base, overrides)
    cfg.name = _run_name(base, cfg, args.preset, args.name)
    if args.show_config:
        _print(json.dumps(cfg.to_dict(), indent=1))
        return 0
    out = Path(args.out or Path(DEFAULT_RUNS) / cfg.name)
    if not args.quiet:
        _print(f"training {cfg.name}: {cfg.algorithm.name} on {cfg.data.dataset}, "
               f"{cfg.train.steps} steps -> {out}")
        if args.preset in DEMO_MINUTES and not args.overrides:  # the measured budget, unchanged
            _print(f"demo: training and evaluation take about {DEMO_MINUTES[args.preset]:g} min on "
                   "2 CPU cores (measured on a shared 2-core machine)")
    # under torchrun rank 0 alone deletes, before train() joins the process group: no rank passes
    # that rendezvous (and checks for an existing run) before the deletion is done
    # (only a run directory's own files: a folder of anything else is refused by train())
    if args.overwrite and not args.resume and os.environ.get("RANK", "0") == "0" and is_run_dir(out):
        remove_run_files(out, keep=("config.json",))
    result = train(cfg, out, resume=args.resume, force=args.force, quiet=args.quiet)
    best = f"best validation {result.best} at step {result.best_step}" if result.best else "no validation"
    _print(f"done: {result.steps} steps in {result.seconds:.0f} s; {best}")
    _print(f"checkpoints: {out / 'checkpoints'}  curve: {out / 'learning_curve.png'}  "
           f"metrics: {out / 'metrics.jsonl'}")
    return 0


def _cmd_eval(args) -> int:
    from metalearn.rl.loop import is_rl_run

    if is_rl_run(args.run_dir):  # returns before/after adaptation on fixed test tasks
        from metalearn.rl.evaluate import eval_command

        return eval_command(args)
    from metalearn.train.data import check_run_tokenizer, fixed_episodes
    from metalearn.train.distributed import setup as setup_distributed
    from metalearn.train.loop import load_run, pick_device

    root = str(Path(args.data_root).resolve()) if args.data_root else None
    algo, cfg, step = load_run(args.run_dir, args.checkpoint, args.device, data_root=root)
    # a text run's episodes are tokenised again: with the vocabulary its checkpoint was trained on
    check_run_tokenizer(cfg, args.run_dir, args.split)
    if args.episodes is not None and args.episodes < 1:
        raise ValueError(f"--episodes must be at least 1, got {args.episodes}")
    suffix = ""  # a shape other than the run's own gets its own result file
    for name, value in (("n_way", args.n_way), ("k_shot", args.k_shot)):
        if value is not None:
            if value < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
            if name == "n_way" and cfg.data.n_way is None:
                raise ValueError(f"{cfg.name} is a regression run: --n-way does not apply")
            setattr(cfg.data, f"eval_{name}", value)
            way, shot, _ = cfg.data.eval_shape()
            suffix = f"_{way}w{shot}s" if way else f"_{shot}shot"
    if cfg.data.episodes == "meta-dataset" and (args.n_way is not None or args.k_shot is not None):
        raise ValueError(f"{cfg.name} draws Meta-Dataset episodes (5-50 ways, variable shots): --n-way "
                         "and --k-shot do not apply; evaluate with its own protocol")
    episodes = fixed_episodes(cfg.data, args.split, args.episodes, args.seed)
    n_way, k_shot, n_query = cfg.data.eval_shape()
    shape = f"{n_way}-way {k_shot}-shot" if n_way else f"{k_shot}-shot regression"
    if cfg.data.episodes == "meta-dataset":
        shape = "Meta-Dataset (variable-way, variable-shot)"
    parts = episodes.by_source() if hasattr(episodes, "by_source") else None
    ranking_k = getattr(episodes, "ranking_k", ())  # a recommender's users: nDCG@k too
    if ranking_k:
        if args.k_shot is not None:
            raise ValueError(f"{cfg.name} is a recommendation run: its support sizes are set by "
                             f"data.protocol ({cfg.data.protocol}); --k-shot does not apply")
        shape = f"user ({cfg.data.protocol} protocol)"
    # under torchrun each rank evaluates a strided share of the episodes; the gathered result is
    # that of the whole set, and rank 0 alone prints and writes it
    ranks, device = setup_distributed(pick_device(args.device or cfg.train.device))
    try:
        algo.to(device)
        if not args.quiet:
            _print(f"evaluating {cfg.name} (checkpoint {args.checkpoint}, step {step}) on {len(episodes)} "
                   f"fixed {shape} episodes of {cfg.data.dataset} {args.split} (seed {episodes.seed})"
                   + (f" over {ranks.world} processes" if ranks.world > 1 else ""))
        progress = None if not args.quiet else False
        if parts is None:
            result, per_source = ranks.evaluate(algo, episodes, batch_size=args.batch_size, progress=progress,
                                                ranking_k=ranking_k), {}
        else:  # several sources: each its own result and CI, then all episodes together
            from metalearn.eval import combine_results

            per_source = {name: ranks.evaluate(algo, eps, batch_size=args.batch_size, progress=progress,
                                               desc=f"eval {name}") for name, eps in parts.items()}
            result = combine_results(list(per_source.values()))
    finally:
        ranks.close()
    if not ranks.is_main:
        return 0
    record = {"run": cfg.name, "checkpoint": args.checkpoint, "step": step, "split": args.split,
              "episodes": episodes.describe(), "result": result.to_dict()}
    if per_source:
        record["per_source"] = {name: r.to_dict() for name, r in per_source.items()}
    path = Path(args.run_dir) / f"eval_{args.split}{suffix}.json"
    path.write_text(json.dumps(record, indent=1))
    for name, r in per_source.items():
        _print(f"{cfg.name} {args.split} [{name}]: {r}")
    _print(f"{cfg.name} {args.split}{' [all sources]' if per_source else ''}: {result}")
    for k, (m, c) in result.reported_extra().items():  # regression's MAE/RMSE/nDCG; macro F1 if imbalanced
        _print(f"  {k}: {m:.4f} ± {c:.4f}")
    if not args.quiet:
        _print(f"written {path} ({result.seconds:.1f} s)")
    return 0


def _cmd_adapt(args) -> int:
    from metalearn.eval.fewshot import AdaptInputError, load_images
    from metalearn.train.config import RunConfig
    from metalearn.train.data import image_format
    from metalearn.train.loop import load_classifier

    out = Path(args.out)  # checked first: a bad --out should not cost an adaptation
    if out.is_dir():
        raise ValueError(f"--out {out} is a folder: give a file name, e.g. --out {out / 'predictions.csv'}")
    blocker = next((p for p in out.parents if p.exists()), None)
    if blocker is not None and not blocker.is_dir():
        raise ValueError(f"--out {out}: {blocker} is a file, not a folder; choose another --out path")
    clf = load_classifier(args.run_dir, args.checkpoint, args.device)
    clf.query_independent = not args.transductive
    data = RunConfig.from_dict(json.loads((Path(args.run_dir) / "config.json").read_text())).data
    if clf.tokenizer is not None:  # a text run: sentences in files
        from metalearn.data.intents import read_queries, read_text_file

        sx, sy = read_text_file(args.support, args.text_column, args.label_column)
        qx, qy = read_queries(args.query, args.text_column, args.label_column)
        names, unit = list(qx), "sentence"
    else:
        fmt = image_format(data)
        if fmt is None:
            raise AdaptInputError(f"{args.run_dir} was trained on {data.dataset}, not images or text")
        sx, sy, _ = load_images(args.support, data.image_size, *fmt)
        qx, qy, qfiles = load_images(args.query, data.image_size, *fmt, labelled=False)
        names, unit = [str(f) for f in qfiles], "image"
    clf.fit(sx, sy)
    if args.reject is not None:
        clf.calibrate_rejection(args.reject)
    proba = clf.predict_proba(qx)
    pred = clf.predict(qx) if args.reject is not None else clf.classes_[proba.argmax(1)]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rejecting = args.reject is not None
    with open(out, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text" if unit == "sentence" else "file", "predicted", *(["true"] if qy else []),
                    *(["out_of_scope"] if rejecting else []), *(f"p_{c}" for c in clf.classes_)])
        for i, name in enumerate(names):
            w.writerow([name, pred[i], *([qy[i]] if qy else []),
                        *([str(pred[i] == clf.out_of_scope_label).lower()] if rejecting else []),
                        *(f"{p:.6f}" for p in proba[i])])
    counts = {c: sum(label == c for label in sy) for c in clf.classes_}
    _print(f"adapted to {len(clf.classes_)} classes from {len(sy)} support {unit}s "
           f"({', '.join(f'{c}: {n}' for c, n in counts.items())}); "
           + (f"transductive: the query {unit}s normalised together" if args.transductive else
              f"each query {unit} classified on its own with the support set"))
    if rejecting:
        _print(f"out-of-scope threshold {clf.threshold_:.4g} (the {args.reject:g} quantile of the "
               f"support's leave-one-out scores): {sum(p == clf.out_of_scope_label for p in pred)} "
               f"of {len(pred)} queries rejected")
    for i, name in enumerate(names[:20]):
        shown = Path(name).name if unit == "image" else (name if len(name) <= 60 else name[:57] + "...")
        _print(f"  {shown}: {pred[i]} (p={proba[i].max():.3f})" + (f", true {qy[i]}" if qy else ""))
    if len(names) > 20:
        _print(f"  ... {len(names) - 20} more")
    if qy:
        acc = sum(p == t for p, t in zip(pred, qy)) / len(qy)
        _print(f"accuracy on the labelled queries: {100 * acc:.1f}% ({len(qy)} {unit}s)")
    _print(f"written {out} ({len(names)} rows)")
    return 0


def _first_line(obj) -> str:
    return ((obj.__doc__ or "").strip().splitlines() or [""])[0]


def _cmd_list_options(name: str) -> int:
    """``metalearn list --options NAME``: one algorithm's or backbone's options."""
    from metalearn.algorithms import ALGORITHMS
    from metalearn.models import BACKBONES
    from metalearn.train.config import ConfigError, component_options, options_class, suggest

    table = {**{k: (v, 0) for k, v in BACKBONES.items()}, **{k: (v, 1) for k, v in ALGORITHMS.items()}}
    if name not in table:
        raise ConfigError(f"unknown algorithm or backbone {name!r}.{suggest(name, table)}")
    cls, skip = table[name]
    prefix = "algorithm" if skip else "model"
    _print(f"{name}: {_first_line(cls)}")
    for field, opt in component_options(options_class(cls, skip)).items():
        tp = getattr(opt.annotation, "__name__", str(opt.annotation)).replace("typing.", "")
        _print(f"  {prefix}.{field} ({tp}, default {opt.default!r}): {opt.doc}")
    return 0


def _listing() -> dict[str, list[tuple[str, str]]]:
    """The name tables, each name with its one-line description."""
    from metalearn.algorithms import ALGORITHMS
    from metalearn.data.registry import DATASETS
    from metalearn.models import BACKBONES
    from metalearn.presets import PRESETS, RL_PRESETS, describe

    return {
        "presets": [(k, describe(k)) for k in (*PRESETS, *RL_PRESETS)],
        "algorithms": [(k, _first_line(v)) for k, v in ALGORITHMS.items()],
        "backbones": [(k, _first_line(v)) for k, v in BACKBONES.items()],
        "datasets": [(k, v.description) for k, v in DATASETS.items()],
    }


def _cmd_list(args) -> int:
    if args.options:
        return _cmd_list_options(args.options)
    sections = _cached_listing()
    for kind, rows in sections.items():
        if args.kind not in ("all", kind):
            continue
        _print(f"{kind}:")
        width = max(len(k) for k, _ in rows)
        for k, line in rows:
            _print(f"  {k:<{width}}  {line}")
    return 0


def _code_fingerprint(package: Path) -> str:
    """A digest of every source file's path, size and modification time under ``package``:
    it changes whenever the code that the listing describes does (an edit, an upgrade)."""
    import hashlib

    h = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        st = path.stat()
        h.update(f"{path.relative_to(package)}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def _cached_listing() -> dict:
    """The sections of ``metalearn list``, kept on disk per version of the code.

    Building them imports torch and every algorithm to read their docstrings (about 1.7 s on
    our 2-core machine); a listing cached for the same code answers without importing torch
    (about 0.1 s). The cache is ``$METALEARN_CACHE/cli`` (else ``~/.cache/metalearn/cli``); a
    cache that cannot be written is skipped.
    """
    package = Path(__file__).resolve().parents[1]
    base = Path(os.environ.get("METALEARN_CACHE") or Path.home() / ".cache" / "metalearn")
    path = base.expanduser() / "cli" / f"list-{_code_fingerprint(package)}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        pass
    sections = _listing()
    from metalearn.data.cache import atomic_write  # torch is loaded by now anyway

    try:
        atomic_write(path, lambda f: json.dump(sections, f), mode="w")
    except OSError:
        pass
    return sections


def _prepare_intents(args) -> int:
    """``metalearn prepare-data banking77|clinc150|hwu64``: import or download, verify, tokenise
    and cache each fold's splits, and report their counts."""
    import shutil

    from metalearn.data.cache import cache_dir, data_root
    from metalearn.data.intents import INTENT_DATASETS, SOURCES, _expected_files, locate_intents

    root, name = data_root(args.data_root), args.dataset
    target = root / SOURCES[name].folder
    if args.source:
        src = Path(args.source).expanduser()
        base = src / SOURCES[name].folder if (src / SOURCES[name].folder).is_dir() else src
        for rel in _expected_files(name):
            cand, dest = base / rel, target / rel
            if not cand.is_file():
                raise FileNotFoundError(f"--from {src} lacks {rel}: point it at the folder holding "
                                        f"{', '.join(SOURCES[name].files)} and splits/")
            if not dest.exists():
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(cand, dest)
        _print(f"imported {base} -> {target}")
    folder = locate_intents(name, root, download=args.source is None)
    _print(f"{name} in {folder}:")
    for fold in range(1, 6):
        parts = [INTENT_DATASETS[name](split, fold=fold, root=root) for split in ("train", "val", "test")]
        counts = ", ".join(f"{p.split} {p.num_classes} intents / {len(p)} utterances" for p in parts)
        _print(f"  fold {fold}: {counts}; vocabulary {parts[0].tokenizer.vocab_size} tokens")
    _print(f"cache: {cache_dir(None, root)}")
    return 0


def _prepare_movielens(args) -> int:
    """``metalearn prepare-data movielens-100k|movielens-1m``: import (``--from``) or download and
    verify the archive, read it, and report its counts and each protocol's users."""
    import shutil

    from metalearn.data.cache import data_root
    from metalearn.data.ratings import download_movielens, locate_movielens, read_movielens
    from metalearn.data.user_tasks import UserTasks

    root, name = data_root(args.data_root), args.dataset
    if args.source:
        src = Path(args.source).expanduser()
        read_movielens(src)  # refuses a wrong layout before anything is copied
        dest = root / (name + (".zip" if src.is_file() else ""))
        if not dest.exists():
            dest.parent.mkdir(parents=True, exist_ok=True)
            (shutil.copy2 if src.is_file() else shutil.copytree)(src, dest)
            _print(f"imported {src} -> {dest}")
    else:
        download_movielens(name, root)
    table = read_movielens(locate_movielens(name, root))
    _print(f"{name}: {table.n_users} users, {table.n_items} items, {table.n_ratings} ratings; "
           f"item attributes {[a.name for a in table.item_attrs]}, user attributes "
           f"{[a.name for a in table.user_attrs]}")
    for protocol in ("melu", "mamo"):
        sizes = {s: len(UserTasks(table, s, protocol, quiet=True)) for s in ("train", "val", "test")}
        _print(f"  {protocol} protocol (random 8:1:1 users): " + ", ".join(f"{k} {v}" for k, v in sizes.items()))
    return 0


def _cmd_recommend(args) -> int:
    import csv

    from metalearn.eval.recommend import RecommendInputError, read_user_ratings, recommend
    from metalearn.train.loop import load_recommender, pick_device

    attributes = {}
    for pair in args.user:
        if "=" not in pair:
            raise RecommendInputError(f"--user {pair!r}: write ATTRIBUTE=VALUE, e.g. --user gender=F")
        key, value = pair.split("=", 1)
        attributes[key.strip()] = value.strip()
    algo, tasks, cfg = load_recommender(args.run_dir, args.checkpoint, args.device, data_root=args.data_root)
    items, ratings = read_user_ratings(args.ratings, tasks)
    device = pick_device(args.device or cfg.train.device)
    recs = recommend(algo, tasks, items, ratings, top=args.top, attributes=attributes, device=device)
    _print(f"{cfg.name}: {len(items)} ratings in, the {len(recs)} unrated items with the highest "
           f"predicted rating ({cfg.data.dataset}, {tasks.table.n_items} items):")
    width = max(len(r.title) for r in recs)
    for r in recs:
        _print(f"  {r.rank:3d}. {r.title:<{width}}  (item {r.item_id})  {r.predicted:.2f}")
    if args.out:
        with open(args.out, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["rank", "item", "title", "predicted_rating"])
            w.writerows([r.rank, r.item_id, r.title, f"{r.predicted:.4f}"] for r in recs)
        _print(f"written {args.out}")
    return 0


def _cmd_prepare(args) -> int:
    import shutil

    from metalearn.data import Omniglot
    from metalearn.data.cache import data_root

    if args.dataset.startswith("movielens"):
        return _prepare_movielens(args)
    if args.dataset != "omniglot":
        return _prepare_intents(args)
    root = data_root(args.data_root)
    target = root / "omniglot"
    if args.source:
        src = Path(args.source).expanduser()
        if not src.is_dir():
            raise FileNotFoundError(f"--from {src} is not a folder holding images_background.zip "
                                    "and images_evaluation.zip")
        target.mkdir(parents=True, exist_ok=True)
        for part in ("images_background", "images_evaluation"):
            for cand in (src / f"{part}.zip", src / part, src / "omniglot" / f"{part}.zip"):
                if cand.exists():
                    dest = target / cand.name
                    if dest.resolve() != cand.resolve() and not dest.exists():
                        (shutil.copytree if cand.is_dir() else shutil.copy2)(cand, dest)
                        _print(f"imported {cand} -> {dest}")
                    break
            else:
                raise FileNotFoundError(f"{src} holds neither {part}.zip nor {part}/: point --from at "
                                        "the folder with the Omniglot archives")
    _print(f"Omniglot under {root} (image size {args.image_size}):")
    for split in ("background", "evaluation", "vinyals-train", "vinyals-val", "vinyals-test"):
        ds = Omniglot(split, root=root, image_size=args.image_size, download=args.source is None)
        _print(f"  {split:<14} {ds.num_classes:5d} classes {len(ds):7d} images  item {ds.item_shape}")
    from metalearn.data.cache import cache_dir

    _print(f"cache: {cache_dir(None, root)}")
    return 0


def _exit_distributed(code: int) -> None:
    """End a torchrun worker now that its work is done and its process group is destroyed.

    At interpreter shutdown a rank occasionally aborted ("terminate called without an active
    exception": a native thread of the collective backend still joinable when C++ static
    destructors run), which made torchrun report a failed job after a complete run. Every file
    is written and closed by then, so the rank flushes its output and leaves with ``os._exit``,
    skipping that teardown.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``metalearn`` command; returns the exit status.

    Args:
        argv: Arguments without the program name; ``None`` reads ``sys.argv`` and, on glibc
            Linux, first re-executes the process once with a tuned allocator
            (:func:`metalearn._runtime.reexec_with_tuned_allocator`; ``METALEARN_NO_TUNE=1``
            skips it) for the commands that compute (:data:`_TUNED_COMMANDS`). Calls from
            Python with an explicit ``argv`` never re-execute.

    Python warnings raised while a command runs are shown as one ``metalearn: warning: ...``
    line each on stderr (:func:`_show_warning`); the library itself leaves ``warnings`` alone.
    """
    # Parsed before anything heavy is imported: --help, a usage error and `list` answer without
    # the tuned re-execution (a second interpreter start) and, but for `list`, without torch.
    args = _parser().parse_args(argv)
    if argv is None and args.command in _TUNED_COMMANDS:  # the real command line: tune malloc once
        from metalearn._runtime import reexec_with_tuned_allocator

        reexec_with_tuned_allocator()
    with warnings.catch_warnings():  # restores warnings.showwarning for callers from Python
        warnings.showwarning = _show_warning
        return _run(args, argv)


_TUNED_COMMANDS = ("train", "eval", "adapt", "recommend", "prepare-data")
"""Commands worth a re-execution with the tuned allocator (:mod:`metalearn._runtime`)."""


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """``warnings.showwarning`` of the command: one line, without the source location and line.

    A Python warning is meant for the programmer (``main.py:340: UserWarning`` and the source
    line); a command-line user needs only its text.
    """
    text = " ".join(str(message).split())
    kind = "" if category is UserWarning else f" ({category.__name__})"
    print(f"metalearn: warning: {text}{kind}", file=sys.stderr if file is None else file, flush=True)


def _usage_errors() -> tuple[type[Exception], ...]:
    """What the command reports as bad input (exit status 2), imported when one is raised."""
    from metalearn.eval.fewshot import AdaptInputError
    from metalearn.eval.recommend import RecommendInputError
    from metalearn.train.checkpoint import CheckpointError
    from metalearn.train.config import ConfigError

    return (ConfigError, CheckpointError, AdaptInputError, RecommendInputError, FileNotFoundError, NotADirectoryError,
            PermissionError, ValueError)


def _non_finite_loss_error() -> type[Exception]:
    from metalearn.train.loop import NonFiniteLossError

    return NonFiniteLossError


def _run(args: argparse.Namespace, argv: list[str] | None) -> int:
    """Run the parsed command; bad input becomes a one-paragraph message and exit status 2."""
    import importlib.util

    # core dependencies a broken install may lack (matplotlib is optional: without it a run
    # skips its learning_curve.png and says so)
    missing = [m for m in ("safetensors", "tqdm") if importlib.util.find_spec(m) is None]
    if missing and args.command in ("train", "eval", "adapt", "recommend"):
        print(f"metalearn {args.command}: error: needs {', '.join(missing)}: "
              f"pip install {' '.join(missing)}", file=sys.stderr)
        return 2
    handlers = {"train": _cmd_train, "eval": _cmd_eval, "adapt": _cmd_adapt, "list": _cmd_list,
                "recommend": _cmd_recommend, "prepare-data": _cmd_prepare}
    try:
        code = handlers[args.command](args)
        if argv is None and int(os.environ.get("WORLD_SIZE", "1")) > 1:
            _exit_distributed(code)
        return code
    except _usage_errors() as e:  # evaluated only when something was raised: no torch import before
        if os.environ.get("METALEARN_DEBUG"):
            raise
        print(f"metalearn {args.command}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # e.g. a download that failed: no traceback, but not a usage error
        if os.environ.get("METALEARN_DEBUG"):
            raise
        print(f"metalearn {args.command}: error: {e}", file=sys.stderr)
        # a read-only or full place the user chose (--out, --data-root, METALEARN_CACHE) is theirs to fix
        return 2 if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT) else 1
    except _non_finite_loss_error() as e:
        print(f"metalearn {args.command}: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\nmetalearn {args.command}: interrupted"
              + ("; continue with --resume" if args.command == "train" else ""), file=sys.stderr)
        return 130
