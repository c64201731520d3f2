"""Cold-start recommendation: meta-learners against four rating baselines on the same test users.

Every user is a task (issue 19; :mod:`metalearn.data.user_tasks`; references in
../shared/research/nextwave-references.md). Users are split 8:1:1 at random (seed 0) into
meta-train / validation / test, and each test user's ratings into support and query by one of
two protocols:

* ``melu`` (Lee et al., KDD 2019): users with 13-100 ratings; 10 random ratings the query, the
  rest (3-90) the support.
* ``mamo`` (Dong et al., KDD 2020): each user's first 20 ratings by time; the first 15 the
  support, the next 5 the query.

What is measured, per dataset, protocol and method, on every test user of the preset's config
(``metalearn.train.data.fixed_episodes(cfg.data, "test")``, the same users and query draws for
every method; the episode fingerprints are checked to agree): MAE and RMSE of the query ratings
(per user, then averaged), nDCG@3, @5 and @10 of the query items ranked by predicted rating
(MeLU's nDCG, ties at their expected gain) and MSE, each as mean ± 95% CI over test users; the
number of test users; the CPU seconds (training + evaluation of a meta-learner, from the
``metalearn`` child processes' rusage; fit + evaluation of a baseline, in this process). For each
meta-learner the paired per-user difference of its MSE against the best baseline's (lowest mean
MSE) is its own figure (``.../mse_minus_best_baseline``, negative = the meta-learner is better).

* Meta-learners (``melu``, ``maml``, ``meta-sgd``, ``cnp``) train and evaluate through the
  public command line: ``metalearn train --preset METHOD-DATASET --set data.protocol=P --out
  OUT/DATASET/P/METHOD`` then ``metalearn eval`` on it. A folder holding a finished run of the
  same config is reused (an unfinished one resumed, an existing evaluation kept).
* Baselines (``global-mean``, ``item-mean``, ``user-mean``, ``mf-ridge``:
  :mod:`metalearn.algorithms.rating_baselines`) are fitted in-process on the meta-training users'
  ratings of the same config (``build_source(cfg.data, "train").train_ratings()``).
* ``generator-oracle`` (synthetic datasets only): not a method but the ceiling of every method,
  the generator's true model (:class:`metalearn.data.synthetic_ratings.TrueRatingModel`, read back
  from the parameters and seed recorded with the data). It predicts each query rating by its
  expectation under the generator's noise, ``E[clip(rint(score + noise), 1, 5)]``, the
  least-squared-error prediction; its MAE, RMSE and nDCG are those of the same prediction, and
  ``.../mae_of_median`` is the MAE of the median rating (the least-absolute-error prediction).
  Nothing is trained; the support sets are ignored; the test users and queries are the
  baselines'. Its paired MSE difference against the best baseline is recorded as for the
  meta-learners. It runs by default on the synthetic datasets.
* ``generator-learner`` (synthetic datasets only): not a method either, the ceiling of every
  learner from the support: the same true model with each test user's bias and own factors
  unknown, learnt from the user's support ratings by their posterior
  (:meth:`~metalearn.data.synthetic_ratings.TrueRatingModel.learner`; the items, the attributes'
  part of the user and the priors known). Between it and ``generator-oracle`` lies what a
  user's few ratings cannot tell; between a method and it, what the method does not know about
  the items or fails to learn from the support. It runs by default on the synthetic datasets.

``speed`` measures users (tasks) per second in meta-training (``--speed-steps`` meta-steps of MeLU
and of the CNP at meta-batch 32 after a warm-up, sampling included, MeLU protocol, one thread
and all threads) and in evaluation (test users per second, adapt + predict).

The ``movielens-synthetic`` figures are the development data (the seeded generator of
:mod:`metalearn.data.synthetic_ratings`): they are NOT MovieLens results. MovieLens figures come
from ``--dataset movielens-100k --data-root PATH`` (or ``movielens-1m``) by anyone who has the
files (their license forbids redistribution).

Every figure is one JSON line on stdout and in benchmarks/results.jsonl (``--results``), named
``rec/DATASET/PROTOCOL/METHOD/METRIC`` (e.g. ``rec/movielens-synthetic/melu/MeLU/mae``).

Usage:
    python benchmarks/recommendation.py table-run --out runs/rec [--dataset movielens-synthetic]
        [--data-root PATH] [--protocols melu mamo] [--methods global-mean item-mean user-mean
        mf-ridge melu maml meta-sgd cnp generator-learner generator-oracle] [--steps N] [--set KEY=VALUE ...]
    python benchmarks/recommendation.py speed [--dataset ...] [--data-root PATH]
    python benchmarks/recommendation.py table [--dataset ...]    # markdown from results.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from _record import RESULTS, record
from text_fewshot import child_cpu, mean_ci, own_cpu, paired

ROOT = Path(__file__).resolve().parent.parent
METALEARN = [sys.executable, "-m", "metalearn.cli"]
DATASETS = ("movielens-synthetic-1m", "movielens-synthetic", "movielens-100k", "movielens-1m")
PROTOCOLS = ("melu", "mamo")
ORACLE = "generator-oracle"
LEARNER = "generator-learner"
REFERENCES = (LEARNER, ORACLE)
"""The rows that are not methods but what the generator's own model allows (synthetic data only)."""
LABELS = {"global-mean": "GlobalMean", "item-mean": "ItemMean", "user-mean": "UserMean",
          "mf-ridge": "MF-ridge", "melu": "MeLU", "maml": "MAML", "meta-sgd": "Meta-SGD", "cnp": "CNP",
          LEARNER: "generator-learner", ORACLE: "generator-oracle"}
"""Method name on the command line -> its name in the figures (and tables, but see ROW_LABELS)."""
ROW_LABELS = {LEARNER: "items known, the user learnt from the support (ceiling of learners, not a method)",
              ORACLE: "generator's true model (ceiling, not a method)"}
"""Table rows named otherwise than their figures."""
BASELINES = ("global-mean", "item-mean", "user-mean", "mf-ridge")
META_LEARNERS = ("melu", "maml", "meta-sgd", "cnp")
RANKING_K = (3, 5, 10)
METRICS = ("mae", "rmse", *(f"ndcg@{k}" for k in RANKING_K), "mse")
UNITS = {"mae": "rating", "rmse": "rating", "mse": "rating^2"}


def baseline(name: str):
    """A fresh, unfitted rating baseline (the library's defaults)."""
    from metalearn.algorithms import GlobalMean, ItemMean, MatrixFactorizationRidge, UserMean

    return {"global-mean": GlobalMean, "item-mean": ItemMean, "user-mean": UserMean,
            "mf-ridge": MatrixFactorizationRidge}[name]()


def run_config(method: str, args, protocol: str):
    """The resolved config of ``METHOD-DATASET`` with ``data.protocol``, ``--steps``, ``--set``
    and ``--data-root`` applied, as ``metalearn train`` resolves it; and the overrides."""
    from metalearn.presets import get_preset
    from metalearn.train.config import apply_overrides

    sets = [f"data.protocol={protocol}", *([f"train.steps={args.steps}"] if args.steps else []), *args.set]
    root = [f"data.root={json.dumps(str(Path(args.data_root).resolve()))}"] if args.data_root else []
    if method in BASELINES or method in REFERENCES:  # the data section only: the episodes and the meta-training users
        sets = [s for s in sets if s.startswith("data.")]
        method = META_LEARNERS[0]
    return apply_overrides(get_preset(f"{method}-{args.dataset}"), sets + root), sets


def run_cli(argv: list[str]) -> float:
    """Run ``metalearn ARGV`` (at nice 10) in a child process, its output to our stderr (stdout
    holds the figures only); return its CPU seconds."""
    import subprocess

    before = child_cpu()
    subprocess.run(["nice", "-n", "10", *METALEARN, *argv], check=True, cwd=ROOT, stdout=sys.stderr)
    return child_cpu() - before


def shown(argv: list[str]) -> str:
    return "metalearn " + " ".join(a if a and " " not in a else json.dumps(a) for a in argv)


def meta_learner(method: str, args, protocol: str) -> dict:
    """Train (or reuse, or resume) and evaluate ``METHOD-DATASET`` under ``protocol`` through the
    CLI; returns its ``eval_test.json``, the commands and the CPU seconds."""
    from metalearn.train.config import RunConfig, changes

    cfg, sets = run_config(method, args, protocol)
    run = (args.out / args.dataset / protocol / method).resolve()
    train = ["train", "--preset", f"{method}-{args.dataset}", *[a for s in sets for a in ("--set", s)],
             *(["--data-root", str(Path(args.data_root).resolve())] if args.data_root else []),
             "--out", str(run), "--quiet"]
    evaluate = ["eval", str(run), "--quiet"]
    timing = run / "cpu_seconds.json"
    cpu = json.loads(timing.read_text()) if timing.exists() else {}
    last = run / "checkpoints" / "last.json"
    step = json.loads(last.read_text())["step"] if last.exists() else 0
    if (run / "config.json").exists():
        saved = RunConfig.from_dict(json.loads((run / "config.json").read_text()))
        differ = {k: v for k, v in changes(saved, cfg).items() if k != "name"}
        longer = set(differ) == {"train.steps"} and cfg.train.steps > saved.train.steps
        if differ and not longer:
            raise SystemExit(f"{run} holds a run of another config ("
                             + "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in differ.items())
                             + f"): give another --out, or delete {run} to train it again")
    trained = False
    if step >= cfg.train.steps:
        print(f"# {method} {protocol}: reusing the finished run in {run} (step {step})", file=sys.stderr)
    else:
        if step:
            print(f"# {method} {protocol}: resuming {run} from step {step}", file=sys.stderr)
        cpu["train"] = cpu.get("train", 0.0) + run_cli(train + (["--resume"] if step else []))
        timing.write_text(json.dumps(cpu))
        trained = True
    result = run / "eval_test.json"
    if result.exists() and not trained and "eval" in cpu:
        print(f"# {method} {protocol}: keeping the evaluation {result}", file=sys.stderr)
    else:
        cpu["eval"] = run_cli(evaluate)
        timing.write_text(json.dumps(cpu))
    out = json.loads(result.read_text())
    out.update(train_command=shown(train), eval_command=shown(evaluate), train_steps=cfg.train.steps,
               cpu_s=cpu.get("train", 0.0) + cpu["eval"])
    return out


def figures(dataset: str, protocol: str, method: str, res: dict, n_users: int, cpu_s: float,
            results: Path, best: tuple[str, list[float]] | None = None, **extra) -> None:
    """Record the metrics of one method (``res``: an :meth:`EvalResult.to_dict`)."""
    prefix = f"rec/{dataset}/{protocol}/{LABELS[method]}"
    common = {"dataset": dataset, "protocol": protocol, "method": method, "test_users": n_users,
              "cpu_s": round(cpu_s, 2), **extra}
    for metric in METRICS:
        mean, ci = (res["mean"], res["ci95"]) if metric == "mse" else (
            res["extra"][metric]["mean"], res["extra"][metric]["ci95"])
        more = {"ci95": round(ci, 6), **common}
        kwargs = {}
        if metric == "mse":
            more["per_user"] = [round(v, 6) for v in res["per_episode"]]
            if best is not None:
                kwargs = {"baseline": LABELS[best[0]], "baseline_value": mean_ci(best[1])[0],
                          "higher_is_better": False}
        record(f"{prefix}/{metric}", mean, UNITS.get(metric, "nDCG"), extra=more, results=results, **kwargs)
    if best is not None:
        d, c = paired(res["per_episode"], best[1])
        record(f"{prefix}/mse_minus_best_baseline", d, "rating^2", higher_is_better=False, results=results,
               extra={"ci95": round(c, 6), "paired": True, "baseline": LABELS[best[0]], **common})


def _true_model_episodes(cfg, episodes):
    """The generator's true model of a synthetic dataset, and ``episodes`` with each rating's
    (user, item) row indices into the ratings table as inputs (targets unchanged).

    Returns:
        ``(model, episodes, user_ids, item_ids)``, the last two the raw ids by dense index.
    """
    import numpy as np
    import torch

    from metalearn.data.registry import SYNTHETIC_RATINGS, synthetic_movielens_folder
    from metalearn.data.synthetic_ratings import TrueRatingModel
    from metalearn.types import Episode

    model = TrueRatingModel.from_folder(synthetic_movielens_folder(cfg.data.root, SYNTHETIC_RATINGS[cfg.data.dataset]))
    table = episodes.tasks.table
    user_ids, item_ids = np.array(table.user_ids), np.array(table.item_ids)
    rating = torch.from_numpy(table.rating.astype(np.float32)).unsqueeze(-1)

    def pairs(rows):  # (n, 2) dense (user, item) of the table's rows
        return torch.from_numpy(np.stack([table.user[rows], table.item[rows]], 1))

    out = []
    for i in range(len(episodes)):
        support, query = episodes.rows(i)
        out.append(Episode(pairs(support), rating[support], pairs(query), rating[query]))
        if i < 3 and not torch.equal(episodes[i].query_y, rating[query]):  # cheap check, first users
            raise SystemExit("the true model's query ratings differ from the baselines' episodes: a bug in "
                             "_true_model_episodes (the rows of UserEpisodes no longer index the table?)")
    return model, out, user_ids, item_ids


def generator_oracle(cfg, episodes) -> tuple[dict, dict]:
    """The generator's true model scored on ``episodes`` (a synthetic dataset's fixed test users).

    Each query pair is predicted from its raw (user, item) ids as written to the data files; the
    support is ignored. The episodes carry the pairs' row indices into the ratings table as
    their inputs, and the ratings of the baselines' episodes as their targets.

    Returns:
        The :meth:`EvalResult.to_dict` of the expected rating (every metric) and that of the
        median rating (its MAE is the least-absolute-error ceiling).
    """
    import torch

    from metalearn.eval import evaluate

    model, oracle_episodes, user_ids, item_ids = _true_model_episodes(cfg, episodes)

    class Oracle(torch.nn.Module):
        """Predicts from the true model; adapting to the support does nothing."""

        def __init__(self, predict):
            super().__init__()
            self.predict = predict

        def adapt(self, support_x, support_y):
            return lambda qx: torch.from_numpy(self.predict(user_ids[qx[:, 0].numpy()],
                                                            item_ids[qx[:, 1].numpy()])).unsqueeze(-1)

    expected = evaluate(Oracle(model.expected), oracle_episodes, ranking_k=RANKING_K, progress=False)
    median = evaluate(Oracle(model.median), oracle_episodes, progress=False)
    return expected.to_dict(), median.to_dict()


def generator_learner(cfg, episodes) -> dict:
    """The best learner of each test user from its support when the items are known, scored on
    ``episodes``: :meth:`TrueRatingModel.learner` (every item term, the attributes' part of the
    user and the priors known; the user's bias and own factors learnt from the support ratings
    by their posterior). Returns the :meth:`EvalResult.to_dict` (every metric)."""
    import torch

    from metalearn.eval import evaluate

    model, learner_episodes, user_ids, item_ids = _true_model_episodes(cfg, episodes)

    class Learner(torch.nn.Module):
        def adapt(self, support_x, support_y):
            users = user_ids[support_x[:, 0].numpy()]
            predict = model.learner(users[0], item_ids[support_x[:, 1].numpy()], support_y[:, 0].numpy())
            return lambda qx: torch.from_numpy(predict(item_ids[qx[:, 1].numpy()])).unsqueeze(-1)

    return evaluate(Learner(), learner_episodes, ranking_k=RANKING_K, progress=False).to_dict()


def table_run(args) -> None:
    from metalearn.data.registry import SYNTHETIC_RATINGS  # the data the seeded generator wrote
    from metalearn.eval import evaluate
    from metalearn.train.data import build_source, fixed_episodes

    if args.methods is None:
        args.methods = [m for m in LABELS if m not in REFERENCES or args.dataset in SYNTHETIC_RATINGS]
    unknown = [m for m in args.methods if m not in LABELS]
    if unknown:
        raise SystemExit(f"unknown methods {unknown}: choose from {', '.join(LABELS)}")
    asked = [m for m in REFERENCES if m in args.methods]
    if asked and args.dataset not in SYNTHETIC_RATINGS:
        raise SystemExit(f"{' and '.join(asked)} {'comes' if len(asked) == 1 else 'come'} from the seeded generator's true model, known only for the data it "
                         f"wrote ({', '.join(SYNTHETIC_RATINGS)}); {args.dataset} was not drawn from a known model, so it "
                         f"has no ceiling to compute: drop {' and '.join(asked)} from --methods")
    for protocol in args.protocols:
        cfg, _ = run_config(BASELINES[0], args, protocol)
        episodes = fixed_episodes(cfg.data, "test")
        n_users = len(episodes)
        base: dict[str, tuple[dict, float]] = {}
        for method in (m for m in args.methods if m in BASELINES):
            t0 = own_cpu()
            model = baseline(method).fit(*build_source(cfg.data, "train").train_ratings())
            r = evaluate(model, episodes, ranking_k=RANKING_K, progress=False)
            base[method] = (r.to_dict(), own_cpu() - t0)
        oracle = learner = None
        if ORACLE in args.methods:
            t0 = own_cpu()
            expected, median = generator_oracle(cfg, episodes)
            oracle = (expected, median, own_cpu() - t0)
        if LEARNER in args.methods:
            t0 = own_cpu()
            learner = (generator_learner(cfg, episodes), own_cpu() - t0)
        learned = {}
        for method in (m for m in args.methods if m in META_LEARNERS):
            learned[method] = meta_learner(method, args, protocol)
            if learned[method]["episodes"]["fingerprint"] != episodes.fingerprint:
                raise SystemExit(f"{method} was evaluated on other test users than the baselines "
                                 f"(episode fingerprints differ): delete {args.out / args.dataset / protocol / method}")
        info = {"episodes_fingerprint": episodes.fingerprint, "skipped": episodes.describe()["skipped"]}
        for method, (res, cpu) in base.items():
            figures(args.dataset, protocol, method, res, n_users, cpu, args.results, **info)
        scores = {m: (r["mean"], r["per_episode"]) for m, (r, _) in base.items()}
        if (learned or oracle or learner) and not scores:  # the baselines of an earlier table-run on the same test users
            for m in BASELINES:
                row = latest(args.results, args.dataset).get(f"rec/{args.dataset}/{protocol}/{LABELS[m]}/mse")
                if row and row.get("episodes_fingerprint") == episodes.fingerprint:
                    scores[m] = (row["value"], row["per_user"])
        best = min(scores, key=lambda m: scores[m][0]) if scores else None
        if (learned or oracle or learner) and best is None:
            print(f"# no baseline on these test users in {args.results}: no paired difference "
                  "(add a baseline to --methods)", file=sys.stderr)
        for method, out in learned.items():
            figures(args.dataset, protocol, method, out["result"], n_users, out["cpu_s"], args.results,
                    best=(best, scores[best][1]) if best else None,
                    train_steps=out["train_steps"], checkpoint_step=out["step"],
                    train_command=out["train_command"], eval_command=out["eval_command"], **info)
        if learner:
            note = {"note": "not a method: the generator's true model with the user's bias and own factors unknown, "
                            "learnt from the support by their posterior (TrueRatingModel.learner); the items, "
                            "the attributes' part of the user and the priors known",
                    "prediction": "posterior expected rating"}
            figures(args.dataset, protocol, LEARNER, learner[0], n_users, learner[1], args.results,
                    best=(best, scores[best][1]) if best else None, **note, **info)
        if oracle:
            expected, median, cpu = oracle
            note = {"note": "the generator's true model, a ceiling and not a method: every metric of the "
                            "expected rating E[clip(rint(score + noise), 1, 5)]; nothing trained, supports ignored",
                    "prediction": "expected rating"}
            figures(args.dataset, protocol, ORACLE, expected, n_users, cpu, args.results,
                    best=(best, scores[best][1]) if best else None, **note, **info)
            record(f"rec/{args.dataset}/{protocol}/{LABELS[ORACLE]}/mae_of_median", median["extra"]["mae"]["mean"],
                   "rating", higher_is_better=False, results=args.results,
                   extra={"ci95": round(median["extra"]["mae"]["ci95"], 6), "dataset": args.dataset,
                          "protocol": protocol, "method": ORACLE, "test_users": n_users, "cpu_s": round(cpu, 2),
                          "prediction": "median rating", "note": "the least-absolute-error ceiling", **info})


def speed(args) -> None:
    import torch

    from metalearn.eval import evaluate
    from metalearn.train.data import fixed_episodes, train_sampler
    from metalearn.train.distributed import Ranks
    from metalearn.train.loop import _meta_step, build_algorithm

    threads = sorted({1, os.cpu_count() or 1})
    for n in threads:
        torch.set_num_threads(n)
        # MeLU twice: mixed batches (mapped one user at a time) and data.group_sizes (vmapped)
        for method, grouped in (("melu", False), ("melu", True), ("cnp", False)):
            cfg, _ = run_config(method, args, "melu")
            cfg.train.meta_batch = 32
            cfg.data.group_sizes = grouped
            torch.manual_seed(0)
            algo = build_algorithm(cfg)
            params = [p for p in algo.parameters() if p.requires_grad]
            opt = torch.optim.Adam(params, lr=cfg.train.lr)
            sampler, ranks = train_sampler(cfg.data, seed=0), Ranks()
            for _ in range(args.warmup):
                _meta_step(algo, opt, params, sampler.sample_batch(32), ranks, None)
            t, users = time.perf_counter(), 0
            for _ in range(args.speed_steps):
                batch = sampler.sample_batch(32)  # fewer users when grouped and the size is rare
                users += len(batch)
                _meta_step(algo, opt, params, batch, ranks, None)
            train_s = time.perf_counter() - t
            meta = {"dataset": args.dataset, "protocol": "melu", "method": method, "threads": n,
                    "meta_batch": 32, "steps": args.speed_steps, "warmup": args.warmup, "group_sizes": grouped}
            prefix = f"rec/{args.dataset}/melu/{LABELS[method]}"
            if grouped:
                record(f"{prefix}/train_users_per_s_grouped_{n}thread", users / train_s, "users/s",
                       extra={**meta, "users": users, "note": "meta-steps with the sampling of their users; "
                              "batches of one support size (data.group_sizes), vmapped"}, results=args.results)
                continue
            episodes = fixed_episodes(cfg.data, "test", n_episodes=args.eval_users)
            evaluate(algo, [episodes[0]], ranking_k=RANKING_K, progress=False)  # warm-up
            r = evaluate(algo, episodes, ranking_k=RANKING_K, progress=False)
            record(f"{prefix}/train_users_per_s_{n}thread", users / train_s, "users/s",
                   extra={**meta, "note": "meta-steps with the sampling of their users"}, results=args.results)
            record(f"{prefix}/eval_users_per_s_{n}thread", r.n / r.seconds, "users/s",
                   extra={**meta, "test_users": r.n, "note": "adapt on the support + predict the query"},
                   results=args.results)


def latest(results: Path, dataset: str) -> dict[str, dict]:
    """The latest record of each ``rec/DATASET/...`` figure in ``results``."""
    rows = {}
    for line in results.read_text().splitlines() if results.exists() else []:
        if line.strip() and (row := json.loads(line))["name"].startswith(f"rec/{dataset}/"):
            rows[row["name"]] = row
    return rows


def table(args) -> None:
    """Print the markdown tables (one per protocol) and the commands that made them."""
    rows = latest(args.results, args.dataset)
    if not rows:
        raise SystemExit(f"no rec/{args.dataset}/ figures in {args.results}: run table-run first")

    def cell(name: str) -> str:
        r = rows.get(name)
        return "" if r is None else f"{r['value']:.3f} ± {r['ci95']:.3f}"

    def cpu(s: float) -> str:
        return f"{s:.1f} s" if s < 120 else f"{s / 60:.1f} min"

    commands: dict[str, None] = {}
    for protocol in PROTOCOLS:
        present = [m for m in LABELS if f"rec/{args.dataset}/{protocol}/{LABELS[m]}/mae" in rows]
        if not present:
            continue
        print(f"{args.dataset}, {protocol} protocol (test users, mean ± 95% CI)\n")
        print("| method | MAE | RMSE | nDCG@3 | nDCG@5 | nDCG@10 | MSE − best baseline (paired) "
              "| test users | CPU time |")
        print("|---|---|---|---|---|---|---|---|---|")
        for m in present:
            prefix = f"rec/{args.dataset}/{protocol}/{LABELS[m]}"
            first = rows[f"{prefix}/mae"]
            d = rows.get(f"{prefix}/mse_minus_best_baseline")
            print(f"| {ROW_LABELS.get(m, LABELS[m])} | " + " | ".join(cell(f"{prefix}/{k}") for k in METRICS[:-1])
                  + f" | {cell(f'{prefix}/mse_minus_best_baseline')}"
                  + (f" (vs {d['baseline']})" if d else "")
                  + f" | {first['test_users']} | {cpu(first['cpu_s'])} |")
            for key in ("command", "train_command", "eval_command"):
                if key in first:
                    commands[first[key]] = None
        if ORACLE in present:
            median = rows.get(f"rec/{args.dataset}/{protocol}/{LABELS[ORACLE]}/mae_of_median")
            print("\nThe last row is a ceiling, not a method: the generator's true model predicting each query "
                  "rating by its expectation under the generator's noise (every column from that prediction)"
                  + (f"; the median rating's MAE is {cell(median['name'])}" if median else "") + ".")
        if LEARNER in present:
            print("\nThe row before it is not a method either: the same model with each test user's bias and own "
                  "factors unknown, learnt from the user's support ratings by their posterior (every item term, the "
                  "attributes' part of the user and the priors known): what the support can tell a learner that "
                  "knew the items perfectly.")
        print()
    speeds = sorted(n for n in rows if "_users_per_s_" in n)
    if speeds:
        print("| speed (MeLU protocol, meta-batch 32) | users/s | threads |")
        print("|---|---|---|")
        for n in speeds:
            print(f"| {n.split('/', 3)[3]} | {rows[n]['value']:.1f} | {rows[n]['threads']} |")
            commands[rows[n]["command"]] = None
        print()
    print("Commands:\n")
    for c in commands:
        print(f"    {c}")
    if args.dataset == "movielens-synthetic":
        print("\nThe synthetic figures are the development data, not MovieLens results: run the same "
              "command with --dataset movielens-100k --data-root PATH for those.")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("command", choices=("table-run", "speed", "table"))
    p.add_argument("--out", type=Path, default=Path("runs/rec"), help="folder of the training runs")
    p.add_argument("--dataset", default=DATASETS[0], choices=DATASETS)
    p.add_argument("--data-root", default=None,
                   help="the dataset's folder or zip (default: the presets' data.root / $METALEARN_DATA; "
                        "movielens-synthetic: a folder of generated files, else the cached default)")
    p.add_argument("--protocols", nargs="+", default=list(PROTOCOLS), choices=PROTOCOLS)
    p.add_argument("--methods", nargs="+", default=None,
                   help=f"of: {', '.join(LABELS)} (default: all; {' and '.join(REFERENCES)} on the synthetic datasets only)")
    p.add_argument("--steps", type=int, default=None, help="override train.steps of the presets")
    p.add_argument("--set", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                   help="a config override for every meta-learner (data.* ones also for the baselines)")
    p.add_argument("--results", type=Path, default=RESULTS, help="results file to append to / read")
    p.add_argument("--speed-steps", type=int, default=20, help="speed: meta-steps timed")
    p.add_argument("--warmup", type=int, default=3, help="speed: meta-steps before the timing")
    p.add_argument("--eval-users", type=int, default=None, help="speed: test users timed (default all)")
    args = p.parse_args()
    start = time.time()
    {"table-run": table_run, "speed": speed, "table": table}[args.command](args)
    print(f"# {args.command} done in {time.time() - start:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
