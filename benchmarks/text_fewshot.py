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
    python benchmarks/text_fewshot.py ssl --out runs/text --datasets banking77 --folds 1 [--ssl simcse]
    python benchmarks/text_fewshot.py coverage   # test-intent words never seen in meta-training
    python benchmarks/text_fewshot.py table      # the markdown tables of docs/text.md
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


def fold_average(means, cis) -> tuple[float, float]:
    """The average of per-fold means and its 95% CI half-width: the folds' test episodes are
    independent, so the variances of the fold means add."""
    return float(np.mean(means)), math.sqrt(sum(c * c for c in cis)) / len(cis)


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


class Vectors:
    """TF-IDF rows of texts, each text transformed once (episodes reuse the same sentences)."""

    def __init__(self, vectorizer):
        self.vec, self.rows = vectorizer, {}

    def __call__(self, texts):
        import scipy.sparse as sp
        from sklearn.preprocessing import normalize

        new = [t for t in dict.fromkeys(texts) if t not in self.rows]
        if new:
            for t, row in zip(new, normalize(self.vec.transform(new))):
                self.rows[t] = row
        return sp.vstack([self.rows[t] for t in texts]).tocsr()


class TfidfCentroid:
    """Nearest class centroid of L2-normalised TF-IDF vectors (cosine); score = best cosine."""

    def __init__(self, vectors: Vectors):
        self.vectors = vectors

    def fit(self, texts, labels):
        x = self.vectors(texts)
        self.classes_ = np.unique(labels)
        labels = np.asarray(labels)
        c = np.stack([np.asarray(x[labels == k].mean(0)).ravel() for k in self.classes_])
        self.centroids = c / np.maximum(np.linalg.norm(c, axis=1, keepdims=True), 1e-12)
        return self

    def logits(self, texts) -> np.ndarray:
        return np.asarray(self.vectors(texts) @ self.centroids.T)


class TfidfLogReg:
    """Logistic regression (L2, C=10) on the L2-normalised TF-IDF vectors of the support;
    score = largest logit."""

    def __init__(self, vectors: Vectors, c: float = 10.0):
        self.vectors, self.c = vectors, c

    def fit(self, texts, labels):
        from sklearn.linear_model import LogisticRegression

        x = self.vectors(texts)
        # a feature that is zero on every support text gets weight exactly 0 under the L2
        # penalty, so fitting on the support's own features gives the same model, much faster
        self.cols = np.unique(x.indices)
        self.model = LogisticRegression(C=self.c, max_iter=1000).fit(x[:, self.cols], labels)
        self.classes_ = self.model.classes_
        return self

    def logits(self, texts) -> np.ndarray:
        z = self.model.decision_function(self.vectors(texts)[:, self.cols])
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
    # CPU seconds cover this process's training only (an interrupted run's earlier part is lost);
    # the loop's own wall clock continues across resumes
    wall = [json.loads(line)["time_s"] for line in (run / "metrics.jsonl").read_text().splitlines()
            if '"time_s"' in line]
    out = {"train_command": "metalearn " + " ".join(cmd), "train_cpu_s": cpu["train"],
           "train_wall_s": round(wall[-1], 1) if wall else None,
           "backbone": json.loads((run / "config.json").read_text())["model"]["backbone"]}
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


VARIANTS = {
    # the first recipe measured: the Kim (2014) CNN, 128-d embeddings, Euclidean ProtoNet, 3,000 episodes
    "text-cnn": ["model.backbone=text-cnn", "model.embed_dim=128", "algorithm.distance=sq_euclidean",
                 "train.steps=3000"],
}
"""``METHOD:VARIANT`` in ``--methods``: the preset with these overrides (recorded as METHOD-VARIANT)."""


def episodic(args) -> None:
    from metalearn.data.samplers import FixedEpisodes
    from metalearn.presets import get_preset
    from metalearn.train.data import build_source

    for ds in args.datasets:
        per_fold: dict[str, dict[int, list]] = {}
        for fold in args.folds:
            preset = f"{args.methods[0].partition(':')[0]}-{ds}-5w5s" if args.methods else f"protonet-{ds}-5w5s"
            cfg = get_preset(preset)
            cfg.data.fold, cfg.data.root = fold, args.data_root
            test, train = build_source(cfg.data, "test"), build_source(cfg.data, "train")
            t0 = own_cpu()
            vec = Vectors(tfidf(train.texts))
            fit_cpu = own_cpu() - t0
            results: dict[str, dict] = {}
            for label in args.methods:
                method, _, variant = label.partition(":")
                sets = [f"data.fold={fold}", f"data.root={args.data_root}", *VARIANTS.get(variant, [])]
                if variant and variant not in VARIANTS:
                    raise SystemExit(f"unknown variant {variant!r}; choose {', '.join(VARIANTS)}")
                if args.steps:
                    sets += [f"train.steps={args.steps}"]
                if method == "baseline-pp":  # pretrains over the fold's training intents
                    sets += [f"algorithm.n_classes={train.num_classes}"]
                results[label.replace(":", "-")] = train_and_eval(
                    args.out / ds / f"fold{fold}" / label.replace(":", "-"), f"{method}-{ds}-5w5s", sets,
                    args.shots)
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
                        extra.update(backbone=res["backbone"], train_cpu_s=round(res["train_cpu_s"], 1),
                                     train_wall_s=res["train_wall_s"],
                                     command=res["train_command"]
                                     + " && " + r["eval_command"])
                    record(f"text_{ds}_fold{fold}_5w{k}s_{method}_accuracy", 100 * m, "%", extra=extra)
                for method in (label.replace(":", "-") for label in args.methods):
                    for name in BASELINES:
                        d, c = paired(results[method][k]["per_episode"], results[name][k]["per_episode"])
                        record(f"text_{ds}_fold{fold}_5w{k}s_{method}_minus_{name}", 100 * d, "%",
                               extra={"ci95": round(100 * c, 3), "paired": True, "fold": fold})
        for key, folds in per_fold.items() if len(args.folds) > 1 else ():
            method, k = key.split("/")
            means = [float(np.mean(f)) for f in folds]
            avg, ci = fold_average(means, [mean_ci(f)[1] for f in folds])
            record(f"text_{ds}_5w{k}s_{method}_accuracy_fold_mean", 100 * avg, "%",
                   extra={"ci95": round(100 * ci, 3), "folds": list(args.folds),
                          "per_fold": [round(100 * x, 2) for x in means]})


def loo_threshold(fit_logits, texts: list[str], labels: list, quantile: float) -> float:
    """The ``quantile`` of leave-one-out scores on a support set (as
    :meth:`~metalearn.eval.fewshot.FewShotClassifier.calibrate_rejection`), for a baseline:
    ``fit_logits(texts, labels, query) -> logits``."""
    scores = []
    for i in range(len(texts)):
        rest = [j for j in range(len(texts)) if j != i]
        z = fit_logits([texts[j] for j in rest], [labels[j] for j in rest], [texts[i]])
        scores.append(float(np.max(z)))
    return float(np.quantile(scores, quantile))


def oos(args) -> None:
    """CLINC150 episodes with out-of-scope queries mixed in, rejection calibrated on the support."""
    import torch

    from metalearn.data.intents import Clinc150
    from metalearn.data.samplers import FixedEpisodes
    from metalearn.eval.fewshot import FewShotClassifier
    from metalearn.train.data import run_tokenizer
    from metalearn.train.loop import load_run

    k, n_oos, quantile, method = 5, 25, args.reject_quantile, args.methods[0]
    for fold in args.folds:
        run = args.out / "clinc150" / f"fold{fold}" / method
        if not (run / "checkpoints" / "last.json").exists():
            raise SystemExit(f"{run} is not trained: run the episodic protocol for clinc150 fold {fold} first")
        algo, cfg, _ = load_run(run, "best", "cpu")
        tok = run_tokenizer(run)
        test = Clinc150("test", fold=fold, root=args.data_root, tokenizer=tok)
        train_texts = Clinc150("train", fold=fold, root=args.data_root, tokenizer=tok).texts
        oos_texts = test.oos_texts("test")
        vec = Vectors(tfidf(train_texts))
        episodes = FixedEpisodes(test, 5, k, 5, n_episodes=args.episodes, seed=cfg.data.test_seed)
        index_eps = FixedEpisodes(test.index_dataset(), 5, k, 5, n_episodes=args.episodes,
                                  seed=cfg.data.test_seed)
        scores: dict[str, dict[str, list[float]]] = {}
        cpu: dict[str, float] = {}
        for i, (ep, iep) in enumerate(zip(episodes, index_eps)):
            assert torch.equal(ep.support_y, iep.support_y)
            rng = np.random.default_rng([cfg.data.test_seed, fold, i])
            oos_q = [oos_texts[j] for j in rng.choice(len(oos_texts), n_oos, replace=False)]
            s, sy, q, qy = episode_texts(test, iep)
            t0 = own_cpu()
            clf = FewShotClassifier(algo, tokenizer=tok, query_independent=False)
            clf.fit(ep.support_x, ep.support_y.tolist()).calibrate_rejection(quantile)
            pin = clf.predict(ep.query_x)
            pout = clf.predict(oos_q)
            cpu[method] = cpu.get(method, 0.0) + own_cpu() - t0
            answers = {method: (pin, pout)}
            for name, cls in BASELINES.items():
                t0 = own_cpu()

                def fit_logits(tx, ty, qx, cls=cls, vec=vec):
                    return cls(vec).fit(tx, ty).logits(qx)

                thr = loo_threshold(fit_logits, s, sy, quantile)
                model = cls(vec).fit(s, sy)
                zin, zout = model.logits(q), model.logits(oos_q)
                pin_b = np.where(zin.max(1) < thr, "out_of_scope", model.classes_[zin.argmax(1)].astype(object))
                pout_b = np.where(zout.max(1) < thr, "out_of_scope", "in_scope")
                answers[name] = (pin_b, pout_b)
                cpu[name] = cpu.get(name, 0.0) + own_cpu() - t0
            for name, (a_in, a_out) in answers.items():
                rec = scores.setdefault(name, {"in_scope_accuracy": [], "oos_recall": []})
                rec["in_scope_accuracy"].append(float(np.mean([str(a) == str(b) for a, b in zip(a_in, qy)])))
                rec["oos_recall"].append(float(np.mean([a == "out_of_scope" for a in a_out])))
        for name, rec in scores.items():
            for metric, values in rec.items():
                m, c = mean_ci(values)
                record(f"text_clinc150_oos_fold{fold}_5w{k}s_{name}_{metric}", 100 * m, "%",
                       extra={"ci95": round(100 * c, 3), "n_episodes": len(values), "oos_queries": n_oos,
                              "in_scope_queries": 25, "reject_quantile": quantile,
                              "eval_cpu_s": round(cpu[name], 1), "run": str(run)})


def fullway(args) -> None:
    """BANKING77 with all 77 intents, K examples each, by a meta-learner that never saw BANKING77."""
    import torch

    from metalearn.data.intents import Banking77, Clinc150, Hwu64
    from metalearn.data.registry import DATASETS, register_dataset
    from metalearn.data.text import TextDataset, TextTokenizer
    from metalearn.eval.fewshot import FewShotClassifier
    from metalearn.presets import get_preset
    from metalearn.train.loop import load_run, train

    root, method = args.data_root, args.methods[0]
    # the meta-training corpus: every in-scope utterance of CLINC150 and HWU64 (a fold's three
    # class lists together cover every intent), a seeded tenth of the intents kept for validation
    texts, labels = [], []
    for name, cls in (("clinc150", Clinc150), ("hwu64", Hwu64)):
        for split in ("train", "val", "test"):
            part = cls(split, fold=1, root=root)
            texts += part.texts
            labels += [f"{name}:{part.class_names[c]}" for c in part.labels]
    classes = sorted(set(labels))
    val = set(np.random.default_rng(0).choice(classes, len(classes) // 10, replace=False).tolist())
    pick = lambda keep: ([t for t, c in zip(texts, labels) if keep(c)],  # noqa: E731
                         [c for c in labels if keep(c)])
    train_texts, train_labels = pick(lambda c: c not in val)
    tok = TextTokenizer.train(train_texts, "wordpiece", 8000, 64)
    sources = {"train": TextDataset(train_texts, train_labels, tok, name="clinc-hwu"),
               "val": TextDataset(*pick(lambda c: c in val), tok, name="clinc-hwu")}
    if "clinc150+hwu64" not in DATASETS:
        register_dataset("clinc150+hwu64", lambda cfg, split: sources[split], images=False, text=True,
                         description="CLINC150 and HWU64 in-scope intents (benchmarks/text_fewshot.py)")
    cfg = get_preset(f"{method}-clinc150-5w5s")
    cfg.name = f"{method}-clinc150+hwu64-fullway"
    cfg.data.dataset, cfg.data.test_split, cfg.data.root = "clinc150+hwu64", "val", root
    cfg.data.n_way, cfg.data.k_shot, cfg.data.n_query = args.train_way, 5, 5
    if "n_classes" in cfg.algorithm.options:  # Baseline(++): a head over every training intent, not a fold's
        cfg.algorithm.options["n_classes"] = 0
    if args.steps:
        cfg.train.steps = args.steps
    run = args.out / "fullway" / (method if args.train_way == 20 else f"{method}-train{args.train_way}way")
    timing = run / "cpu_seconds.json"
    if not timing.exists():
        t0 = own_cpu()
        train(cfg, run, resume=(run / "checkpoints" / "last.json").exists(), quiet=True)
        timing.write_text(json.dumps({"train": own_cpu() - t0}))
    train_cpu = json.loads(timing.read_text())["train"]
    algo, cfg, _ = load_run(run, "best", "cpu")
    b_train = Banking77("full-train", root=root, tokenizer=tok)
    b_test = Banking77("full-test", root=root, tokenizer=tok)
    test_ids = b_test.gather(torch.arange(len(b_test)))
    test_y = np.asarray([b_test.class_names[c] for c in b_test.labels])
    for k in (5, 10):
        accs: dict[str, list[float]] = {}
        cpu: dict[str, float] = {}
        for draw in range(5):
            rng = np.random.default_rng([draw, k])
            chosen = np.concatenate([rng.choice(np.flatnonzero(b_train.labels == c), k, replace=False)
                                     for c in range(b_train.num_classes)])
            s = [b_train.texts[i] for i in chosen]
            sy = [b_train.class_names[b_train.labels[i]] for i in chosen]
            t0 = own_cpu()
            clf = FewShotClassifier(algo, tokenizer=tok, query_independent=False).fit(s, sy)
            accs.setdefault(method, []).append(float(np.mean(clf.predict(test_ids) == test_y)))
            cpu[method] = cpu.get(method, 0.0) + own_cpu() - t0
            vec = Vectors(tfidf(s))  # a few-shot baseline sees the support texts only
            for name, cls in BASELINES.items():
                t0 = own_cpu()
                model = cls(vec).fit(s, sy)
                pred = model.classes_[model.logits(b_test.texts).argmax(1)]
                accs.setdefault(name, []).append(float(np.mean(pred == test_y)))
                cpu[name] = cpu.get(name, 0.0) + own_cpu() - t0
        for name, values in accs.items():
            m, c = mean_ci(values)
            extra = {"ci95": round(100 * c, 3), "draws": 5, "per_draw": [round(100 * v, 2) for v in values],
                     "test_utterances": len(test_y), "eval_cpu_s": round(cpu[name], 1)}
            if name == method:
                extra.update(train_cpu_s=round(train_cpu, 1), train_steps=cfg.train.steps,
                             train_shape=f"{cfg.data.n_way}-way 5-shot on CLINC150+HWU64")
            # a meta-learner trained at another way than the default 20 is its own figure
            shape = f"_train{args.train_way}way" if name == method and args.train_way != 20 else ""
            record(f"text_banking77_fullway_{k}shot_{name}{shape}_accuracy", 100 * m, "%", extra=extra)


def ssl(args) -> None:
    """Does self-supervised pretraining on the meta-training texts pay? SimCSE or masked-token
    pretraining of the encoder (labels unused), then the same ProtoNet meta-training, against the
    plain run of the ``episodic`` protocol, paired on the same test episodes."""
    import torch

    from metalearn.models import BACKBONES
    from metalearn.presets import get_preset
    from metalearn.train.config import validate
    from metalearn.train.data import build_source
    from metalearn.train.text_pretrain import pretrain_text_encoder, save_text_encoder

    method = args.methods[0]
    for ds in args.datasets:
        for fold in args.folds:
            plain = args.out / ds / f"fold{fold}" / method
            if not all((plain / f"eval_test_5w{k}s.json").exists() for k in args.shots):
                raise SystemExit(f"{plain} is not evaluated: run the episodic protocol for {ds} fold {fold} first")
            cfg = get_preset(f"{method}-{ds}-5w5s")
            cfg.data.fold, cfg.data.root = fold, args.data_root
            validate(cfg)
            run = args.out / ds / f"fold{fold}" / f"{method}+{args.ssl}"
            weights = run.parent / f"{method}+{args.ssl}.safetensors"
            cpu_file = run.parent / f"{method}+{args.ssl}.cpu.json"
            if not weights.exists():
                train = build_source(cfg.data, "train")
                torch.manual_seed(0)
                encoder = BACKBONES[cfg.model.backbone](**cfg.model.options)
                t0 = own_cpu()
                losses = pretrain_text_encoder(encoder, train.gather(torch.arange(len(train))), method=args.ssl,
                                               steps=args.ssl_steps, seed=0, progress=False)
                cpu_file.write_text(json.dumps({"pretrain": own_cpu() - t0, "first_loss": losses[0],
                                                "last_loss": losses[-1]}))
                save_text_encoder(encoder, weights)
            pre = json.loads(cpu_file.read_text())
            sets = [f"data.fold={fold}", f"data.root={args.data_root}", f"model.weights={weights.resolve()}"]
            if args.steps:
                sets += [f"train.steps={args.steps}"]
            res = train_and_eval(run, f"{method}-{ds}-5w5s", sets, args.shots)
            for k in args.shots:
                base = json.loads((plain / f"eval_test_5w{k}s.json").read_text())["result"]
                m, c = mean_ci(res[k]["per_episode"])
                record(f"text_{ds}_fold{fold}_5w{k}s_{method}+{args.ssl}_accuracy", 100 * m, "%",
                       extra={"ci95": round(100 * c, 3), "n_episodes": len(res[k]["per_episode"]),
                              "pretrain_steps": args.ssl_steps, "pretrain_cpu_s": round(pre["pretrain"], 1),
                              "train_cpu_s": round(res["train_cpu_s"], 1),
                              "command": res["train_command"] + " && " + res[k]["eval_command"]})
                d, c = paired(res[k]["per_episode"], base["per_episode"])
                record(f"text_{ds}_fold{fold}_5w{k}s_{method}+{args.ssl}_minus_{method}", 100 * d, "%",
                       extra={"ci95": round(100 * c, 3), "paired": True})


def coverage(args) -> None:
    """How many of the test intents' words the meta-training texts contain, per dataset and fold:
    the share of test word types (and of test word occurrences) never seen in meta-training."""
    import re
    from collections import Counter

    from metalearn.data.intents import INTENT_DATASETS

    def words(texts):
        return Counter(w for t in texts for w in re.findall(r"\w+", t.lower()))

    for ds in args.datasets:
        for fold in args.folds:
            train = INTENT_DATASETS[ds]("train", fold=fold, root=args.data_root)
            test = INTENT_DATASETS[ds]("test", fold=fold, root=args.data_root, tokenizer=train.tokenizer)
            seen, asked = words(train.texts), words(test.texts)
            unseen = [w for w in asked if w not in seen]
            extra = {"fold": fold, "train_utterances": len(train), "test_word_types": len(asked)}
            record(f"text_{ds}_fold{fold}_unseen_word_types", 100 * len(unseen) / len(asked), "%",
                   higher_is_better=False, extra=extra)
            record(f"text_{ds}_fold{fold}_unseen_word_occurrences",
                   100 * sum(asked[w] for w in unseen) / sum(asked.values()), "%", higher_is_better=False,
                   extra=extra)


def table(args) -> None:
    """Print the markdown tables of docs/text.md from the latest text records in results.jsonl."""
    from _record import RESULTS

    latest = {}
    for line in RESULTS.read_text().splitlines():
        if line.strip() and (row := json.loads(line))["name"].startswith("text_"):
            old = latest.get(row["name"])
            # a fold average over more folds wins over a later one over fewer (a one-fold rerun)
            if old is None or len(row.get("folds", ())) >= len(old.get("folds", ())):
                latest[row["name"]] = row

    # a fold average that no single run recorded over all five folds (the folds were trained in
    # different sessions) is composed from the latest per-fold records, as episodic() would
    cells = {(parts[1], parts[3], parts[4]) for parts in (n.split("_") for n in latest)
             if len(parts) == 6 and parts[2].startswith("fold") and parts[5] == "accuracy"}
    for ds, shots, method in cells:
        mean_name = f"text_{ds}_{shots}_{method}_accuracy_fold_mean"
        rows = [latest.get(f"text_{ds}_fold{f}_{shots}_{method}_accuracy") for f in range(1, 6)]
        if len(latest.get(mean_name, {}).get("folds", ())) == 5 or any(r is None for r in rows):
            continue
        avg, ci = fold_average([r["value"] for r in rows], [r["ci95"] for r in rows])
        latest[mean_name] = {"value": avg, "ci95": ci, "folds": [1, 2, 3, 4, 5],
                             "per_fold": [r["value"] for r in rows], "unit": "%"}

    def cell(name: str) -> str:
        r = latest.get(name)
        if r is None:
            return ""
        folds = r.get("folds", [1, 2, 3, 4, 5])
        return f"{r['value']:.2f} ± {r['ci95']:.2f}" + ("" if len(folds) == 5 else f" (fold {', '.join(map(str, folds))})")

    methods = sorted({n.split("_")[3] for n in latest if n.endswith("_accuracy_fold_mean")} - set(BASELINES))
    print("| dataset | shots | " + " | ".join(methods) + " | TF-IDF + centroid | TF-IDF + log. reg. | per fold (first method) |")
    print("|---|---|" + "---|" * (len(methods) + 3))
    for ds in DATASETS:
        for k in (1, 5):
            names = [f"text_{ds}_5w{k}s_{m}_accuracy_fold_mean" for m in [*methods, *BASELINES]]
            if not any(n in latest for n in names):
                continue
            first = latest.get(names[0], {})
            folds = ", ".join(f"{v:.1f}" for v in first.get("per_fold", []))
            print(f"| {ds} | {k} | " + " | ".join(cell(n) for n in names) + f" | {folds} |")
    print()
    every = sorted({n.split("_")[4] for n in latest
                    if n.split("_")[2] == "fold1" and n.endswith("_accuracy") and len(n.split("_")) == 6},
                   key=lambda m: (m in BASELINES, m))
    print("| fold 1, 5-way | shots | " + " | ".join(every) + " |")
    print("|---|---|" + "---|" * len(every))
    for ds in DATASETS:
        for k in (1, 5):
            names = [f"text_{ds}_fold1_5w{k}s_{m}_accuracy" for m in every]
            if any(n in latest for n in names):
                print(f"| {ds} | {k} | " + " | ".join(cell(n).replace(" (fold 1)", "") for n in names) + " |")
    print()
    print("| paired difference per fold, 5-way K-shot | fold | " + " | ".join(f"{m} − {b}" for m in methods for b in BASELINES) + " |")
    print("|---|---|" + "---|" * (len(methods) * len(BASELINES)))
    for ds in DATASETS:
        for k in (1, 5):
            for fold in range(1, 6):
                names = [f"text_{ds}_fold{fold}_5w{k}s_{m}_minus_{b}" for m in methods for b in BASELINES]
                if any(n in latest for n in names):
                    print(f"| {ds} {k}-shot | {fold} | " + " | ".join(cell(n) for n in names) + " |")
    print()
    oos_methods = sorted({n.split("_")[5] for n in latest if n.startswith("text_clinc150_oos_fold")},
                         key=lambda m: (m in BASELINES, m))
    if oos_methods:
        print("| CLINC150 out-of-scope, fold | " + " | ".join(f"{m} in-scope acc. | {m} oos recall"
                                                          for m in oos_methods) + " |")
        print("|---|" + "---|" * (2 * len(oos_methods)))
        sums: dict[str, list] = {}
        for fold in range(1, 6):
            names = [f"text_clinc150_oos_fold{fold}_5w5s_{m}_{metric}" for m in oos_methods
                     for metric in ("in_scope_accuracy", "oos_recall")]
            if all(n in latest for n in names):
                print(f"| {fold} | " + " | ".join(cell(n) for n in names) + " |")
                for n in names:
                    sums.setdefault(n.split("_", 5)[5], []).append(latest[n])
        if sums:
            keys = [f"{m}_{metric}" for m in oos_methods for metric in ("in_scope_accuracy", "oos_recall")]
            def avg(rows):
                return "{:.2f} ± {:.2f}".format(*fold_average([r["value"] for r in rows], [r["ci95"] for r in rows]))
            n_folds = len(next(iter(sums.values())))
            print(f"| mean of {n_folds} folds | " + " | ".join(avg(sums[k]) for k in keys) + " |")
    print()
    for name, row in sorted(latest.items()):
        if "fullway" in name or "oos" in name or "+" in name or "fold1_5w" in name and "minus" not in name:
            extra = {k: row[k] for k in ("train_cpu_s", "eval_cpu_s", "backbone") if k in row}
            print(f"- `{name}`: {row['value']:.2f} ± {row.get('ci95', 0):.2f} {row['unit']} {extra}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("protocol", choices=("episodic", "fullway", "oos", "ssl", "coverage", "table"))
    p.add_argument("--out", type=Path, default=Path("runs/text"), help="folder of the training runs")
    p.add_argument("--data-root", default=os.environ.get("METALEARN_DATA", str(ROOT.parent / "shared" / "data")))
    p.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    p.add_argument("--folds", nargs="+", type=int, default=[1, 2, 3, 4, 5])
    p.add_argument("--shots", nargs="+", type=int, default=[1, 5])
    p.add_argument("--methods", nargs="*", default=["protonet"],
                   help="meta-learners (preset prefixes: protonet, anil, baseline-pp, generator)")
    p.add_argument("--steps", type=int, default=None, help="override train.steps of the presets")
    p.add_argument("--ssl", choices=("simcse", "mlm"), default="simcse", help="ssl: the pretraining")
    p.add_argument("--ssl-steps", type=int, default=1000, help="ssl: pretraining steps (batches of 64 texts)")
    p.add_argument("--train-way", type=int, default=20, help="fullway: classes per meta-training episode")
    p.add_argument("--episodes", type=int, default=600, help="oos: test episodes per fold")
    p.add_argument("--reject-quantile", type=float, default=0.05,
                   help="oos: quantile of the support's leave-one-out scores under the threshold")
    args = p.parse_args()
    start = time.time()
    {"episodic": episodic, "oos": oos, "fullway": fullway, "ssl": ssl, "coverage": coverage,
     "table": table}[args.protocol](args)
    print(f"# {args.protocol} done in {time.time() - start:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
