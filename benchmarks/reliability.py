"""Reliability figures: the bad-input corpus and SIGKILL crash recovery, counted and timed.

Runs every case of ``tests/bad_inputs/corpus.py`` (each must end in a clear error naming the fix;
from the command line: exit 2, no traceback), then kills real ``metalearn train`` runs with
SIGKILL at random steps and inside checkpoint writes (``tests/bad_inputs/crash.py``), resumes
them and compares each with the uninterrupted run, and finally SIGKILLs a process that only
writes checkpoints. Prints one JSON line per figure and appends it to ``results.jsonl``.

Usage::

    python benchmarks/reliability.py      # corpus + 3 runs x 4 kills + 10 writer kills
    python benchmarks/reliability.py --chains 3 --kills 5 --writer-kills 12 --seed 1
    python benchmarks/reliability.py --corpus-only
    python benchmarks/reliability.py --threads-check   # CPU thread count vs bitwise results

Not a timed benchmark of speed: it needs no machine lock (the corpus time is reported for the
record, measured on whatever load the machine has).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

from _record import record  # noqa: E402
from bad_inputs.corpus import CASES, case_id, run_case  # noqa: E402
from bad_inputs.crash import default_targets, kill_chain, torture  # noqa: E402


def run_corpus(verbose: bool) -> tuple[int, int, float, list[str]]:
    failures = []
    start = time.perf_counter()
    for case in CASES:
        with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ok, detail = run_case(case, Path(tmp))
        if verbose:
            print(f"{'ok  ' if ok else 'FAIL'} {case_id(case)}: {detail[:160]}", file=sys.stderr)
        if not ok:
            failures.append(f"{case_id(case)}: {detail}")
    return len(CASES), len(CASES) - len(failures), time.perf_counter() - start, failures


THREADS_PROBE = """
import hashlib, sys, torch
torch.set_num_threads(int(sys.argv[1]))
from metalearn.models import BACKBONES
torch.manual_seed(0)
m = BACKBONES["conv4"](hidden=32, in_channels=1)
x = torch.rand(50, 1, 28, 28)
out = m(x)
grads = torch.autograd.grad(out.square().mean(), list(m.parameters()))
print(hashlib.sha256(out.detach().numpy().tobytes() + b"".join(g.numpy().tobytes() for g in grads)).hexdigest())
"""


def threads_check() -> None:
    """Is a Conv4 forward + backward bit-identical with 1 and 2 CPU threads? (docs/reliability.md)"""
    import subprocess

    digests = [subprocess.run([sys.executable, "-c", THREADS_PROBE, str(n)], capture_output=True, text=True,
                              check=True).stdout.strip() for n in (1, 2, 1, 2)]
    record("reliability_conv4_bitwise_equal_1_vs_2_threads", float(digests[0] == digests[1]), "bool",
           extra={"repeatable_with_same_threads": digests[0] == digests[2] and digests[1] == digests[3]})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--chains", type=int, default=3, help="training runs to kill repeatedly")
    p.add_argument("--kills", type=int, default=4, help="SIGKILLs per training run")
    p.add_argument("--steps", type=int, default=160, help="steps of each training run")
    p.add_argument("--every", type=int, default=20, help="checkpoint interval (steps)")
    p.add_argument("--writer-kills", type=int, default=10, help="SIGKILLs of the checkpoint-writer process")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--corpus-only", action="store_true")
    p.add_argument("--threads-check", action="store_true",
                   help="only: is a Conv4 forward+backward bit-identical with 1 and 2 threads?")
    p.add_argument("--verbose", action="store_true", help="one line per corpus case on stderr")
    args = p.parse_args()
    if args.threads_check:
        threads_check()
        return

    tried, clear, seconds, failures = run_corpus(args.verbose)
    cli = sum(c.surface == "cli" for c in CASES)
    extra = {"cases_cli": cli, "cases_api": tried - cli, "failures": failures}
    record("reliability_bad_inputs_clear_error", clear, "cases", baseline="cases tried", baseline_value=tried,
           extra=extra)
    record("reliability_bad_inputs_corpus_seconds", seconds, "s", higher_is_better=False,
           extra={"cases": tried})
    if args.corpus_only:
        return

    rng = random.Random(args.seed)
    kills, start = [], time.perf_counter()
    chains_equal = 0
    with tempfile.TemporaryDirectory() as tmp:
        for c in range(args.chains):
            targets = default_targets(rng, args.kills, args.steps, args.every)
            result = kill_chain(Path(tmp), targets, steps=args.steps, every=args.every,
                                seed=args.seed * 100 + c, timeout=180)
            chains_equal += result.finished and result.equal_to_uninterrupted
            for k in result.kills:
                kills.append({**k.__dict__, "recovered": bool(k.ok and result.finished
                                                              and result.equal_to_uninterrupted)})
            if result.detail:
                print(f"chain {c}: {result.detail}", file=sys.stderr)
        writer = torture(Path(tmp), args.writer_kills, seed=args.seed)
    chain_seconds = time.perf_counter() - start
    recovered = sum(k["recovered"] for k in kills)
    in_write = sum(k["in_checkpoint_write"] for k in kills)
    record("reliability_kill_points_recovered", recovered, "kill points", baseline="kill points tried",
           baseline_value=len(kills),
           extra={"runs": args.chains, "runs_equal_to_uninterrupted": chains_equal,
                  "kills_inside_checkpoint_write": in_write,
                  "max_lost_steps": max((k["lost_steps"] for k in kills), default=0),
                  "checkpoint_interval": args.every, "steps": args.steps, "seconds": round(chain_seconds, 1),
                  "kill_points": [{k: v for k, v in x.items() if k != "detail"} for x in kills]})
    record("reliability_writer_kills_consistent", writer["consistent"], "kills", baseline="writer kills",
           baseline_value=writer["kills"],
           extra={"kills_with_a_write_in_progress": writer["mid_write"], "errors": writer["errors"]})
    print(json.dumps({"corpus": f"{clear}/{tried}", "kill_points": f"{recovered}/{len(kills)}",
                      "in_write": in_write, "writer": f"{writer['consistent']}/{writer['kills']}"}),
          file=sys.stderr)


if __name__ == "__main__":
    main()
