"""Meta-RL speed (issue 20, point 7): environment steps/s and seconds per MAML-TRPO iteration.

Figures (each one JSON line on stdout, appended to ``--results``, default
benchmarks/results.jsonl):

- ``rl_nav2d_env_steps``: raw steps/s of the vectorised :class:`~metalearn.rl.envs.Navigation2D`
  (``--envs`` environments, random actions);
- ``rl_nav2d_rollout_steps``: steps/s of a full rollout with the 64-64 Gaussian policy (what a
  meta-iteration pays), ``--tasks`` x ``--per-task`` environments, horizon ``--horizon``;
- ``rl_halfcheetah_env_steps``: steps/s of MuJoCo HalfCheetah-vel in gymnasium's synchronous
  vector env (skipped, with the reason printed, when gymnasium/mujoco are missing);
- ``rl_ml1_reach_env_steps_x{N}``: steps/s of Meta-World ML1 reach-v3
  (:class:`~metalearn.rl.metaworld_envs.MetaWorldML1`, a list of ``N`` environments stepped in
  turn) for each ``N`` of ``--ml1-envs`` (skipped, with the reason, when metaworld is missing);
- ``rl_maml_trpo_nav2d_s_per_iter``: seconds per MAML-TRPO meta-iteration (two rollouts, the
  inner step, TRPO with 10 CG iterations and the line search) at the paper's settings (20 tasks,
  20 trajectories, horizon 100), median of ``--iters`` after one warm-up, with the factored
  Hessian-vector products, and against the third-order ones (``hvp="autograd"``) as the ratio;
- ``rl_maml_trpo_nav2d_vs_l2l``: seconds per meta-iteration of learn2learn's own
  ``examples/rl/maml_trpo.py`` (its ``main``, unchanged, on its 2-D navigation task
  ``Particles2D-v1``, run by ``benchmarks/peers/l2l_maml_trpo.py`` in the peers venv) against
  metalearn's MAML-TRPO at the same settings (20 tasks x 20 trajectories, horizon 100, one inner
  step at 0.1, TRPO with 10 CG iterations, max KL 0.01, a 100-100 policy as the example's), both
  with one torch thread, in the same run; ``ratio`` = theirs / ours. It needs
  ``benchmarks/peers/setup_rl.sh`` (cherry-rl and gym 0.22 beside the peers venv, and the
  example from learn2learn's sdist); without them, what blocked it is printed and recorded as
  ``rl_l2l_maml_trpo``.

Usage: OMP_NUM_THREADS=1 python benchmarks/rl_speed.py [--iters 3] [--results PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import torch  # noqa: E402
from _record import RESULTS, commit, machine, record  # noqa: E402

from metalearn.rl.envs import ENVIRONMENTS, Navigation2D, env_builder  # noqa: E402
from metalearn.rl.maml_trpo import MAMLTRPO, MAMLTRPOConfig, meta_iteration  # noqa: E402
from metalearn.rl.policies import GaussianMLPPolicy  # noqa: E402
from metalearn.rl.rollout import rollout  # noqa: E402

PEERS_PY = HERE / ".venv-peers" / "bin" / "python"
PEERS_RL_SITE = HERE / ".venv-peers" / "rl-site"
"""cherry-rl and gym 0.22, installed by benchmarks/peers/setup_rl.sh."""
L2L_EXAMPLES = HERE / ".venv-peers" / "l2l-examples" / "rl"
"""learn2learn 0.2.0's examples/rl, from its sdist (benchmarks/peers/setup_rl.sh)."""


def note(name: str, reason: str, results: Path) -> None:
    """Print and record a figure that could not be measured, with the reason."""
    row = {"name": name, "skipped": reason}
    print(json.dumps(row), flush=True)
    row.update(date=time.strftime("%Y-%m-%dT%H:%M:%S%z"), commit=commit(), machine=machine(),
               command=" ".join([Path(sys.executable).name, *sys.argv]))
    with open(results, "a") as f:
        f.write(json.dumps(row) + "\n")


def env_steps(env, steps: int, generator: torch.Generator) -> float:
    """Raw steps/s of ``env`` under uniform random actions in ``[-1, 1]``."""
    env.reset_task(env.sample_tasks(1, generator) * env.num_envs)
    env.reset(generator)
    actions = [2 * torch.rand(env.num_envs, env.act_dim, generator=generator) - 1
               for _ in range(steps)]
    start = time.perf_counter()
    for a in actions:
        env.step(a)
    return env.num_envs * steps / (time.perf_counter() - start)


def rollout_steps(args, generator: torch.Generator) -> float:
    env = Navigation2D(num_envs=args.tasks * args.per_task, horizon=args.horizon)
    policy = GaussianMLPPolicy(2, 2)
    algo = MAMLTRPO(policy)
    tasks = env.sample_tasks(args.tasks, generator)
    start = time.perf_counter()
    traj = rollout(env, algo.forward_fn, algo.policy_params(), tasks, args.per_task, generator)
    return float(traj.mask.sum()) / (time.perf_counter() - start)


def seconds_per_iteration(args, hvp: str, hidden: tuple[int, ...] = (64, 64)) -> float:
    torch.manual_seed(0)
    algo = MAMLTRPO(GaussianMLPPolicy(2, 2, hidden=hidden), MAMLTRPOConfig(hvp=hvp))
    env = Navigation2D(num_envs=args.tasks * args.per_task, horizon=args.horizon)
    gen = torch.Generator().manual_seed(0)
    times = []
    for i in range(args.iters + 1):
        tasks = env.sample_tasks(args.tasks, gen)
        start = time.perf_counter()
        meta_iteration(algo, env, tasks, args.per_task, gen)
        if i:  # the first one warms up
            times.append(time.perf_counter() - start)
    return statistics.median(times)


L2L_PROBE = """
import sys
sys.path.insert(0, {peers!r})
sys.path.insert(0, {examples!r})
from shim import import_learn2learn
import_learn2learn()
import gym
import cherry
import learn2learn.gym
import maml_trpo
"""


def _peers_env(cherry_path: str | None) -> dict:
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore",
                **({"PYTHONPATH": cherry_path} if cherry_path else {}))


def learn2learn_blocker(cherry_path: str | None, peers_py: Path = PEERS_PY,
                        examples: Path = L2L_EXAMPLES) -> str | None:
    """None when cherry, gym, learn2learn.gym and the example import in the peers venv, else
    the reason."""
    if not peers_py.exists():
        return f"no peers virtualenv at {peers_py} (build it: benchmarks/peers/setup.sh)"
    if not (examples / "maml_trpo.py").exists():
        return (f"no learn2learn examples/rl at {examples} (benchmarks/peers/setup_rl.sh puts it there, "
                "from learn2learn's sdist)")
    probe = L2L_PROBE.format(peers=str(HERE / "peers"), examples=str(examples))
    done = subprocess.run([str(peers_py), "-c", probe], capture_output=True, text=True,
                          env=_peers_env(cherry_path), cwd=examples, timeout=300)
    if done.returncode == 0:
        return None
    last = (done.stderr.strip().splitlines() or ["(no error output)"])[-1]
    where = f" (cherry from {cherry_path})" if cherry_path else ""
    return (f"learn2learn's examples/rl/maml_trpo.py needs cherry and gym; importing them in "
            f"the peers venv{where} failed: {last} (benchmarks/peers/setup_rl.sh installs working versions)")


def learn2learn_seconds_per_iteration(args) -> dict:
    """learn2learn's example timed by benchmarks/peers/l2l_maml_trpo.py (its JSON object)."""
    argv = [str(args.peers_python), str(HERE / "peers" / "l2l_maml_trpo.py"), "--examples", str(args.l2l_examples),
            "--iters", str(args.iters), "--meta-bsz", str(args.tasks), "--adapt-bsz", str(args.per_task)]
    import signal
    import tempfile

    # The example's output (long progress bars) goes to a file, and its JSON to another: its
    # environment processes inherit the output streams and can outlive its main, so waiting for
    # the end of a pipe hung for an hour. The whole process group is killed once main returns.
    with tempfile.TemporaryDirectory() as tmp:
        out, log = Path(tmp) / "l2l.json", Path(tmp) / "l2l.log"
        with open(log, "w") as err:
            proc = subprocess.Popen([*argv, "--json", str(out)], stdout=err, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env=_peers_env(args.cherry_path),
                                    cwd=args.l2l_examples, start_new_session=True)
            try:
                code = proc.wait(timeout=3600)
            finally:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        tail = log.read_text().replace("\r", "\n").strip().splitlines()[-3:]
        if code != 0 or not out.exists():
            raise RuntimeError(f"learn2learn's example failed (exit {code}): {tail}")
        return json.loads(out.read_text())


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", type=int, default=20, help="meta-batch (20 in the paper)")
    p.add_argument("--per-task", type=int, default=20, help="trajectories per task (20)")
    p.add_argument("--horizon", type=int, default=100, help="navigation horizon (100)")
    p.add_argument("--envs", type=int, default=400, help="environments for the raw step figures")
    p.add_argument("--steps", type=int, default=200, help="steps of the raw step figures")
    p.add_argument("--cheetah-envs", type=int, default=8)
    p.add_argument("--cheetah-steps", type=int, default=100)
    p.add_argument("--ml1-envs", type=int, nargs="+", default=[1, 20],
                   help="Meta-World environment counts to time (one figure each)")
    p.add_argument("--ml1-steps", type=int, default=100, help="steps of the Meta-World figures")
    p.add_argument("--iters", type=int, default=3, help="timed meta-iterations (after 1 warm-up)")
    p.add_argument("--cherry-path", default=str(PEERS_RL_SITE) if PEERS_RL_SITE.is_dir() else None,
                   help="a folder with cherry-rl and gym installed (pip install --target), put on the "
                        "peers venv's PYTHONPATH (default: benchmarks/.venv-peers/rl-site when there)")
    p.add_argument("--l2l-examples", type=Path, default=L2L_EXAMPLES,
                   help="learn2learn's examples/rl folder (default: from benchmarks/peers/setup_rl.sh)")
    p.add_argument("--peers-python", type=Path, default=PEERS_PY,
                   help="the peers venv's interpreter (default benchmarks/.venv-peers)")
    p.add_argument("--results", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    gen = torch.Generator().manual_seed(0)
    setting = {"tasks": args.tasks, "per_task": args.per_task, "horizon": args.horizon}

    record("rl_nav2d_env_steps", env_steps(Navigation2D(num_envs=args.envs), args.steps, gen),
           "steps/s", extra={"envs": args.envs}, results=args.results)
    record("rl_nav2d_rollout_steps", rollout_steps(args, gen), "steps/s",
           extra={**setting, "policy": "64-64 tanh"}, results=args.results)
    try:
        cheetah = ENVIRONMENTS["halfcheetah-vel"](num_envs=args.cheetah_envs)
    except ImportError as err:
        note("rl_halfcheetah_env_steps", f"gymnasium/mujoco missing: {err}", args.results)
    else:
        record("rl_halfcheetah_env_steps", env_steps(cheetah, args.cheetah_steps, gen), "steps/s",
               extra={"envs": args.cheetah_envs, "vector": "gymnasium SyncVectorEnv"},
               results=args.results)
        cheetah.close()
    for n in args.ml1_envs:
        try:
            ml1 = env_builder("ml1-reach-v3")(num_envs=n)
        except ImportError as err:
            note(f"rl_ml1_reach_env_steps_x{n}", f"metaworld missing: {err}", args.results)
            continue
        record(f"rl_ml1_reach_env_steps_x{n}", env_steps(ml1, args.ml1_steps, gen), "steps/s",
               extra={"envs": n, "vector": "list stepped in turn"}, results=args.results)
        ml1.close()
    factored = seconds_per_iteration(args, "factored")
    third = seconds_per_iteration(args, "autograd")
    record("rl_maml_trpo_nav2d_s_per_iter", factored, "s/iter", baseline="hvp=autograd (third order)",
           baseline_value=third, higher_is_better=False,
           extra={**setting, "iters": args.iters, "cg_iters": 10}, results=args.results)
    blocker = learn2learn_blocker(args.cherry_path, args.peers_python, args.l2l_examples)
    if blocker:
        note("rl_l2l_maml_trpo", blocker, args.results)
        return
    theirs = learn2learn_seconds_per_iteration(args)
    same = argparse.Namespace(**{**vars(args), "horizon": theirs["horizon"]})  # Particles2D-v1's 100 steps
    ours = seconds_per_iteration(same, "factored", hidden=(100, 100))
    record("rl_maml_trpo_nav2d_vs_l2l", ours, "s/iter", baseline="learn2learn examples/rl/maml_trpo.py",
           baseline_value=theirs["s_per_iter"], higher_is_better=False,
           extra={**setting, "horizon": theirs["horizon"], "iters": args.iters, "policy": "100-100 (theirs ReLU, ours tanh)",
                  "l2l_env": theirs["env"], "l2l_intervals_s": [round(x, 3) for x in theirs["intervals"]],
                  "l2l_stack": "learn2learn 0.2.0, cherry-rl 0.2.0, gym 0.22.0 (benchmarks/peers/setup_rl.sh)",
                  "threads": 1}, results=args.results)


if __name__ == "__main__":
    main()
