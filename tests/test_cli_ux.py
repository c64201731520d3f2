"""What a new user of the command sees (issue 17): fast help, one-line warnings, a clear
``--device`` error, short result reprs and macro metrics only where they say something."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from metalearn.cli import main
from metalearn.eval import EvalResult, evaluate
from metalearn.train.loop import TrainResult, pick_device
from metalearn.types import Episode

ROOT = Path(__file__).resolve().parents[1]

# what the command imported and whether it re-executed itself (the tuned allocator's marker)
_PROBE = """
import os, runpy, sys
sys.argv = ["metalearn", *{argv!r}]
try:
    runpy.run_module("metalearn.cli", run_name="__main__")
except SystemExit:
    pass
print(json.dumps({{"torch": "torch" in sys.modules, "reexec": os.environ.get("METALEARN_TUNED_RUNTIME")}}),
      file=sys.stderr)
"""


def _probe(*argv: str) -> dict:
    env = {k: v for k, v in __import__("os").environ.items()
           if k not in ("METALEARN_TUNED_RUNTIME", "METALEARN_NO_TUNE")}
    code = "import json\n" + _PROBE.format(argv=list(argv))
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    return json.loads(proc.stderr.strip().splitlines()[-1])


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"], ["eval", "--help"]])
def test_help_imports_no_torch_and_does_not_reexecute(argv):
    assert _probe(*argv) == {"torch": False, "reexec": None}


def test_list_does_not_reexecute():
    # `list` describes the classes of the name tables, so it imports torch, but a second
    # interpreter start for the tuned allocator would be wasted on it
    assert _probe("list")["reexec"] is None


def test_import_metalearn_is_lazy_and_keeps_its_public_names():
    code = ("import sys, metalearn as ml; assert 'torch' not in sys.modules; "
            "names = [getattr(ml, n) for n in ml.__all__]; print(ml.EvalResult.__module__, ml.data.__name__)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["metalearn.eval.evaluate", "metalearn.data"]


def test_an_invalid_device_is_a_usage_error_naming_the_valid_forms(capsys):
    with pytest.raises(ValueError, match=r"unknown device 'gpu9'.*cuda:N"):
        pick_device("gpu9")
    assert pick_device("cpu") == torch.device("cpu")
    code = main(["train", "--preset", "demo", "--device", "gpu9", "--show-config"])
    assert code == 0  # --show-config only prints: the device is checked when it is used
    capsys.readouterr()
    code = main(["train", "--preset", "demo", "--device", "gpu9", "--quiet", "--out", "/nonexistent/x"])
    err = capsys.readouterr().err
    assert code == 2 and "metalearn train: error: unknown device 'gpu9'" in err and "Traceback" not in err


def test_demo_presets_announce_their_measured_duration(capsys, monkeypatch, tmp_path):
    import metalearn.train.loop as loop

    monkeypatch.setattr(loop, "train", lambda cfg, out, **kw: TrainResult(out, cfg.train.steps, None, None, {}, 0.0))
    assert main(["train", "--preset", "demo", "--out", str(tmp_path / "r")]) == 0
    assert "demo: training and evaluation take about 6.5 min on 2 CPU cores" in capsys.readouterr().out
    assert main(["train", "--preset", "demo", "--out", str(tmp_path / "r"), "--set", "train.steps=5"]) == 0
    assert "take about" not in capsys.readouterr().out  # a changed budget: the figure would not hold


def _episode(query_y: list[int]) -> Episode:
    sx, sy = torch.tensor([[0.0], [1.0]]), torch.tensor([0, 1])
    qy = torch.tensor(query_y)
    return Episode(sx, sy, qy.float()[:, None] + torch.tensor([[0.1]]), qy)


class _Biased(torch.nn.Module):
    """Predicts class 0 for every query: right on exactly the class-0 queries."""

    def adapt(self, sx, sy):
        return lambda qx: torch.stack([torch.ones(len(qx)), torch.zeros(len(qx))], 1)


def test_macro_metrics_are_reported_only_on_imbalanced_query_sets():
    balanced = evaluate(_Biased(), [_episode([0, 0, 1, 1])] * 3, progress=False)
    assert set(balanced.extra) == {"macro_recall", "macro_f1"}  # kept in the structured result
    assert balanced.extra["macro_recall"][0] == pytest.approx(balanced.mean) == 0.5
    assert balanced.reported_extra() == {}
    imbalanced = evaluate(_Biased(), [_episode([0, 0, 0, 1])] * 3, progress=False)
    assert imbalanced.mean == 0.75 and imbalanced.extra["macro_recall"][0] == 0.5
    assert set(imbalanced.reported_extra()) == {"macro_recall", "macro_f1"}
    assert EvalResult.from_dict(imbalanced.to_dict()).reported_extra() == imbalanced.reported_extra()


def test_result_reprs_are_short():
    r = EvalResult("accuracy", 0.98583, 0.00171, 1000, [1.0] * 1000)
    assert repr(r) == "EvalResult(accuracy=98.58 ± 0.17%, n=1000)"
    assert repr(EvalResult("mse", 0.2113, 0.0201, 600, [0.2] * 600)) == "EvalResult(mse=0.2113 ± 0.0201, n=600)"
    t = TrainResult(Path("runs/x"), 60, 40, r, {"loss": 0.1}, 12.34)
    assert repr(t) == ("TrainResult(steps=60, best=EvalResult(accuracy=98.58 ± 0.17%, n=1000) at step 40, "
                       "seconds=12.3, run_dir='runs/x')")
    assert "None" in repr(TrainResult(Path("r"), 1, None, None, {}, 0.0))


@pytest.mark.slow
def test_folder_warnings_are_one_line_and_balanced_eval_prints_no_macro_metrics(image_folder, tmp_path,
                                                                               capsys, monkeypatch):
    monkeypatch.setenv("METALEARN_CACHE", str(tmp_path / "cache"))
    for split in ("train", "val", "test"):
        image_folder({f"{split}{c}": 3 for c in range(3)}, name=f"data/{split}")
    root = tmp_path / "data"
    (root / "train" / "train0" / "notes.txt").write_text("not an image")  # ImageFolder warns
    sets = ["data.dataset=folder", f"data.root={root}", "data.train_split=train", "data.val_split=val",
            "data.test_split=test", "data.n_way=2", "data.eval_n_way=2", "data.k_shot=1", "data.n_query=1",
            "data.eval_n_query=2", "data.val_episodes=2", "data.test_episodes=4",
            "model.hidden=8", "train.steps=2", "train.val_every=2", "train.checkpoint_every=2",
            "train.device=cpu", "train.tensorboard=false"]
    argv = ["train", "--preset", "protonet-omniglot-5w1s", "--out", str(tmp_path / "run"), "--quiet"]
    for s in sets:
        argv += ["--set", s]
    before = warnings.showwarning
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 0, err
    assert warnings.showwarning is before  # the command's display is undone for callers from Python
    lines = [line for line in err.splitlines() if "warning" in line.lower()]
    assert lines and all(line.startswith("metalearn: warning: ") for line in lines), err
    assert any("ignored 1 files" in line for line in lines)
    assert "UserWarning" not in err and "warnings.warn" not in err and ".py:" not in err

    code = main(["eval", str(tmp_path / "run"), "--quiet"])
    out = capsys.readouterr().out
    assert code == 0 and "accuracy" in out and "macro" not in out  # every query set is balanced
    saved = json.loads((tmp_path / "run" / "eval_test.json").read_text())["result"]["extra"]
    assert set(saved) == {"macro_recall", "macro_f1"}


def test_a_second_list_answers_from_its_cache_without_torch(tmp_path):
    """`list` builds its listing once per version of the code (importing torch to read the
    docstrings), then answers from the cached listing: the same text, no torch import."""
    env = {**os.environ, "METALEARN_CACHE": str(tmp_path)}
    run = [sys.executable, "-m", "metalearn.cli", "list"]
    first = subprocess.run(run, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0 and "protonet-omniglot-5w1s" in first.stdout
    assert list((tmp_path / "cli").glob("list-*.json"))
    code = ("import runpy, sys; sys.argv = ['metalearn', 'list']\n"
            "try:\n    runpy.run_module('metalearn.cli', run_name='__main__')\n"
            "except SystemExit:\n    pass\n"
            "print('torch' in sys.modules, file=sys.stderr)")
    second = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=120)
    assert second.stdout == first.stdout
    assert second.stderr.strip().splitlines()[-1] == "False"


def test_the_listing_cache_key_follows_the_code(tmp_path):
    from metalearn.cli.main import _code_fingerprint

    (tmp_path / "a.py").write_text("x = 1\n")
    before = _code_fingerprint(tmp_path)
    assert _code_fingerprint(tmp_path) == before
    (tmp_path / "a.py").write_text("x = 22\n")
    assert _code_fingerprint(tmp_path) != before
