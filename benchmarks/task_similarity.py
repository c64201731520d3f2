"""Does warm-starting from similar past tasks beat the meta-initialisation? Measured, paired.

Setup (all seeded): a MAML learner (MLP 1-40-40-1, inner SGD at 0.01, 1 inner step, Adam 1e-3,
meta-batch 25, ``--train-steps``) is meta-trained on a task distribution with structure, by
default an equal mixture of sinusoids, lines and quadratics (``--family mixture``), or on plain
sinusoids (``--family sinusoid``). A :class:`~metalearn.algorithms.warm_start.TaskMemory` then stores
``--memory-tasks`` fresh meta-training tasks, each embedded by its support-loss gradient at the
meta-initialisation (:func:`~metalearn.algorithms.task_embedding.gradient_embedding`, cosine similarity) and
fitted from the meta-initialisation with ``--fit-steps`` SGD steps on its support and query
points. On 600 fixed test tasks (seed 2, K support points, 100 query points) each method adapts
with the SAME rule and number of steps S from a different start:

* ``meta_init``: MAML's meta-initialisation (plain MAML adaptation);
* ``warm``: the softmax-weighted combination of the k most similar stored tasks' parameters;
* ``random``: k stored tasks drawn at random (a control: is it the retrieval that helps?).

For each S the query MSE (mean and 95% CI over the 600 tasks) of every start and the paired
per-task difference ``warm - meta_init`` go to results.jsonl.

``--memory-family sinusoid`` with ``--family mixture`` fills the memory with sinusoids only:
two thirds of the test tasks (lines, quadratics) then have no similar stored task.

Usage:
    python benchmarks/task_similarity.py [--family mixture|sinusoid] [--steps 1 5 25]
        [--memory-family mixture|sinusoid]
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time

import torch
from _record import record

from metalearn.algorithms import MAML, MAMLConfig
from metalearn.algorithms.functional import make_forward
from metalearn.algorithms.task_embedding import fit_projection, gradient_embedding
from metalearn.algorithms.warm_start import TaskMemory, WarmStartAdapter, build_memory
from metalearn.data import EpisodeSampler, FixedEpisodes
from metalearn.data.regression import LinearTasks, MixtureTasks, QuadraticTasks, SinusoidTasks
from metalearn.eval import evaluate
from metalearn.models import MLP
from metalearn.optim.update_rules import sgd


def family(name: str):
    if name == "mixture":
        return MixtureTasks(families=(SinusoidTasks(), LinearTasks(), QuadraticTasks()))
    return SinusoidTasks()


def meta_train(source, args) -> MAML:
    torch.manual_seed(args.seed)
    maml = MAML(MLP(1, (40, 40), out_features=1), MAMLConfig(inner_lr=0.01, inner_steps=1))
    sampler = EpisodeSampler(source, None, args.k_shot, args.k_shot, seed=args.seed)
    opt = torch.optim.Adam(maml.parameters(), lr=1e-3)
    for _ in range(args.train_steps):
        loss, _ = maml.meta_loss(sampler.sample_batch(25))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return maml.eval()


def paired(a: list[float], b: list[float]) -> tuple[float, float]:
    d = [x - y for x, y in zip(a, b)]
    m = sum(d) / len(d)
    return m, 1.96 * math.sqrt(sum((x - m) ** 2 for x in d) / len(d)) / math.sqrt(len(d))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--family", choices=("mixture", "sinusoid"), default="mixture")
    p.add_argument("--train-steps", type=int, default=3000)
    p.add_argument("--memory-tasks", type=int, default=2000)
    p.add_argument("--fit-steps", type=int, default=200)
    p.add_argument("--memory-family", choices=("mixture", "sinusoid"), default=None,
                   help="draw the stored tasks from this family instead (a mismatch test)")
    p.add_argument("--metric", choices=("cosine", "projection"), default="cosine",
                   help="retrieval metric: cosine, or Euclidean after a learned 32-d projection")
    p.add_argument("--k-shot", type=int, default=10)
    p.add_argument("--k", type=int, default=5, help="tasks retrieved per test task")
    p.add_argument("--temperature", type=float, default=0.05)
    p.add_argument("--steps", type=int, nargs="+", default=[1, 5, 25], help="adaptation steps S")
    p.add_argument("--test-tasks", type=int, default=600)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-record", action="store_true", help="print only (for trying settings)")
    args = p.parse_args()
    t0 = time.perf_counter()
    source = family(args.family)
    maml = meta_train(source, args)
    forward = make_forward(maml.backbone)
    meta = {k: v.detach() for k, v in maml.backbone.named_parameters()}

    def embed(sx, sy):
        return gradient_embedding(forward, meta, sx, sy)

    mem = args.memory_family or args.family
    stored = family(mem).sample_batch(args.memory_tasks, args.k_shot, args.k_shot,
                                      torch.Generator().manual_seed(args.seed + 1000))
    memory = build_memory(maml, stored, embed, args.fit_steps, sgd(0.01),
                          TaskMemory("cosine", temperature=args.temperature))
    if args.metric == "projection":  # learned metric: distances of fitted parameters, on 500 tasks
        sub = torch.randperm(len(memory), generator=torch.Generator().manual_seed(args.seed))[:500]
        targets = torch.cat([v.flatten(1) for v in memory.params().values()], 1)[sub]
        proj = fit_projection(memory.keys()[sub], targets, dim=32, steps=300, lr=0.01, seed=args.seed)
        memory.metric, memory.projection = "euclidean", proj
    g = torch.Generator().manual_seed(args.seed + 2000)
    n_params = memory.dim

    def random_embed(sx, sy):  # retrieval by a random direction: k arbitrary stored tasks
        return torch.randn(n_params, generator=g)

    episodes = list(FixedEpisodes(source, None, args.k_shot, 100, n_episodes=args.test_tasks, seed=2))
    setup = (f"{args.family}, {args.k_shot}-shot, MAML {args.train_steps} steps x 25 tasks, memory "
             f"{args.memory_tasks} {mem} tasks fitted {args.fit_steps} SGD steps, k={args.k}, "
             f"temperature {args.temperature}, {args.metric} on support-gradient embeddings")
    for steps in args.steps:
        plain = MAML(maml.backbone, dataclasses.replace(maml.config, eval_inner_steps=steps)).eval()
        results = {
            "meta_init": evaluate(plain, episodes),
            "warm": evaluate(WarmStartAdapter(maml, memory, embed, args.k, steps), episodes),
            "random": evaluate(WarmStartAdapter(maml, memory, random_embed, args.k, steps), episodes),
        }
        diff, ci = paired(results["warm"].per_episode, results["meta_init"].per_episode)
        diff_r, ci_r = paired(results["random"].per_episode, results["meta_init"].per_episode)
        line = {k: f"{r.mean:.4f} ± {r.ci95:.4f}" for k, r in results.items()}
        print(f"S={steps}: {line}; warm - meta_init {diff:+.4f} ± {ci:.4f}", flush=True)
        if args.no_record:
            continue
        base = f"task_similarity_{args.family}_{args.k_shot}shot_S{steps}"
        if mem != args.family:
            base = f"task_similarity_{args.family}_memory_{mem}_{args.k_shot}shot_S{steps}"
        if args.metric != "cosine":
            base += f"_{args.metric}"
        extra = {"n_episodes": args.test_tasks, "setup": setup}
        for k, r in results.items():
            record(f"{base}_{k}_mse", round(r.mean, 5), "mse", higher_is_better=False,
                   extra={"ci95": round(r.ci95, 5), **extra})
        record(f"{base}_warm_minus_meta_init_mse", round(diff, 5), "mse", higher_is_better=False,
               extra={"ci95": round(ci, 5), "paired": True, **extra})
        record(f"{base}_random_minus_meta_init_mse", round(diff_r, 5), "mse", higher_is_better=False,
               extra={"ci95": round(ci_r, 5), "paired": True, **extra})
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
