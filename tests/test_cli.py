"""Smoke tests of every `metalearn` command with tiny budgets, and its bad-input errors."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from metalearn.cli import main
from metalearn.eval.fewshot import AdaptInputError, FewShotClassifier, load_images
from metalearn.train.checkpoint import save_checkpoint
from metalearn.train.config import AlgorithmConfig, DataConfig, ModelConfig, RunConfig, TrainConfig
from metalearn.train.loop import build_algorithm, load_classifier

TINY = ["--set", "train.steps=4", "--set", "train.meta_batch=2", "--set", "train.val_every=2",
        "--set", "train.checkpoint_every=2", "--set", "data.val_episodes=4",
        "--set", "model.hidden=[16]", "--set", "train.device=cpu", "--set", "train.tensorboard=false"]


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def sinusoid_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "demo"
    assert main(["train", "--preset", "demo", "--out", str(out), "--quiet", *TINY]) == 0
    return out


def test_train_writes_a_run_and_reports_where(sinusoid_run, capsys, tmp_path):
    assert (sinusoid_run / "checkpoints" / "best.json").exists()
    assert (sinusoid_run / "learning_curve.png").exists()
    lines = (sinusoid_run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["kind"] for x in lines].count("val") == 2
    code, out, _ = run_cli(capsys, "train", "--preset", "demo", "--out", tmp_path / "r", *TINY)
    assert code == 0
    assert "best validation mse" in out and "95% CI" in out and "learning_curve.png" in out
    # resume the finished run with a real config change: refused without --force
    code, out, err = run_cli(capsys, "train", "--out", tmp_path / "r", "--resume", "--quiet",
                             "--set", "train.lr=0.01")
    assert code == 2 and "train.lr: 0.001 -> 0.01" in err and "--force" in err
    code, out, _ = run_cli(capsys, "train", "--out", tmp_path / "r", "--resume", "--force",
                           "--quiet", "--set", "train.steps=6", "--set", "train.lr=0.01")
    assert code == 0 and "6 steps" in out


def test_show_config_prints_resolved_json(capsys):
    code, out, _ = run_cli(capsys, "train", "--preset", "maml-omniglot-5w1s", "--show-config",
                           "--set", "algorithm.inner_lr=0.2", "--data-root", "/somewhere")
    cfg = json.loads(out)
    assert code == 0 and cfg["algorithm"]["options"]["inner_lr"] == 0.2
    assert cfg["data"]["root"] == "/somewhere" and cfg["train"]["meta_batch"] == 32


def test_eval_prints_ci_and_writes_json(sinusoid_run, capsys):
    code, out, _ = run_cli(capsys, "eval", sinusoid_run, "--episodes", 12, "--quiet")
    assert code == 0 and "mse" in out and "± " in out and "12 episodes" in out
    record = json.loads((sinusoid_run / "eval_test.json").read_text())
    per = np.array(record["result"]["per_episode"])
    assert record["result"]["n"] == 12 and record["episodes"]["seed"] == 2
    assert record["result"]["ci95"] == pytest.approx(1.96 * per.std() / np.sqrt(12))
    # the same fixed episodes every time
    run_cli(capsys, "eval", sinusoid_run, "--episodes", 12, "--quiet")
    again = json.loads((sinusoid_run / "eval_test.json").read_text())
    assert again["episodes"]["fingerprint"] == record["episodes"]["fingerprint"]
    assert again["result"]["per_episode"] == record["result"]["per_episode"]


def test_eval_at_another_shot_writes_its_own_file(sinusoid_run, capsys):
    code, out, _ = run_cli(capsys, "eval", sinusoid_run, "--episodes", 6, "--k-shot", 3, "--quiet")
    record = json.loads((sinusoid_run / "eval_test_3shot.json").read_text())
    assert code == 0 and record["episodes"]["k_shot"] == 3 and record["result"]["n"] == 6
    code, _, err = run_cli(capsys, "eval", sinusoid_run, "--n-way", 5)
    assert code == 2 and "regression run" in err
    code, _, err = run_cli(capsys, "eval", sinusoid_run, "--k-shot", 0)
    assert code == 2 and "--k-shot must be at least 1" in err


def test_list_shows_every_table(capsys):
    code, out, _ = run_cli(capsys, "list")
    assert code == 0
    for word in ("presets:", "maml-omniglot-5w1s", "algorithms:", "maml", "backbones:", "conv4",
                 "datasets:", "omniglot", "sinusoid"):
        assert word in out
    code, out, _ = run_cli(capsys, "list", "--options", "maml")
    assert code == 0 and "algorithm.inner_lr (float, default 0.4)" in out


@pytest.mark.slow
def test_help_shows_defaults_and_no_traceback_on_errors(tmp_path):
    exe = [sys.executable, "-m", "metalearn.cli"]
    out = subprocess.run([*exe, "train", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "data.k_shot (default 10)" in out.stdout
    out = subprocess.run([*exe, "eval", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "(default: test)" in out.stdout
    out = subprocess.run([*exe, "train", "--preset", "mam-omniglot-5w1s"], capture_output=True, text=True)
    assert out.returncode == 2 and "Did you mean 'maml-omniglot-5w1s'" in out.stderr
    assert "Traceback" not in out.stderr


# ---------------------------------------------------------------- adapt

SHAPES = {
    "hbar": lambda a: a.__setitem__((slice(12, 16), slice(4, 24)), 0),
    "vbar": lambda a: a.__setitem__((slice(4, 24), slice(12, 16)), 0),
    "box": lambda a: [a.__setitem__(s, 0) for s in ((slice(5, 7), slice(5, 23)), (slice(21, 23), slice(5, 23)),
                                                    (slice(5, 23), slice(5, 7)), (slice(5, 23), slice(21, 23)))],
}


def draw(shape: str, shift: int) -> Image.Image:
    """A 28x28 white image with a black stroke shape (Omniglot style), shifted by ``shift`` px."""
    a = np.full((28, 28), 255, np.uint8)
    SHAPES[shape](a)
    return Image.fromarray(np.roll(a, shift, axis=(0, 1)))


def image_folders(root: Path) -> tuple[Path, Path, Path]:
    support, query, labelled = root / "support", root / "query", root / "labelled"
    for shape in SHAPES:
        (support / shape).mkdir(parents=True)
        (labelled / shape).mkdir(parents=True)
        for i, shift in enumerate((0, 1)):
            draw(shape, shift).save(support / shape / f"{i}.png")
        for i, shift in enumerate((-1, 2)):
            draw(shape, shift).save(labelled / shape / f"{i}.png")
    query.mkdir()
    for shape in SHAPES:
        draw(shape, -2).save(query / f"{shape}_q.png")
    return support, query, labelled


@pytest.fixture(scope="module")
def image_run(tmp_path_factory) -> Path:
    """A run directory of MAML on 3-way Omniglot-format images (untrained Conv4, many eval steps)."""
    run = tmp_path_factory.mktemp("runs") / "img"
    cfg = RunConfig(name="img", data=DataConfig(dataset="omniglot", n_way=3, k_shot=2, n_query=1),
                    model=ModelConfig("conv4", {"hidden": 16, "out_features": 3}),
                    algorithm=AlgorithmConfig("maml", {"inner_lr": 0.5, "eval_inner_steps": 10}),
                    train=TrainConfig(device="cpu"))
    torch.manual_seed(0)
    algo = build_algorithm(cfg)
    save_checkpoint(run / "checkpoints", "best", {"model": algo.state_dict()}, step=0, config=cfg.to_dict())
    (run / "config.json").write_text(json.dumps(cfg.to_dict()))
    return run


def test_adapt_predicts_the_right_classes(image_run, tmp_path, capsys):
    support, query, labelled = image_folders(tmp_path)
    out = tmp_path / "pred.csv"
    code, stdout, _ = run_cli(capsys, "adapt", image_run, "--support", support, "--query", query, "--out", out)
    assert code == 0 and "written" in stdout
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 3
    for row in rows:
        assert row["predicted"] == Path(row["file"]).name.removesuffix("_q.png")
        probs = [float(row[f"p_{c}"]) for c in sorted(SHAPES)]
        assert sum(probs) == pytest.approx(1, abs=1e-4) and max(probs) == float(row[f"p_{row['predicted']}"])
    # a labelled query folder also reports accuracy
    code, stdout, _ = run_cli(capsys, "adapt", image_run, "--support", support, "--query", labelled,
                              "--out", tmp_path / "p2.csv")
    assert code == 0 and "accuracy on the labelled queries: 100.0% (6 images)" in stdout
    # --out under a file, or naming a folder: a usage error that names the fix
    err = _err(capsys, "adapt", image_run, "--support", support, "--query", query, "--out", out / "x.csv")
    assert "is a file, not a folder" in err
    err = _err(capsys, "adapt", image_run, "--support", support, "--query", query, "--out", tmp_path)
    assert "is a folder: give a file name" in err


def test_fewshot_classifier_python_api(image_run, tmp_path):
    support, _, labelled = image_folders(tmp_path)
    sx, sy, _ = load_images(support, 28, 1, invert=True)
    qx, qy, _ = load_images(labelled, 28, 1, invert=True)
    assert sx.shape == (6, 1, 28, 28) and 0 <= sx.min() and sx.max() <= 1
    assert sx.mean() < 0.5  # inverted: strokes are 1 on a 0 background
    clf = load_classifier(image_run)
    assert isinstance(clf, FewShotClassifier)
    before = {k: v.clone() for k, v in clf.algorithm.state_dict().items()}
    assert clf.fit(sx, sy) is clf and list(clf.classes_) == sorted(SHAPES)
    assert list(clf.predict(qx)) == qy
    proba = clf.predict_proba(qx)
    assert proba.shape == (6, 3) and np.allclose(proba.sum(1), 1, atol=1e-5)
    assert all(torch.equal(v, before[k]) for k, v in clf.algorithm.state_dict().items())
    with pytest.raises(AdaptInputError, match="3-way"):
        clf.fit(sx[:4], sy[:4])
    with pytest.raises(AdaptInputError, match="single class"):
        FewShotClassifier(clf.algorithm).fit(sx[:2], sy[:2])


def _err(capsys, *argv) -> str:
    code, _, err = run_cli(capsys, *argv)
    assert code == 2, err
    assert "Traceback" not in err
    return err


def test_bad_input_exits_2_with_the_fix(image_run, sinusoid_run, tmp_path, capsys):
    support, query, _ = image_folders(tmp_path)
    assert "Did you mean 'demo'" in _err(capsys, "train", "--preset", "dem")
    assert "train.meta_batch must be an integer" in _err(capsys, "train", "--preset", "demo",
                                                         "--set", "train.meta_batch=two")
    assert "Did you mean 'maml'" in _err(capsys, "train", "--preset", "demo", "--set", "algorithm.name=mamll")
    (tmp_path / "empty_run").mkdir()
    assert "no checkpoint" in _err(capsys, "eval", tmp_path / "empty_run")
    # a checkpoint from a different model
    other = tmp_path / "other"
    other.mkdir()
    for p in (image_run / "checkpoints").iterdir():
        (other / "checkpoints").mkdir(exist_ok=True)
        (other / "checkpoints" / p.name).write_bytes(p.read_bytes())
    meta = json.loads((other / "checkpoints" / "best.json").read_text())
    meta["config"]["model"]["options"]["hidden"] *= 2
    (other / "checkpoints" / "best.json").write_text(json.dumps(meta))
    assert "different model" in _err(capsys, "eval", other)
    # support with one class, unreadable image, empty query folder, regression run
    one = tmp_path / "one"
    (one / "hbar").mkdir(parents=True)
    draw("hbar", 0).save(one / "hbar" / "a.png")
    assert "single class" in _err(capsys, "adapt", image_run, "--support", one, "--query", query)
    (support / "vbar" / "broken.png").write_bytes(b"not an image")
    assert "broken.png" in _err(capsys, "adapt", image_run, "--support", support, "--query", query)
    (support / "vbar" / "broken.png").unlink()
    (tmp_path / "empty").mkdir()
    assert "holds no images" in _err(capsys, "adapt", image_run, "--support", support, "--query",
                                     tmp_path / "empty")
    assert "regression" in _err(capsys, "adapt", sinusoid_run, "--support", support, "--query", query)


@pytest.mark.data
def test_prepare_data_omniglot_reports_counts(omniglot_root, capsys):
    code, out, _ = run_cli(capsys, "prepare-data", "omniglot", "--data-root", omniglot_root)
    assert code == 0
    assert "background       964 classes   19280 images" in out
    assert "vinyals-test    1692 classes" in out
    assert "cache:" in out


@pytest.mark.data
def test_prepare_data_imports_from_a_path(omniglot_root, tmp_path, capsys):
    code, out, _ = run_cli(capsys, "prepare-data", "omniglot", "--data-root", tmp_path / "root",
                           "--from", omniglot_root / "omniglot")
    assert code == 0 and out.count("imported") == 2
    assert (tmp_path / "root" / "omniglot" / "images_evaluation.zip").is_file()
    assert "evaluation       659 classes   13180 images" in out


def test_prepare_data_from_a_folder_without_archives_is_a_clear_error(tmp_path, capsys):
    err = _err(capsys, "prepare-data", "omniglot", "--data-root", tmp_path / "root", "--from", tmp_path)
    assert "images_background" in err


def test_overwrite_starts_over(sinusoid_run, capsys, tmp_path):
    out = tmp_path / "again"
    assert main(["train", "--preset", "demo", "--out", str(out), "--quiet", *TINY]) == 0
    assert "already holds a run" in _err(capsys, "train", "--preset", "demo", "--out", out, *TINY)
    code, stdout, _ = run_cli(capsys, "train", "--preset", "demo", "--out", out, "--overwrite", "--quiet", *TINY)
    assert code == 0 and "4 steps" in stdout


def glyph_folders(root: Path, splits: dict[str, int], per_class: int = 4, seed: int = 0) -> Path:
    """``root/<split>/<class>/<i>.png``: each class a random 3-stroke glyph, drawn with jitter."""
    rng = np.random.default_rng(seed)
    for split, n_classes in splits.items():
        for c in range(n_classes):
            glyph = np.zeros((28, 28), bool)
            for _ in range(3):
                r, k = rng.integers(4, 24, 2)
                if rng.random() < 0.5:
                    glyph[r:r + 2, min(k, 8):max(k, 20)] = True
                else:
                    glyph[min(r, 8):max(r, 20), k:k + 2] = True
            (root / split / f"{split}{c}").mkdir(parents=True)
            for i in range(per_class):
                img = np.roll(glyph, tuple(rng.integers(-1, 2, 2)), axis=(0, 1))
                Image.fromarray(np.where(img, 255, 0).astype(np.uint8)).save(root / split / f"{split}{c}" / f"{i}.png")
    return root


@pytest.mark.slow
def test_end_to_end_on_an_image_folder(tmp_path, capsys, monkeypatch):
    """train -> eval -> adapt on the user's own image folders, all through the command."""
    monkeypatch.setenv("METALEARN_CACHE", str(tmp_path / "cache"))
    root = glyph_folders(tmp_path / "glyphs", {"train": 8, "val": 4, "test": 4})
    sets = ["data.dataset=folder", f"data.root={root}", "data.train_split=train", "data.val_split=val",
            "data.test_split=test", "data.n_way=4", "data.eval_n_way=3", "data.k_shot=1",
            "data.n_query=2", "data.eval_n_query=3", "data.val_episodes=5", "model.hidden=16",
            "train.steps=30", "train.val_every=10", "train.checkpoint_every=10", "train.device=cpu",
            "train.tensorboard=false"]
    run = tmp_path / "run"
    argv = ["train", "--preset", "protonet-omniglot-5w1s", "--out", run, "--quiet"]
    for s in sets:
        argv += ["--set", s]
    code, out, err = run_cli(capsys, *argv)
    assert code == 0, err
    code, out, _ = run_cli(capsys, "eval", run, "--episodes", 20, "--quiet")
    assert code == 0 and "accuracy" in out
    acc = json.loads((run / "eval_test.json").read_text())["result"]["mean"]
    assert acc > 0.6  # 3-way glyphs: chance is 1/3
    support, query = tmp_path / "support", tmp_path / "query"
    for c in range(4):
        cls = root / "test" / f"test{c}"
        (support / cls.name).mkdir(parents=True)
        (query / cls.name).mkdir(parents=True)
        for i, f in enumerate(sorted(cls.iterdir())):
            (support if i == 0 else query).joinpath(cls.name, f.name).write_bytes(f.read_bytes())
    code, out, _ = run_cli(capsys, "adapt", run, "--support", support, "--query", query,
                           "--out", tmp_path / "pred.csv")
    assert code == 0
    rows = list(csv.DictReader((tmp_path / "pred.csv").open()))
    assert len(rows) == 12 and sum(r["predicted"] == r["true"] for r in rows) >= 10
