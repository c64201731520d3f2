"""Text pipeline speed: tokenisation throughput, episode sampling and ProtoNet text training steps.

Figures (BANKING77 fold 1, WordPiece vocabulary of 8,000 tokens, 64 tokens per text; the
default text-cnn encoder; 5-way 5-shot episodes with 5 queries per class):

* ``text_tokenize_texts_per_s``: encoding all 13,083 BANKING77 utterances with the trained
  tokenizer (``TextTokenizer.encode``, the fast batch API), best of ``--rounds``.
* ``text_sample_episode_ms``: drawing one episode from the tokenised dataset (``EpisodeSampler``).
* ``text_protonet_step_ms`` / ``text_protonet_episodes_per_s``: one ProtoNet meta-training
  step on one episode (forward, backward, Adam), the loop's ``_meta_step``.
* ``text_tokenize_share_of_step`` / ``text_sample_share_of_step``: tokenising one episode's 50
  texts, and sampling it, as a fraction of that step (the issue's target: under 5% each).
  Tokenisation happens once per dataset (cached), so its share is an upper bound: training
  never tokenises inside the loop.

Timings alternate between the measured operations in one process, so a busy machine slows them
alike and the shares stay comparable.

Usage:
    python benchmarks/text_speed.py --data-root DIR [--rounds 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from _record import record


def best_time(fn, repeat: int) -> float:
    """Least seconds of ``repeat`` calls of ``fn``."""
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", default=os.environ.get("METALEARN_DATA"))
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    from metalearn.data.intents import Banking77
    from metalearn.data.samplers import EpisodeSampler
    from metalearn.presets import get_preset
    from metalearn.train.config import validate
    from metalearn.train.data import build_source
    from metalearn.train.distributed import Ranks
    from metalearn.train.loop import _meta_step, build_algorithm

    cfg = get_preset("protonet-banking77-5w5s")
    cfg.data.root = args.data_root
    validate(cfg)
    train = build_source(cfg.data, "train")
    tok = train.tokenizer
    everything = []
    for split in ("train", "val", "test"):
        everything += Banking77(split, fold=1, root=args.data_root, tokenizer=tok).texts
    sampler = EpisodeSampler(train, 5, 5, 5, seed=0)
    algo = build_algorithm(cfg)
    params = [q for q in algo.parameters() if q.requires_grad]
    opt = torch.optim.Adam(params, lr=1e-3)
    ranks = Ranks()  # one process
    batch = sampler.sample_batch(1)
    episode_texts = [train.texts[i] for i in range(50)]
    _meta_step(algo, opt, params, batch, ranks, None)  # warm-up

    tokenize, sample, step, small = [], [], [], []
    for _ in range(args.rounds):
        tokenize.append(best_time(lambda: tok.encode(everything), 1))
        small.append(best_time(lambda: tok.encode(episode_texts), 20))
        sample.append(best_time(lambda: sampler.sample_batch(1), 50))
        step.append(best_time(lambda: _meta_step(algo, opt, params, sampler.sample_batch(1), ranks, None), 10))
    t_tok, t_small, t_sample, t_step = min(tokenize), min(small), min(sample), min(step)
    meta = {"threads": args.threads, "rounds": args.rounds, "dataset": "banking77 fold 1"}
    record("text_tokenize_texts_per_s", len(everything) / t_tok, "texts/s", extra={**meta, "texts": len(everything)})
    record("text_sample_episode_ms", 1000 * t_sample, "ms", higher_is_better=False, extra=meta)
    record("text_protonet_step_ms", 1000 * t_step, "ms", higher_is_better=False,
           extra={**meta, "episode": "5-way 5-shot 5 queries, text-cnn, 64 tokens"})
    record("text_protonet_episodes_per_s", 1.0 / t_step, "episodes/s", extra=meta)
    record("text_tokenize_share_of_step", t_small / t_step, "fraction", higher_is_better=False,
           extra={**meta, "note": "tokenising one episode's 50 texts; training uses the cached ids"})
    record("text_sample_share_of_step", t_sample / t_step, "fraction", higher_is_better=False, extra=meta)


if __name__ == "__main__":
    main()
