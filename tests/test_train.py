"""Tests for metalearn.train: configs and overrides, checkpoints, the loop (resume == uninterrupted)."""

from __future__ import annotations

import dataclasses
import json
import pickle
from dataclasses import dataclass

import pytest
import torch
from PIL import Image
from torch import nn

from metalearn.algorithms import ALGORITHMS, MAMLConfig
from metalearn.eval import EvalResult
from metalearn.optim import meta_optimizer
from metalearn.train.checkpoint import (
    CheckpointError,
    flatten_state,
    load_checkpoint,
    load_model_state,
    save_checkpoint,
    unflatten_state,
)
from metalearn.train.config import (
    AlgorithmConfig,
    ConfigError,
    DataConfig,
    ModelConfig,
    RunConfig,
    TrainConfig,
    apply_overrides,
    diff,
    field_docs,
)
from metalearn.train.loop import NonFiniteLossError, TrainState, load_run, lr_factor, train
from metalearn.train.runlog import read_metrics


def tiny_config(**train_overrides) -> RunConfig:
    """MAML on 5-shot sinusoids with a 16-unit MLP: a few steps take well under a second."""
    cfg = RunConfig(
        name="tiny",
        data=DataConfig(dataset="sinusoid", k_shot=5, n_query=5, val_episodes=4, test_episodes=6),
        model=ModelConfig("mlp", {"in_features": 1, "hidden": [16], "out_features": 1}),
        algorithm=AlgorithmConfig("maml", {"inner_lr": 0.01, "inner_steps": 1}),
        train=TrainConfig(steps=8, meta_batch=2, val_every=3, checkpoint_every=3, log_every=1,
                          tensorboard=False, device="cpu"),
    )
    for k, v in train_overrides.items():
        setattr(cfg.train, k, v)
    return cfg


# ---------------------------------------------------------------- configs


def test_every_config_field_has_a_docstring():
    for cls in (DataConfig, ModelConfig, AlgorithmConfig, TrainConfig, RunConfig):
        docs = field_docs(cls)
        for f in dataclasses.fields(cls):
            assert docs.get(f.name), f"{cls.__name__}.{f.name} has no docstring"


def test_overrides_are_typed_and_reach_constructor_options():
    cfg = apply_overrides(tiny_config(), ["train.steps=20", "train.lr=1", "algorithm.inner_lr=0.4",
                                          "algorithm.first_order=true", "model.hidden=[8,8]",
                                          "data.eval_n_way=null", "train.grad_clip=1.5"])
    assert cfg.train.steps == 20 and cfg.train.lr == 1.0 and isinstance(cfg.train.lr, float)
    assert cfg.algorithm.options["inner_lr"] == 0.4 and cfg.algorithm.options["first_order"] is True
    assert cfg.model.options["hidden"] == [8, 8]
    assert cfg.train.grad_clip == 1.5
    assert tiny_config().train.steps == 8  # the base is not modified


@pytest.mark.parametrize("override, message", [
    ("train.steps=abc", "train.steps must be an integer"),
    ("train.steps=2.5", "train.steps must be an integer"),
    ("algorithm.first_order=maybe", "must be true or false"),
    ("algorithm.inner_lrr=0.1", "Did you mean 'algorithm.inner_lr'"),
    ("trian.steps=3", "Did you mean 'train.steps'"),
    ("data.kshot=3", "Did you mean 'data.k_shot'"),
    ("algorithm.name=mamll", "Did you mean 'maml'"),
    ("train.optimizer=rmsprop", "adam, adamw or sgd"),
    ("train.schedule=cosin", "constant, step, cosine or linear, got 'cosin'. Did you mean 'cosine'"),
    ("algorithm.options.inner_lrr=0.1", "Did you mean 'algorithm.inner_lr'"),
    ("model.options.hidden=wide", "model.options.hidden must be a list"),
    ("train.steps", "not key=value"),
])
def test_bad_overrides_name_the_fix(override, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        apply_overrides(tiny_config(), [override])


def test_options_resolve_once_into_the_components_typed_config():
    cfg = apply_overrides(tiny_config(), ["algorithm.options.inner_lr=0.3", "model.options.hidden=[32]"])
    assert cfg.algorithm.options["inner_lr"] == 0.3 and cfg.model.options["hidden"] == [32]
    resolved = cfg.algorithm.resolve()
    assert isinstance(resolved, MAMLConfig) and resolved.inner_lr == 0.3
    backbone = cfg.model.resolve()
    assert type(backbone).__name__ == "MLPOptions" and backbone.hidden == [32] and backbone.norm == "none"
    assert field_docs(type(backbone))["hidden"]  # help from the constructor's Args


def test_a_model_that_cannot_take_the_data_is_named_before_training(tmp_path):
    cfg = apply_overrides(tiny_config(), ["model.in_features=2"])
    with pytest.raises(ConfigError, match=r"model cannot take this data \(the data has 1 features "
                                          r"but model.in_features=2\)"):
        train(cfg, tmp_path / "run", quiet=True)
    assert not (tmp_path / "run" / "checkpoints").exists()  # no step ran


def test_config_dict_roundtrip_and_diff():
    cfg = apply_overrides(tiny_config(), ["algorithm.inner_lr=0.2"])
    again = RunConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    changed = apply_overrides(cfg, ["train.steps=99", "algorithm.inner_lr=0.3"])
    assert diff(cfg, changed) == ["algorithm.inner_lr: 0.2 -> 0.3", "train.steps: 8 -> 99"]
    with pytest.raises(ConfigError, match="unknown config key 'bogus'"):
        RunConfig.from_dict({"bogus": 1})


def test_lr_schedules():
    t = TrainConfig(steps=100, schedule="step", step_size=10, gamma=0.5)
    assert [lr_factor(t, s) for s in (0, 9, 10, 25)] == [1.0, 1.0, 0.5, 0.25]
    t = TrainConfig(steps=100, schedule="linear")
    assert lr_factor(t, 0) == 1.0 and lr_factor(t, 50) == 0.5
    t = TrainConfig(steps=100, schedule="cosine")
    assert lr_factor(t, 50) == pytest.approx(0.5) and lr_factor(t, 100) == pytest.approx(0.0)


# ---------------------------------------------------------------- checkpoints


def test_state_flattening_roundtrip_keeps_types():
    state = {"a": torch.arange(3.0), 1: {"b": (1, 2.5, "x", None, True)}, "c": [torch.ones(2, 2), {}]}
    tensors = {}
    tree = flatten_state(state, tensors)
    json.dumps(tree)  # everything but tensors is JSON
    back = unflatten_state(json.loads(json.dumps(tree)), tensors)
    assert set(back) == {"a", 1, "c"} and back[1]["b"] == (1, 2.5, "x", None, True)
    assert torch.equal(back["a"], state["a"]) and torch.equal(back["c"][0], state["c"][0])


def test_checkpoint_atomic_replace_and_incomplete_detection(tmp_path, monkeypatch):
    save_checkpoint(tmp_path, "last", {"w": torch.zeros(2)}, step=1, config={})
    save_checkpoint(tmp_path, "last", {"w": torch.ones(2)}, step=2, config={"k": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last-00000002.safetensors", "last.json"]
    monkeypatch.setattr(pickle, "loads", lambda *a, **k: pytest.fail("loading must not unpickle"))
    saved = load_checkpoint(tmp_path)
    assert saved["step"] == 2 and saved["config"] == {"k": 1}
    assert torch.equal(saved["state"]["w"], torch.ones(2))
    # a tensors file from another save is detected
    meta = json.loads((tmp_path / "last.json").read_text())
    meta["save_id"] = "0" * 32
    (tmp_path / "last.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="incomplete"):
        load_checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(tmp_path, "best")


def test_checkpoint_from_another_model_is_refused():
    with pytest.raises(CheckpointError, match="different model.*shape mismatch"):
        load_model_state(nn.Linear(3, 2), nn.Linear(4, 2).state_dict())
    with pytest.raises(CheckpointError, match="missing 1: bias"):
        load_model_state(nn.Linear(3, 2), {"weight": torch.zeros(2, 3)})


# ---------------------------------------------------------------- the loop


def test_training_without_matplotlib_skips_only_the_png(tmp_path, monkeypatch, capsys):
    """matplotlib is an extra: without it a run completes, says how to get the PNG, keeps metrics."""
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` raises ImportError
    result = train(tiny_config(), tmp_path / "run", quiet=True)
    assert result.steps == 8 and (tmp_path / "run" / "metrics.jsonl").exists()
    assert not (tmp_path / "run" / "learning_curve.png").exists()
    assert "pip install 'metalearn[train]'" in capsys.readouterr().err


def test_run_directory_contents(tmp_path):
    result = train(tiny_config(), tmp_path / "run", quiet=True)
    run = tmp_path / "run"
    assert result.steps == 8 and result.best is not None and result.best.metric == "mse"
    saved = json.loads((run / "config.json").read_text())
    assert saved == apply_overrides(tiny_config(), []).to_dict()  # the resolved config
    assert saved["algorithm"]["options"] == dataclasses.asdict(MAMLConfig(inner_lr=0.01, inner_steps=1))
    assert saved["model"]["options"]["norm"] == "none"  # the backbone's defaults are written out
    lines = read_metrics(run / "metrics.jsonl")
    assert [x["step"] for x in lines if x["kind"] == "train"] == list(range(1, 9))
    val = [x for x in lines if x["kind"] == "val"]
    assert [x["step"] for x in val] == [3, 6, 8]
    assert all(x["metric"] == "mse" and x["ci95"] >= 0 for x in val)
    assert result.best_step == min(val, key=lambda x: x["mean"])["step"]
    with Image.open(run / "learning_curve.png") as im:
        assert im.format == "PNG" and im.size[0] > 200
    assert load_checkpoint(run / "checkpoints", "last")["step"] == 8
    assert load_checkpoint(run / "checkpoints", "best")["step"] == result.best_step
    algo, cfg, step = load_run(run)
    assert step == result.best_step and cfg == apply_overrides(tiny_config(), [])
    assert diff(cfg, tiny_config()) == []  # options left at their defaults are no change
    with pytest.raises(CheckpointError, match="already holds a run"):
        train(tiny_config(), run, quiet=True)


def test_resume_equals_uninterrupted(tmp_path):
    cfg = tiny_config(steps=9, schedule="cosine")
    train(cfg, tmp_path / "a", quiet=True)
    partial = train(cfg, tmp_path / "b", quiet=True, stop_after=5)  # as if killed after step 5
    assert partial.steps == 5
    # the interruption happened after the step-3 checkpoint plus a step-5 one; resume from 5
    train(cfg, tmp_path / "b", resume=True, quiet=True)
    a, _, _ = load_run(tmp_path / "a", "last")
    b, _, _ = load_run(tmp_path / "b", "last")
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(x, y), name  # bit for bit
    la, lb = (read_metrics(tmp_path / r / "metrics.jsonl") for r in "ab")
    drop = lambda lines: [{k: v for k, v in x.items() if k != "time_s"} for x in lines]  # noqa: E731
    assert drop(la) == drop(lb)
    opt_a = load_checkpoint(tmp_path / "a" / "checkpoints")["state"]["optimizer"]
    opt_b = load_checkpoint(tmp_path / "b" / "checkpoints")["state"]["optimizer"]
    assert all(torch.equal(opt_a["state"][i]["exp_avg"], opt_b["state"][i]["exp_avg"]) for i in opt_a["state"])


# config.json as metalearn wrote it before options were saved resolved: only the options a
# preset or --set gave, not the component's defaults
OLD_FORMAT_CONFIG = {
    "name": "tiny",
    "data": {"dataset": "sinusoid", "root": None, "train_split": "vinyals-train",
             "val_split": "vinyals-val", "test_split": "vinyals-test", "image_size": 28,
             "channels": 1, "n_way": None, "k_shot": 5, "n_query": 5, "eval_n_way": None,
             "eval_k_shot": None, "eval_n_query": None, "val_episodes": 4, "test_episodes": 6,
             "val_seed": 1, "test_seed": 2},
    "model": {"backbone": "mlp", "options": {"in_features": 1, "hidden": [16], "out_features": 1},
              "feature_maps": None},
    "algorithm": {"name": "maml", "options": {"inner_lr": 0.01, "inner_steps": 1}},
    "train": {"steps": 8, "meta_batch": 2, "optimizer": "adam", "lr": 0.001, "weight_decay": 0.0,
              "schedule": "constant", "step_size": 2000, "gamma": 0.5, "grad_clip": None,
              "val_every": 3, "checkpoint_every": 3, "log_every": 1, "seed": 0, "device": "cpu",
              "tensorboard": False},
    "notes": "",
}


def test_a_run_directory_of_the_old_config_format_resumes_and_evaluates(tmp_path, capsys):
    from metalearn.cli import main

    today = tiny_config().to_dict()  # the literal is today's tiny run, less later fields
    assert today["model"].pop("weights") is None  # model.weights came later: old files lack it
    del today["train"]["loggers"]
    for key in ("rotations", "split_fractions", "split_seed", "augment", "augment_padding",
                "augment_degrees",  # added later (issue 17): an old run lacks them too
                "fold", "tokenizer", "vocab_size", "max_length", "lowercase", "text_column",
                "label_column",  # and the text fields (issue 18)
                "protocol", "user_split", "item_cold", "cold_fraction",  # and the ratings ones (19)
                "episodes", "hierarchy", "sources", "source_weights",  # and Meta-Dataset's (22)
                "group_sizes"):  # and the size-grouped user batches (19, later)
        del today["data"][key]
    assert OLD_FORMAT_CONFIG == today
    train(tiny_config(), tmp_path / "a", quiet=True)
    run = tmp_path / "old"
    train(tiny_config(), run, quiet=True, stop_after=3)
    (run / "config.json").write_text(json.dumps(OLD_FORMAT_CONFIG, indent=1))
    for tag in ("last", "best"):  # the config saved in each checkpoint, in the old format too
        meta = json.loads((run / "checkpoints" / f"{tag}.json").read_text())
        meta["config"] = OLD_FORMAT_CONFIG
        meta["extra"].pop("time_s", None)  # the run's wall-clock seconds came later too
        (run / "checkpoints" / f"{tag}.json").write_text(json.dumps(meta))
    last = json.loads((run / "checkpoints" / "last.json").read_text())
    assert last["step"] == 3 and set(last["extra"]) == {"best", "best_step"}  # TrainState's keys
    assert main(["train", "--resume", "--out", str(run), "--quiet"]) == 0  # no config change seen
    a, _, _ = load_run(tmp_path / "a", "last")
    b, cfg, step = load_run(run, "last")
    assert step == 8 and cfg.algorithm.options["first_order"] is False
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    (run / "config.json").write_text(json.dumps(OLD_FORMAT_CONFIG, indent=1))
    for tag in ("last", "best"):
        meta = json.loads((run / "checkpoints" / f"{tag}.json").read_text())
        meta["config"] = OLD_FORMAT_CONFIG
        (run / "checkpoints" / f"{tag}.json").write_text(json.dumps(meta))
    assert main(["eval", str(run), "--episodes", "3", "--quiet"]) == 0
    assert "mse" in capsys.readouterr().out


def test_train_state_round_trips_through_the_checkpoint_keys():
    state = TrainState(step=7)
    assert state.state_dict() == {"step": 7, "best": None, "best_step": None}
    best = EvalResult("mse", 0.5, 0.1, 2, [0.4, 0.6])
    state.best, state.best_step = best, 6
    again = TrainState()
    again.load_state_dict(json.loads(json.dumps(state.state_dict())))
    assert again == state


def test_resume_after_a_crash_between_checkpoints_drops_later_metrics(tmp_path):
    cfg = tiny_config(checkpoint_every=4)
    train(cfg, tmp_path / "a", quiet=True)
    run = tmp_path / "b"
    train(cfg, run, quiet=True, stop_after=6)  # wrote the step-4 and step-6 checkpoints
    # simulate a crash at step 7: roll the checkpoint back to step 4 and leave metrics beyond it
    b4 = train(cfg, tmp_path / "c", quiet=True, stop_after=4)
    assert b4.steps == 4
    for p in (run / "checkpoints").glob("last*"):
        p.unlink()
    for p in (tmp_path / "c" / "checkpoints").glob("last*"):
        p.rename(run / "checkpoints" / p.name)
    assert max(x["step"] for x in read_metrics(run / "metrics.jsonl")) == 6
    train(cfg, run, resume=True, quiet=True)
    a, _, _ = load_run(tmp_path / "a", "last")
    b, _, _ = load_run(run, "last")
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    steps = [x["step"] for x in read_metrics(run / "metrics.jsonl") if x["kind"] == "train"]
    assert steps == list(range(1, 9))


def test_resume_refuses_a_changed_config_unless_forced(tmp_path):
    cfg = tiny_config()
    with pytest.raises(CheckpointError, match="no checkpoint"):
        train(cfg, tmp_path / "none", resume=True, quiet=True)
    train(cfg, tmp_path / "r", quiet=True, stop_after=3)
    changed = apply_overrides(cfg, ["train.steps=10", "algorithm.inner_lr=0.02"])
    with pytest.raises(ConfigError, match=r"algorithm.inner_lr: 0.01 -> 0.02") as info:
        train(changed, tmp_path / "r", resume=True, quiet=True)
    # raising train.steps alone is allowed, so it is not listed as a conflict
    assert "train.steps" not in str(info.value).split("\nresume")[0] and "--force" in str(info.value)
    for lower in ("train.steps=7", "train.steps=2"):  # fewer steps is another recipe
        with pytest.raises(ConfigError, match=r"train.steps: 8 -> "):
            train(apply_overrides(cfg, [lower]), tmp_path / "r", resume=True, quiet=True)
    result = train(changed, tmp_path / "r", resume=True, force=True, quiet=True)
    assert result.steps == 10


@dataclass
class NanAfterConfig:
    """Config of the test-only algorithm below."""

    bad_call: int = 3
    """The meta_loss call (1-based) that returns NaN."""


class NanAfter(nn.Module):
    """Test-only algorithm: a linear regressor whose meta-loss becomes NaN at a given call."""

    def __init__(self, backbone: nn.Module, config: NanAfterConfig | None = None):
        super().__init__()
        self.net, self.config, self.calls = backbone, config or NanAfterConfig(), 0

    def meta_loss(self, batch):
        self.calls += 1
        loss = ((self.net(batch.query_x.flatten(0, 1)) - batch.query_y.flatten(0, 1)) ** 2).mean()
        if self.calls == self.config.bad_call:
            loss = loss * float("nan")
        return loss, {"mse": float(loss.detach())}

    def adapt(self, support_x, support_y):
        return self.net


def test_non_finite_loss_stops_naming_the_step_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setitem(ALGORITHMS, "nan-after", NanAfter)
    cfg = tiny_config(checkpoint_every=2, val_every=100)
    cfg.algorithm = AlgorithmConfig("nan-after", {"bad_call": 5})
    with pytest.raises(NonFiniteLossError, match=r"at step 5: .*last good checkpoint \(step 4\)"):
        train(cfg, tmp_path / "run", quiet=True)
    saved = load_checkpoint(tmp_path / "run" / "checkpoints")
    assert saved["step"] == 4
    assert all(torch.isfinite(t).all() for t in saved["state"]["model"].values())


def test_meta_optimizer_fused_adam_is_plain_adam():
    """`metalearn train`'s Adam runs the fused kernel on CPU and makes the same updates as the
    per-tensor Adam (up to rounding); SGD is plain SGD; an unknown name names the choices."""
    torch.manual_seed(0)
    nets = [nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(4 * 36, 3)) for _ in range(2)]
    nets[1].load_state_dict(nets[0].state_dict())
    fused = meta_optimizer(list(nets[0].parameters()), "adam", lr=0.01, weight_decay=0.1)
    plain = torch.optim.Adam(nets[1].parameters(), lr=0.01, weight_decay=0.1)
    assert fused.defaults["fused"] and not plain.defaults["fused"]
    for _ in range(10):
        x = torch.randn(5, 1, 8, 8)
        for net, opt in ((nets[0], fused), (nets[1], plain)):
            opt.zero_grad()
            net(x).square().mean().backward()
            opt.step()
    for a, b in zip(nets[0].parameters(), nets[1].parameters()):
        assert torch.allclose(a, b, atol=1e-6)
    assert isinstance(meta_optimizer(list(nets[0].parameters()), "sgd", lr=0.1), torch.optim.SGD)
    assert isinstance(meta_optimizer(list(nets[0].parameters()), "adamw", lr=0.1), torch.optim.AdamW)
    with pytest.raises(ConfigError, match="'adam', 'adamw' or 'sgd'"):
        meta_optimizer(list(nets[0].parameters()), "rmsprop")
