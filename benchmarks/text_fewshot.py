"""Few-shot intent detection: meta-learners against two TF-IDF baselines on the same episodes.

Three protocols (issue 18; references in ../shared/research/nextwave-references.md):

* ``episodic`` (ProtAugment): BANKING77, CLINC150 and HWU64, the five class folds, 5-way
  K-shot with 5 queries per class, 600 fixed test episodes per fold (``data.test_seed`` = 2).
  Meta-learners train through the public CLI (``metalearn train --preset METHOD-DATASET-5w5s``)
  and are scored by ``metalearn eval`` (``--k-shot 1`` for the 1-shot figure of the same run:
  one training per fold at 5 shots, a deviation from ProtAugment's one training per K).
* ``fullway`` (Casanueva et al. 2020): BANKING77, all 77 intents with K in {5, 10} examples of
  each drawn from the original training file (5 seeded draws), scored on the official 3,080-
  utterance test file. The meta-learner is meta-trained on CLINC150 and HWU64 only (all their
  intents but a seeded tenth kept for validation), its vocabulary trained on their texts.
* ``oos`` (Larson et al. 2019): CLINC150 test intents of a fold, 5-way 5-shot episodes whose
  query set mixes 25 out-of-scope utterances (``oos`` test texts, seeded) into the 25 in-scope
  ones; a rejection threshold is calibrated on the support set alone (leave one out, the 5%
  quantile of the support's scores). In-scope accuracy counts a rejected in-scope query as an
  error; out-of-scope recall is the fraction of ``oos`` queries rejected.

The baselines see exactly the meta-learner's episodes (the same seeds over the dataset's
``index_dataset()``): word 1-2-gram and character 2-5-gram TF-IDF (fitted, unlabelled, on the
meta-training intents' texts, which the meta-learner also trains on), classified by the nearest
class centroid (cosine) or by logistic regression fitted on the support. scikit-learn is a
benchmark-only dependency.

Every figure is one JSON line on stdout and in benchmarks/results.jsonl with its 95% CI, the
command and the CPU seconds of training and evaluation.

Usage:
    python benchmarks/text_fewshot.py episodic --out runs/text [--datasets banking77 ...]
        [--folds 1 2 3 4 5] [--methods protonet ...] [--steps N]
    python benchmarks/text_fewshot.py fullway --out runs/text [--steps N]
    python benchmarks/text_fewshot.py oos --out runs/text [--folds 1 ...]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from _record import record

ROOT = Path(__file__).resolve().parent.parent
METALEARN = [sys.executable, "-m", "metalearn.cli"]
DATASETS = ("banking77", "clinc150", "hwu64")


def child_cpu() -> float:
    """CPU seconds of this process's finished children (user + system)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def own_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def mean_ci(values) -> tuple[float, float]:
    from metalearn.eval.metrics import mean_ci95

    m, c = mean_ci95([float(v) for v in values])
    return float(m), float(c)


def paired(a, b) -> tuple[float, float]:
    """Mean and 95% CI half-width of the per-episode difference ``a - b``."""
    return mean_ci([x - y for x, y in zip(a, b)])


# ---------------------------------------------------------------------------------------------
# TF-IDF baselines
# ---------------------------------------------------------------------------------------------

def tfidf(train_texts: list[str]):
    """Word 1-2-gram + character 2-5-gram TF-IDF, fitted (unlabelled) on ``train_texts``."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import make_union

    return make_union(
        TfidfVectorizer(analyzer="word", ngram_range=(1, 2), sublinear_tf=True, min_df=1),
        TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2),
    ).fit(train_texts)


class TfidfCentroid:
    """Nearest class centroid of L2-normalised TF-IDF vectors (cosine); score = best cosine."""

    def __init__(self, vectorizer):
        self.vec = vectorizer

    def fit(self, texts, labels):
        from sklearn.preprocessing import normalize

        x = normalize(self.vec.transform(texts))
        self.classes_ = np.unique(labels)
        labels = np.asarray(labels)
        c = np.stack([np.asarray(x[labels == k].mean(0)).ravel() for k in self.classes_])
        self.centroids = c / np.maximum(np.linalg.norm(c, axis=1, keepdims=True), 1e-12)
        return self

    def logits(self, texts) -> np.ndarray:
        from sklearn.preprocessing import normalize

        return np.asarray(normalize(self.vec.transform(texts)) @ self.centroids.T)


class TfidfLogReg:
    """Logistic regression on TF-IDF vectors fitted on the support; score = largest logit."""

    def __init__(self, vectorizer, c: float = 10.0):
        self.vec, self.c = vectorizer, c

    def fit(self, texts, labels):
        from sklearn.linear_model import LogisticRegression

        self.model = LogisticRegression(C=self.c, max_iter=2000).fit(self.vec.transform(texts), labels)
        self.classes_ = self.model.classes_
        return self

    def logits(self, texts) -> np.ndarray:
        z = self.model.decision_function(self.vec.transform(texts))
        return np.stack([-z, z], 1) if z.ndim == 1 else z


BASELINES = {"tfidf-nc": TfidfCentroid, "tfidf-lr": TfidfLogReg}


def episode_texts(dataset, episode):
    """An index episode's support and query texts and labels."""
    t = dataset.texts
    s = [t[int(i)] for i in episode.support_x.reshape(-1)]
    q = [t[int(i)] for i in episode.query_x.reshape(-1)]
    return s, episode.support_y.tolist(), q, episode.query_y.tolist()


def baseline_episodic(name: str, vectorizer, test, episodes) -> list[float]:
    """Per-episode accuracy of a TF-IDF baseline on index episodes of ``test``."""
    accs = []
    for ep in episodes:
        s, sy, q, qy = episode_texts(test, ep)
        clf = BASELINES[name](vectorizer).fit(s, sy)
        pred = clf.classes_[clf.logits(q).argmax(1)]
        accs.append(float(np.mean(pred == np.asarray(qy))))
    return accs


# ---------------------------------------------------------------------------------------------
# meta-learners through the CLI
# ---------------------------------------------------------------------------------------------

def run_cli(args: list[str]) -> float:
    """Run ``metalearn ARGS`` (at nice 10); return its CPU seconds."""
    before = child_cpu()
    subprocess.run(["nice", "-n", "10", *METALEARN, *args], check=True, cwd=ROOT)
    return child_cpu() - before


def train_and_eval(run: Path, preset: str, sets: list[str], shots: list[int]) -> dict:
    """Train ``preset`` into ``run`` unless done, evaluate it at each of ``shots``."""
    cmd = ["train", "--preset", preset, *[a for s in sets for a in ("--set", s)], "--out", str(run),
           "--quiet"]
    timing = run / "cpu_seconds.json"
    cpu = json.loads(timing.read_text()) if timing.exists() else {}
    if not (run / "checkpoints" / "last.json").exists() or "train" not in cpu:
        if (run / "checkpoints" / "last.json").exists():
            cmd.append("--resume")
        cpu["train"] = run_cli(cmd)
        timing.write_text(json.dumps(cpu))
    out = {"train_command": "metalearn " + " ".join(cmd), "train_cpu_s": cpu["train"]}
    for k in shots:
        path = run / f"eval_test_5w{k}s.json"
        ev = ["eval", str(run), "--quiet", "--n-way", "5", "--k-shot", str(k)]
        if not path.exists() or f"eval{k}" not in cpu:
            cpu[f"eval{k}"] = run_cli(ev)
            timing.write_text(json.dumps(cpu))
        res = json.loads(path.read_text())["result"]
        out[k] = {"mean": res["mean"], "ci95": res["ci95"], "per_episode": res["per_episode"],
                  "eval_command": "metalearn " + " ".join(ev), "eval_cpu_s": cpu[f"eval{k}"]}
    return out


def episodic(args) -> None:
    from metalearn.data.samplers import FixedEpisodes
    from metalearn.presets import get_preset
    from metalearn.train.data import build_source

    for ds in args.datasets:
        per_fold: dict[str, dict[int, list]] = {}
        for fold in args.folds:
            preset = f"{args.methods[0]}-{ds}-5w5s" if args.methods else f"protonet-{ds}-5w5s"
            cfg = get_preset(preset)
            cfg.data.fold, cfg.data.root = fold, args.data_root
            test, train = build_source(cfg.data, "test"), build_source(cfg.data, "train")
            t0 = own_cpu()
            vec = tfidf(train.texts)
            fit_cpu = own_cpu() - t0
            results: dict[str, dict] = {}
            for method in args.methods:
                sets = [f"data.fold={fold}", f"data.root={args.data_root}"]
                if args.steps:
                    sets += [f"train.steps={args.steps}"]
                if method == "baseline-pp":  # pretrains over the fold's training intents
                    sets += [f"algorithm.n_classes={train.num_classes}"]
                results[method] = train_and_eval(args.out / ds / f"fold{fold}" / method,
                                                 f"{method}-{ds}-5w5s", sets, args.shots)
            for k in args.shots:
                eps = FixedEpisodes(test.index_dataset(), 5, k, 5, n_episodes=cfg.data.test_episodes,
                                    seed=cfg.data.test_seed)
                for name in BASELINES:
                    t0 = own_cpu()
                    accs = baseline_episodic(name, vec, test, eps)
                    results.setdefault(name, {})[k] = {"per_episode": accs, "eval_cpu_s": own_cpu() - t0 + fit_cpu}
                for method, res in results.items():
                    r = res[k]
                    m, c = mean_ci(r["per_episode"])
                    per_fold.setdefault(f"{method}/{k}", []).append(r["per_episode"])
                    extra = {"ci95": round(100 * c, 3), "n_episodes": len(r["per_episode"]), "fold": fold,
                             "eval_cpu_s": round(r["eval_cpu_s"], 1)}
                    if "train_cpu_s" in res:
                        extra.update(train_cpu_s=round(res["train_cpu_s"], 1), command=res["train_command"]
                                     + " && " + r["eval_command"])
                    record(f"text_{ds}_fold{fold}_5w{k}s_{method}_accuracy", 100 * m, "%", extra=extra)
                for method in args.methods:
                    for name in BASELINES:
                        d, c = paired(results[method][k]["per_episode"], results[name][k]["per_episode"])
                        record(f"text_{ds}_fold{fold}_5w{k}s_{method}_minus_{name}", 100 * d, "%",
                               extra={"ci95": round(100 * c, 3), "paired": True, "fold": fold})
        for key, folds in per_fold.items():
            method, k = key.split("/")
            means = [float(np.mean(f)) for f in folds]
            # CI of the fold average: the folds' episodes are independent, so the variances add
            cis = [mean_ci(f)[1] for f in folds]
            avg, ci = float(np.mean(means)), math.sqrt(sum(c * c for c in cis)) / len(cis)
            record(f"text_{ds}_5w{k}s_{method}_accuracy_fold_mean", 100 * avg, "%",
                   extra={"ci95": round(100 * ci, 3), "folds": list(args.folds),
                          "per_fold": [round(100 * x, 2) for x in means]})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("protocol", choices=("episodic", "fullway", "oos"))
    p.add_argument("--out", type=Path, default=Path("runs/text"), help="folder of the training runs")
    p.add_argument("--data-root", default=os.environ.get("METALEARN_DATA", str(ROOT.parent / "shared" / "data")))
    p.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    p.add_argument("--folds", nargs="+", type=int, default=[1, 2, 3, 4, 5])
    p.add_argument("--shots", nargs="+", type=int, default=[1, 5])
    p.add_argument("--methods", nargs="*", default=["protonet"],
                   help="meta-learners (preset prefixes: protonet, anil, baseline-pp, generator)")
    p.add_argument("--steps", type=int, default=None, help="override train.steps of the presets")
    args = p.parse_args()
    start = time.time()
    {"episodic": episodic}[args.protocol](args)
    print(f"# {args.protocol} done in {time.time() - start:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
