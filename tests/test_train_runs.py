"""Issue 17's run-directory points: progress without a terminal, wall-clock time in the metrics,
train-it-longer resumes, run names, --out safety and pretrained backbone weights."""

from __future__ import annotations

import json
import re

import pytest
import torch
from safetensors.torch import save_file
from test_train import tiny_config

from metalearn.cli import main
from metalearn.models import BACKBONES
from metalearn.presets import get_preset
from metalearn.train.config import ConfigError, apply_overrides
from metalearn.train.loop import build_algorithm, load_run, train
from metalearn.train.runlog import read_metrics

TINY = ["--set", "train.steps=4", "--set", "train.meta_batch=2", "--set", "train.val_every=2",
        "--set", "train.checkpoint_every=2", "--set", "data.val_episodes=4",
        "--set", "model.hidden=[16]", "--set", "train.device=cpu", "--set", "train.tensorboard=false"]

DEMO = get_preset("demo").name


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


# ---------------------------------------------------------------- 1: progress and time_s


def test_plain_progress_lines_when_stderr_is_not_a_terminal(tmp_path, capsys):
    cfg = tiny_config(steps=6, log_every=2)
    train(cfg, tmp_path / "r", progress=False, progress_seconds=0.0)  # capsys: not a TTY
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if " step " in x and "steps/s" in x]
    assert [re.search(r"step (\d+)/6", x).group(1) for x in lines] == ["2", "4", "6"]
    assert all("loss " in x and "ETA " in x for x in lines)
    assert "best val mse" in lines[-1]  # validated at step 3
    # by default at most one line per 30 s: the first logged step and the last
    train(cfg, tmp_path / "s", progress=False)
    lines = [x for x in capsys.readouterr().err.splitlines() if "steps/s" in x]
    assert [re.search(r"step (\d+)/6", x).group(1) for x in lines] == ["2", "6"]
    train(cfg, tmp_path / "q", quiet=True, progress_seconds=0.0)
    assert capsys.readouterr().err == ""


def test_every_metrics_line_has_wall_clock_seconds_summed_over_resumes(tmp_path):
    cfg = tiny_config()
    run = tmp_path / "r"
    train(cfg, run, quiet=True, stop_after=3)
    first = read_metrics(run / "metrics.jsonl")
    assert all(isinstance(x["time_s"], float) and x["time_s"] > 0 for x in first)
    at_checkpoint = json.loads((run / "checkpoints" / "last.json").read_text())["extra"]["time_s"]
    assert at_checkpoint >= first[-1]["time_s"]
    train(cfg, run, resume=True, quiet=True)
    lines = read_metrics(run / "metrics.jsonl")
    times = [x["time_s"] for x in lines]
    assert times == sorted(times)  # one clock across both processes
    assert all(x["time_s"] > at_checkpoint for x in lines if x["step"] > 3)


def test_cli_train_piped_shows_progress(tmp_path, capsys):
    code, _, err = run_cli(capsys, "train", "--preset", "demo", "--out", tmp_path / "r", *TINY,
                           "--set", "train.log_every=1")
    assert code == 0 and re.search(r"step 1/4: loss \S+ .*steps/s, ETA", err)
    code, _, err = run_cli(capsys, "train", "--preset", "demo", "--out", tmp_path / "q", "--quiet", *TINY)
    assert code == 0 and "steps/s" not in err


# ---------------------------------------------------------------- 5: train it longer


def test_resume_with_more_steps_extends_the_run_and_says_so(tmp_path, capsys):
    run = tmp_path / "r"
    assert main(["train", "--preset", "demo", "--out", str(run), "--quiet", *TINY]) == 0
    code, out, err = run_cli(capsys, "train", "--out", run, "--resume", "--set", "train.steps=6")
    assert code == 0 and "extending the run from 4 to 6 steps" in err and "6 steps" in out
    assert json.loads((run / "config.json").read_text())["train"]["steps"] == 6
    assert max(x["step"] for x in read_metrics(run / "metrics.jsonl")) == 6
    # lowering below the completed step, or another field: still a conflict
    code, _, err = run_cli(capsys, "train", "--out", run, "--resume", "--set", "train.steps=5")
    assert code == 2 and "train.steps: 6 -> 5" in err and "--force" in err
    code, _, err = run_cli(capsys, "train", "--out", run, "--resume", "--set", "train.steps=8",
                           "--set", "model.hidden=[8]")
    assert code == 2 and "model.hidden" in err and "train.steps" not in err.split("resume without")[0]


def test_an_extended_run_equals_one_trained_that_long(tmp_path, capsys):
    long = tiny_config(steps=10)
    train(long, tmp_path / "a", quiet=True)
    train(tiny_config(steps=6), tmp_path / "b", quiet=True)
    train(long, tmp_path / "b", resume=True)
    assert "extending the run from 6 to 10 steps" in capsys.readouterr().err
    a, _, _ = load_run(tmp_path / "a", "last")
    b, _, _ = load_run(tmp_path / "b", "last")
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_an_annealing_horizon_tied_to_the_steps_follows_them(tmp_path, capsys):
    cfg = tiny_config(steps=4)
    cfg.algorithm.name, cfg.algorithm.options = "reptile", {"inner_steps": 1, "anneal_steps": 4}
    train(cfg, tmp_path / "r", quiet=True)
    longer = apply_overrides(cfg, ["train.steps=6", "algorithm.anneal_steps=6"])
    result = train(longer, tmp_path / "r", resume=True)
    assert result.steps == 6 and "algorithm.anneal_steps with it" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="algorithm.anneal_steps: 6 -> 9"):
        train(apply_overrides(longer, ["train.steps=8", "algorithm.anneal_steps=9"]), tmp_path / "r",
              resume=True, quiet=True)


# ---------------------------------------------------------------- 7: names


def test_a_modified_preset_is_named_so_and_name_sets_it(tmp_path, capsys):
    code, out, _ = run_cli(capsys, "train", "--preset", "demo", "--show-config", "--set", "train.steps=4")
    assert code == 0 and json.loads(out)["name"] == DEMO + "+modified"
    # where and how to run is no change of the recipe
    code, out, _ = run_cli(capsys, "train", "--preset", "demo", "--show-config", "--device", "cpu",
                           "--data-root", tmp_path, "--set", "train.tensorboard=false")
    assert json.loads(out)["name"] == DEMO
    code, out, _ = run_cli(capsys, "train", "--preset", "demo", "--show-config", "--name", "mine",
                           "--set", "train.steps=4")
    assert json.loads(out)["name"] == "mine"
    run = tmp_path / "r"
    code, out, _ = run_cli(capsys, "train", "--preset", "demo", "--out", run, *TINY)
    assert code == 0 and f"training {DEMO}+modified:" in out
    assert json.loads((run / "config.json").read_text())["name"] == DEMO + "+modified"
    code, out, _ = run_cli(capsys, "eval", run, "--episodes", 3, "--quiet")
    assert out.startswith(f"{DEMO}+modified test:")
    code, _, err = run_cli(capsys, "train", "--preset", "demo", "--name", "a/b", "--show-config")
    assert code == 2 and "--name" in err


# ---------------------------------------------------------------- 11: --out safety


def test_out_folder_with_other_files_is_refused(tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("my work")
    for extra in ([], ["--overwrite"]):
        code, _, err = run_cli(capsys, "train", "--preset", "demo", "--out", mine, "--quiet", *TINY, *extra)
        assert code == 2 and "not a metalearn run directory" in err and "thesis.tex" in err
        assert "new or empty --out" in err
    assert sorted(p.name for p in mine.iterdir()) == ["thesis.tex"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["train", "--preset", "demo", "--out", str(empty), "--quiet", *TINY]) == 0


def test_overwrite_deletes_only_the_runs_own_files(tmp_path, capsys):
    run = tmp_path / "r"
    assert main(["train", "--preset", "demo", "--out", str(run), "--quiet", *TINY,
                 "--set", "train.tensorboard=true"]) == 0
    assert main(["eval", str(run), "--episodes", "3", "--quiet"]) == 0
    (run / "notes.txt").write_text("keep me")
    (run / "checkpoints" / "my_export.pt").write_text("keep me too")
    stale = {p.name for p in (run / "checkpoints").iterdir()}
    code, _, err = run_cli(capsys, "train", "--preset", "demo", "--out", run, "--overwrite", "--quiet",
                           *TINY, "--set", "train.steps=2")
    assert code == 0, err
    assert (run / "notes.txt").read_text() == "keep me"
    assert (run / "checkpoints" / "my_export.pt").read_text() == "keep me too"
    assert not (run / "eval_test.json").exists()  # the old run's result is gone
    assert max(x["step"] for x in read_metrics(run / "metrics.jsonl")) == 2
    assert {p.name for p in (run / "checkpoints").iterdir()} != stale
    assert not (run / "tensorboard").exists()  # the old run's events went; the new run has none


# ---------------------------------------------------------------- 13: pretrained weights


def _mlp_weights(path, seed: int = 5):
    torch.manual_seed(seed)
    net = BACKBONES["mlp"](in_features=1, hidden=[16], out_features=1)
    state = {f"backbone.{k}": v for k, v in net.state_dict().items()}  # a larger model's file
    if path.suffix == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save({"state_dict": state}, path)
    return net.state_dict()


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_model_weights_start_meta_training_from_pretrained_backbone(tmp_path, suffix):
    path = tmp_path / f"pre{suffix}"
    expected = _mlp_weights(path)
    cfg = apply_overrides(tiny_config(), [f"model.weights={path}"])
    algo = build_algorithm(cfg, pretrained=True)
    got = algo.backbone.state_dict()
    assert all(torch.equal(got[k], v) for k, v in expected.items())
    random_init = build_algorithm(tiny_config(), pretrained=True).backbone.state_dict()
    assert not all(torch.equal(random_init[k], v) for k, v in expected.items())
    run = tmp_path / "r"
    train(apply_overrides(cfg, ["train.steps=3"]), run, quiet=True)
    assert json.loads((run / "config.json").read_text())["model"]["weights"] == str(path)
    # resuming: the checkpoint wins, even when the weights file is gone
    path.unlink()
    result = train(apply_overrides(cfg, ["train.steps=5"]), run, resume=True, quiet=True)
    assert result.steps == 5
    load_run(run)  # evaluation rebuilds from the checkpoint, never reads model.weights


def test_model_weights_errors_exit_2_naming_the_key(tmp_path, capsys):
    code, _, err = run_cli(capsys, "train", "--preset", "demo", "--out", tmp_path / "a", "--quiet",
                           *TINY, "--set", f"model.weights={tmp_path / 'none.pt'}")
    assert code == 2 and "model.weights=" in err and "no such file" in err
    wrong = tmp_path / "wrong.safetensors"
    save_file({"layer.weight": torch.zeros(3, 3)}, str(wrong))
    code, _, err = run_cli(capsys, "train", "--preset", "demo", "--out", tmp_path / "b", "--quiet",
                           *TINY, "--set", f"model.weights={wrong}")
    assert code == 2 and "model.weights=" in err and "does not match the backbone" in err
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    code, _, err = run_cli(capsys, "train", "--preset", "demo", "--out", tmp_path / "c", "--quiet",
                           *TINY, "--set", f"model.weights={junk}")
    assert code == 2 and "cannot be read as weights" in err
