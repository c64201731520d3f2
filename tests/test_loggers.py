"""Tests for the run logger's backends: TensorBoard installed by `make`, MLflow against its local
file store (no server), Weights & Biases offline and against a stand-in module; a missing extra
names its pip command. Nothing here reaches the network."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest
from test_train import tiny_config

from metalearn.cli import main
from metalearn.train.config import ConfigError, RunConfig, apply_overrides
from metalearn.train.loop import train
from metalearn.train.runlog import RunLogger, read_metrics

ROOT = Path(__file__).resolve().parents[1]


def test_make_and_the_train_extra_install_tensorboard():
    # the README promises tensorboard/ in a run directory made by the `make` install
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert "-e '.[dev]'" in (ROOT / "Makefile").read_text()
    for extra in ("dev", "train"):
        assert any(r.startswith("tensorboard") for r in extras[extra]), extra
    assert any(r.startswith("mlflow-skinny") for r in extras["mlflow"])
    assert any(r.startswith("wandb") for r in extras["wandb"])
    # CI (`make test`) runs the tracker tests below, so it installs the trackers too
    assert {"mlflow-skinny", "wandb"} <= {r.split(">")[0] for r in extras["dev"]}


def test_tensorboard_backend_writes_the_logged_scalars(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result = train(tiny_config(tensorboard=True), tmp_path / "run", quiet=True)
    acc = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    acc.Reload()
    lines = read_metrics(tmp_path / "run" / "metrics.jsonl")
    train_steps = [x["step"] for x in lines if x["kind"] == "train"]
    assert [e.step for e in acc.Scalars("train/loss")] == train_steps
    val = acc.Scalars("val/mean")
    assert val[-1].step == result.steps
    assert val[-1].value == pytest.approx([x for x in lines if x["kind"] == "val"][-1]["mean"])
    assert "val/metric" not in acc.Tags()["scalars"]  # a string: not a scalar


@pytest.fixture
def mlflow_store(tmp_path, monkeypatch) -> str:
    """MLflow's local file store under tmp_path (MLflow 3 asks for the opt-in variable)."""
    uri = (tmp_path / "mlruns").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    return uri


def test_mlflow_logger_logs_config_and_metrics_to_the_local_store(tmp_path, mlflow_store):
    from mlflow.tracking import MlflowClient

    run_dir = tmp_path / "run"
    train(tiny_config(loggers=["mlflow"]), run_dir, quiet=True)
    client = MlflowClient(mlflow_store)
    run_id = json.loads((run_dir / "loggers.json").read_text())["mlflow"]
    run = client.get_run(run_id)
    assert client.get_experiment(run.info.experiment_id).name == "tiny"  # the config's name
    assert run.info.run_name == "run" and run.info.status == "FINISHED"
    assert run.data.params["train.steps"] == "8" and run.data.params["train.loggers"] == '["mlflow"]'
    assert run.data.params["algorithm.options.inner_lr"] == "0.01"
    lines = read_metrics(run_dir / "metrics.jsonl")
    history = client.get_metric_history(run_id, "train/loss")
    assert [(m.step, m.value) for m in history] == [
        (x["step"], pytest.approx(x["loss"])) for x in lines if x["kind"] == "train"]
    val = [x for x in lines if x["kind"] == "val"]
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "val/mean")] == [
        (x["step"], pytest.approx(x["mean"])) for x in val]


def test_mlflow_resume_continues_the_same_run(tmp_path, mlflow_store, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "resumed")
    run_dir = tmp_path / "run"
    cfg = tiny_config(loggers=["mlflow"])
    train(cfg, run_dir, quiet=True, stop_after=3)
    first = json.loads((run_dir / "loggers.json").read_text())["mlflow"]
    train(cfg, run_dir, quiet=True, resume=True)
    client = MlflowClient(mlflow_store)
    assert json.loads((run_dir / "loggers.json").read_text())["mlflow"] == first
    runs = client.search_runs([client.get_experiment_by_name("resumed").experiment_id])
    assert [r.info.run_id for r in runs] == [first]
    assert [m.step for m in client.get_metric_history(first, "train/loss")] == list(range(1, 9))
    assert client.get_run(first).info.status == "FINISHED"
    # a new run in the same directory (no resume) opens a new tracker run
    train(cfg, tmp_path / "other", quiet=True)
    assert len(client.search_runs([runs[0].info.experiment_id])) == 2


@pytest.mark.parametrize("name, module", [("mlflow", "mlflow"), ("wandb", "wandb")])
def test_a_missing_extra_names_the_pip_command_and_touches_nothing(tmp_path, monkeypatch, name,
                                                                    module):
    monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    with pytest.raises(ConfigError, match=rf"pip install 'metalearn\[{name}\]'"):
        RunLogger(tmp_path, loggers=[name])
    assert not (tmp_path / "metrics.jsonl").exists()


def test_cli_missing_extra_is_exit_2_with_the_pip_command(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "mlflow", None)
    code = main(["train", "--preset", "demo", "--out", str(tmp_path / "run"), "--quiet",
                 "--set", "train.steps=2", "--set", "model.hidden=[8]", "--set", "train.device=cpu",
                 "--set", "train.tensorboard=false", "--set", 'train.loggers=["mlflow"]'])
    assert code == 2
    assert "pip install 'metalearn[mlflow]'" in capsys.readouterr().err


def test_loggers_config_field_is_checked_with_a_suggestion():
    cfg = apply_overrides(RunConfig(), ['train.loggers=["mlflow", "wandb"]'])
    assert cfg.train.loggers == ["mlflow", "wandb"]
    assert RunConfig().train.loggers == []
    with pytest.raises(ConfigError, match="Did you mean 'mlflow'"):
        apply_overrides(RunConfig(), ['train.loggers=["mlfow"]'])


class FakeWandb(types.ModuleType):
    """Records what the adapter asks of ``wandb``: ``init``'s arguments, ``log`` and ``finish``."""

    def __init__(self):
        super().__init__("wandb")
        self.inits: list[dict] = []
        self.logged: list[tuple[dict, int]] = []
        self.finished = 0

    def init(self, **kwargs):
        self.inits.append(kwargs)
        fake = self

        class Run:
            id = kwargs.get("id") or f"id{len(fake.inits)}"

            def log(self, data, step):
                fake.logged.append((data, step))

            def finish(self):
                fake.finished += 1

        return Run()


def test_wandb_adapter_calls_init_log_finish(tmp_path, monkeypatch):
    fake = FakeWandb()
    monkeypatch.setitem(sys.modules, "wandb", fake)
    monkeypatch.delenv("WANDB_DIR", raising=False)
    cfg = tiny_config(loggers=["wandb"])
    train(cfg, tmp_path / "run", quiet=True, stop_after=3)
    (init,) = fake.inits
    assert init["name"] == "run" and init["group"] == "tiny" and init["id"] is None
    assert init["config"]["train"]["steps"] == 8 and init["dir"] == str(tmp_path / "run")
    lines = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert [(d.get("train/loss"), s) for d, s in fake.logged if "train/loss" in d] == [
        (pytest.approx(x["loss"]), x["step"]) for x in lines if x["kind"] == "train"]
    assert any("val/mean" in d and "val/metric" not in d for d, _ in fake.logged)
    assert fake.finished == 1
    train(cfg, tmp_path / "run", quiet=True, resume=True)
    assert fake.inits[1]["id"] == "id1" and fake.inits[1]["resume"] == "allow"
    assert fake.finished == 2 and fake.logged[-1][1] == 8


def test_wandb_offline_writes_only_under_the_run_directory(tmp_path, monkeypatch):
    pytest.importorskip("wandb")  # installed by the dev extra; the adapter test above needs none
    for var, sub in (("HOME", "home"), ("WANDB_CONFIG_DIR", "home/config"),
                     ("WANDB_CACHE_DIR", "home/cache"), ("WANDB_DATA_DIR", "home/data")):
        monkeypatch.setenv(var, str(tmp_path / sub))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_ERROR_REPORTING", "false")
    monkeypatch.delenv("WANDB_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    run_dir = tmp_path / "run"
    train(tiny_config(loggers=["wandb"], steps=3, val_every=3), run_dir, quiet=True)
    run_id = json.loads((run_dir / "loggers.json").read_text())["wandb"]
    (offline,) = (run_dir / "wandb").glob(f"offline-run-*-{run_id}")
    record = (offline / f"run-{run_id}.wandb").read_bytes()
    assert b"train/loss" in record and b"val/mean" in record
    assert {p.name for p in tmp_path.iterdir()} <= {"run", "home"}  # nothing in the cwd
