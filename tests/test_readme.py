"""The README's code runs as written (issue 17, point 3).

Every ```python block of README.md is executed, in a temporary working directory that holds
what its text assumes: ``runs/proto`` (an untrained ProtoNet run on Omniglot-format images, as
the Quick start's ``metalearn train --out runs/proto`` writes), the folders ``my_classes/`` and
``my_images/``, and the tensors that the blocks name as coming from the Data section (``batch``,
``support_x``...), synthetic here. Budgets are cut by the textual replacements in
:data:`TINY`, each of which must occur in the block (so the test follows the README).

Shell blocks: the Quick start's commands are parsed from the README and run through
``metalearn.cli.main`` (``DATA`` = the test data root; ``train`` with ``--set train.steps=2``
and tiny validation, ``eval`` with ``--episodes 10``). The first section's ``make demo`` and
``make test`` take minutes, so ``make -n`` checks that both targets run the commands the README
says (install, then the demo preset's train and eval; lint and the whole suite), and the demo's
train + eval run through the same CLI with a tiny budget.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from test_fewshot_deploy import _digit, save_untrained_run

from metalearn.cli import main
from metalearn.train.config import AlgorithmConfig, DataConfig, ModelConfig, RunConfig, TrainConfig
from metalearn.types import Episode, EpisodeBatch

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


def blocks(lang: str) -> list[tuple[str, str]]:
    """``(section heading, code)`` of every ```lang block, in order."""
    out, heading = [], "(top)"
    for m in re.finditer(r"^## ([^\n]*)$|^```(\w+)\n(.*?)^```$", README, re.M | re.S):
        if m.group(1) is not None:
            heading = m.group(1)
        elif m.group(2) == lang:
            out.append((heading, m.group(3)))
    return out


PYTHON = blocks("python")
SECTION_NEEDS_DATA = {"Data"}  # reads the real Omniglot
TINY = {  # section -> (README text, what the test runs instead)
    "Quick start: the `metalearn` command": [('["train.steps=2000"]', '["train.steps=2", "data.val_episodes=4"]'),
                                             ('fixed_episodes(cfg.data, "test")', 'fixed_episodes(cfg.data, "test", 20)')],
}


def _task(n_way: int, k_shot: int, n_query: int, seed: int = 0) -> Episode:
    g = torch.Generator().manual_seed(seed)
    return Episode(torch.rand(n_way * k_shot, 1, 28, 28, generator=g),
                   torch.arange(n_way).repeat_interleave(k_shot),
                   torch.rand(n_way * n_query, 1, 28, 28, generator=g),
                   torch.arange(n_way).repeat_interleave(n_query))


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    """A working directory with runs/proto, my_classes/{a,b}/{1,2}.png and my_images/x.png."""
    run = tmp_path / "runs" / "proto"
    cfg = RunConfig(name="proto", data=DataConfig(dataset="omniglot", n_way=5, k_shot=1, n_query=1),
                    model=ModelConfig("conv4", {"hidden": 16}), algorithm=AlgorithmConfig("protonet", {}),
                    train=TrainConfig(device="cpu"))
    save_untrained_run(run, cfg)
    for cls, values in (("a", (0, 1)), ("b", (5, 6))):
        (tmp_path / "my_classes" / cls).mkdir(parents=True)
        for i, v in enumerate(values, 1):
            _digit(v).save(tmp_path / "my_classes" / cls / f"{i}.png")
    (tmp_path / "my_images").mkdir()
    _digit(2).save(tmp_path / "my_images" / "x.png")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_readme_has_the_blocks_this_file_runs():
    assert [h for h, _ in PYTHON] == [
        "Quick start: the `metalearn` command", "Data",
        "Metric-based learners and pretrain-then-fine-tune baselines",
        "Gradient-based meta-learning (MAML, Meta-SGD, ANIL, Reptile)"]


def _run_block(heading: str, code: str) -> dict:
    for old, new in TINY.get(heading, []):
        assert old in code, f"README block of {heading!r} no longer holds {old!r}: update TINY"
        code = code.replace(old, new)
    one = _task(5, 1, 3)
    namespace = {"batch": EpisodeBatch.stack([_task(5, 1, 3, s) for s in range(2)]),
                 "ep_5w1s": one, "ep_10w5s": _task(10, 5, 2, 1),
                 "support_x": one.support_x, "support_y": one.support_y, "query_x": one.query_x}
    exec(compile(code, f"README.md ({heading})", "exec"), namespace)
    return namespace


@pytest.mark.parametrize("heading,code", [b for b in PYTHON if b[0] not in SECTION_NEEDS_DATA],
                         ids=lambda v: v.split(":")[0].split(" (")[0][:30] if isinstance(v, str) and "\n" not in v else "")
def test_python_block_runs(heading, code, workdir, capsys):
    ns = _run_block(heading, code)
    if heading.startswith("Quick start"):
        assert "95% CI" in capsys.readouterr().out
        assert ns["probs"].shape == (1, 2) and list(ns["clf"].classes_) == ["a", "b"]
        assert ns["support_x"].shape == (4, 1, 28, 28) and ns["query_files"][0].name == "x.png"


@pytest.mark.data
@pytest.mark.parametrize("heading,code", [b for b in PYTHON if b[0] in SECTION_NEEDS_DATA], ids=["Data"])
def test_python_block_with_real_data_runs(heading, code, omniglot_root, workdir, monkeypatch):
    monkeypatch.setenv("METALEARN_DATA", str(omniglot_root))
    ns = _run_block(heading, code)
    assert tuple(ns["batch"].support_x.shape) == (32, 5, 1, 28, 28)  # as its comment says


def quick_start_commands() -> list[list[str]]:
    (_, code), = [b for b in blocks("sh") if b[0].startswith("Quick start")]
    return [shlex.split(line.split("#")[0]) for line in code.splitlines() if line.split("#")[0].strip()]


def test_quick_start_lists_the_commands_this_file_runs():
    assert [c[:2] for c in quick_start_commands()] == [
        ["metalearn", "list"], ["metalearn", "prepare-data"], ["metalearn", "train"],
        ["metalearn", "eval"], ["metalearn", "adapt"]]


TINY_TRAIN = ["--set", "train.steps=2", "--set", "data.val_episodes=2", "--set", "train.val_every=2",
              "--set", "train.device=cpu", "--set", "train.tensorboard=false", "--quiet"]


@pytest.mark.data
def test_quick_start_runs_as_written(omniglot_root, workdir, capsys):
    shutil.rmtree(workdir / "runs" / "proto")  # the train command makes it
    for cmd in quick_start_commands():
        argv = [str(omniglot_root) if a == "DATA" else a for a in cmd[1:]]
        argv += {"train": TINY_TRAIN, "eval": ["--episodes", "10"]}.get(argv[0], [])
        code = main(argv)
        out = capsys.readouterr()
        assert code == 0, (cmd, out.err)
        assert "Traceback" not in out.err
        if argv[0] == "eval":
            assert "95% CI" in out.out
    assert (workdir / "predictions.csv").read_text().splitlines()[0] == "file,predicted,p_a,p_b"


def test_quick_start_list_runs_as_written(capsys):
    cmd = quick_start_commands()[0]
    assert main(cmd[1:]) == 0 and "presets:" in capsys.readouterr().out


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_first_section_make_targets_run_what_the_readme_says():
    (_, code), = [b for b in blocks("sh") if b[0] == "(top)"]
    assert [shlex.split(line.split("#")[0]) for line in code.splitlines()] == [["make", "demo"], ["make", "test"]]
    demo = subprocess.run(["make", "-n", "demo"], cwd=REPO, capture_output=True, text=True)
    assert demo.returncode == 0, demo.stderr
    assert "metalearn.cli train" in demo.stdout and "metalearn.cli eval demo_out/run" in demo.stdout
    test = subprocess.run(["make", "-n", "test"], cwd=REPO, capture_output=True, text=True)
    assert test.returncode == 0, test.stderr
    assert "ruff check" in test.stdout and "pytest --doctest-modules metalearn tests" in test.stdout


def test_the_demo_preset_trains_and_evaluates(tmp_path, capsys):
    # `make demo` without data: `train --preset demo` then `eval`, here with a tiny budget
    assert main(["train", "--preset", "demo", "--out", str(tmp_path / "run"), "--overwrite", *TINY_TRAIN]) == 0
    assert main(["eval", str(tmp_path / "run"), "--episodes", "10"]) == 0
    assert "95% CI" in capsys.readouterr().out
