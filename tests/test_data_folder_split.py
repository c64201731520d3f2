"""The `folder` dataset's two layouts, its seeded class split, and Omniglot's rotation classes
from the config (issue 17, point 8)."""

from __future__ import annotations

import json

import pytest

from metalearn.cli import main
from metalearn.data import Omniglot, split_classes
from metalearn.errors import ConfigError
from metalearn.train.config import DataConfig, RunConfig, apply_overrides
from metalearn.train.data import build_source, fixed_episodes, write_splits

# a protonet-omniglot run shrunk to seconds: 3-way tasks fit the 3 val/test classes of 20
SMALL = ["data.n_way=3", "data.eval_n_way=3", "data.k_shot=1", "data.n_query=2", "data.eval_n_query=3",
         "data.val_episodes=3", "model.hidden=8", "train.steps=2", "train.meta_batch=1",
         "train.val_every=2", "train.checkpoint_every=2", "train.device=cpu", "train.tensorboard=false"]


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def folder_config(root, **fields) -> DataConfig:
    return DataConfig(dataset="folder", root=str(root), image_size=12, n_way=3, k_shot=1, n_query=2,
                      **fields)


def test_split_classes_is_seeded_exact_and_disjoint():
    names = [f"class{i:02d}" for i in range(40)]
    a = split_classes(names, [0.7, 0.15, 0.15], seed=0)
    assert a == split_classes(list(reversed(names)), [0.7, 0.15, 0.15], seed=0)  # order-free
    assert [len(a[k]) for k in ("train", "val", "test")] == [28, 6, 6]
    assert sorted(a["train"] + a["val"] + a["test"]) == names
    assert split_classes(names, [0.7, 0.15, 0.15], seed=1) != a
    with pytest.raises(ValueError, match="three positive numbers"):
        split_classes(names, [0.8, 0.3, 0.1])
    with pytest.raises(ValueError, match="too few"):
        split_classes(["a", "b"], [0.7, 0.15, 0.15])


def test_a_flat_class_folder_is_split_by_classes(image_folder, tmp_path, monkeypatch):
    monkeypatch.setenv("METALEARN_CACHE", str(tmp_path / "cache"))
    root = image_folder({f"c{i:02d}": 4 for i in range(20)})
    cfg = folder_config(root)  # the default split names (vinyals-*) do not matter here
    parts = {s: build_source(cfg, s) for s in ("train", "val", "test")}
    assert [parts[s].num_classes for s in ("train", "val", "test")] == [14, 3, 3]
    names = [set(parts[s].class_names) for s in ("train", "val", "test")]
    assert not (names[0] & names[1] or names[0] & names[2] or names[1] & names[2])
    assert set().union(*names) == {f"c{i:02d}" for i in range(20)}
    assert len(fixed_episodes(cfg, "test", n_episodes=2)) == 2
    other = build_source(folder_config(root, split_seed=5), "val")
    assert set(other.class_names) != names[1]
    run = tmp_path / "run"
    run.mkdir()
    written = json.loads(write_splits(cfg, run).read_text())
    assert written["split_seed"] == 0 and written["split_fractions"] == [0.7, 0.15, 0.15]
    assert [set(written[s]) for s in ("train", "val", "test")] == names


def test_split_folders_are_used_as_they_are(image_folder, tmp_path, monkeypatch):
    monkeypatch.setenv("METALEARN_CACHE", str(tmp_path / "cache"))
    for split in ("train", "val", "test"):
        image_folder({f"{split}{i}": 3 for i in range(3)}, name=f"root/{split}")
    cfg = folder_config(tmp_path / "root", train_split="train", val_split="val", test_split="test")
    assert build_source(cfg, "val").class_names == ["val0", "val1", "val2"]
    assert write_splits(cfg, tmp_path) is None  # the user's own split: nothing to record


def test_the_preset_on_a_flat_folder_trains_and_records_its_split(image_folder, tmp_path, capsys,
                                                                   monkeypatch):
    monkeypatch.setenv("METALEARN_CACHE", str(tmp_path / "cache"))
    root = image_folder({f"c{i:02d}": 4 for i in range(20)}, size=28)
    argv = ["train", "--preset", "protonet-omniglot-5w1s", "--set", "data.dataset=folder",
            "--set", f"data.root={root}", "--out", tmp_path / "run", "--quiet"]
    for s in SMALL:
        argv += ["--set", s]
    code, _, err = run_cli(capsys, *argv)
    assert code == 0, err
    split = json.loads((tmp_path / "run" / "splits.json").read_text())
    assert [len(split[s]) for s in ("train", "val", "test")] == [14, 3, 3]
    code, out, err = run_cli(capsys, "eval", tmp_path / "run", "--episodes", 3, "--quiet")
    assert code == 0 and "accuracy" in out, err


def test_split_folders_with_other_names_get_an_error_saying_what_folder_reads(image_folder, tmp_path,
                                                                              capsys, monkeypatch):
    monkeypatch.setenv("METALEARN_CACHE", str(tmp_path / "cache"))
    for split in ("train", "val", "test"):
        image_folder({f"{split}{i}": 3 for i in range(3)}, name=f"root/{split}")
    argv = ["train", "--preset", "protonet-omniglot-5w1s", "--set", "data.dataset=folder",
            "--set", f"data.root={tmp_path / 'root'}", "--out", tmp_path / "run", "--quiet"]
    for s in SMALL:
        argv += ["--set", s]
    code, _, err = run_cli(capsys, *argv)
    assert code == 2
    assert "ROOT/<class>/<image>" in err and "ROOT/<split>/<class>/<image>" in err
    assert "test, train, val" in err and "data.train_split" in err and "Traceback" not in err


def test_split_fraction_and_rotation_settings_are_checked():
    with pytest.raises(ConfigError, match="split_fractions"):
        apply_overrides(RunConfig(), ["data.split_fractions=[0.5, 0.2, 0.2]"])
    with pytest.raises(ConfigError, match="Lake splits"):  # the Vinyals splits hold rotations
        apply_overrides(RunConfig(), ["data.dataset=omniglot", "data.rotations=true"])
    cfg = apply_overrides(RunConfig(), ["data.dataset=omniglot", "data.rotations=true",
                                        "data.train_split=background"])
    assert cfg.data.rotations is True


def test_omniglot_lake_splits_take_rotations_from_the_config(omniglot_root):
    cfg = DataConfig(dataset="omniglot", root=str(omniglot_root), train_split="background",
                     val_split="vinyals-val", rotations=True, n_way=5, k_shot=1, n_query=1)
    train = build_source(cfg, "train")
    assert train.num_classes == 964 * 4
    assert train.num_classes == Omniglot("background", root=omniglot_root, rotations=True).num_classes
    assert build_source(cfg, "val").num_classes == 688  # a Vinyals split keeps its own rotations
    plain = build_source(DataConfig(dataset="omniglot", root=str(omniglot_root),
                                    train_split="background"), "train")
    assert plain.num_classes == 964
