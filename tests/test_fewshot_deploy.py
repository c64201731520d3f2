"""A deployed few-shot classifier (issue 17, points 3 and 9): its answer for an image does not
depend on the other images classified with it, and it takes image files and PIL images."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from metalearn.algorithms import MAML, Baseline, BaselineConfig, MAMLConfig, MatchingNet, ProtoNet
from metalearn.cli import main
from metalearn.eval.fewshot import AdaptInputError, FewShotClassifier, load_images
from metalearn.models import Conv4
from metalearn.train.checkpoint import save_checkpoint
from metalearn.train.config import AlgorithmConfig, DataConfig, ModelConfig, RunConfig, TrainConfig
from metalearn.train.loop import build_algorithm, load_classifier


def _algorithms(norm: str) -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    return {
        "protonet": ProtoNet(Conv4(1, 8, norm=norm, image_size=28)),
        "matching": MatchingNet(Conv4(1, 8, norm=norm, image_size=28)),
        "baseline": Baseline(Conv4(1, 8, norm=norm, image_size=28), BaselineConfig(n_classes=10, finetune_steps=5)),
        "maml": MAML(Conv4(1, 8, out_features=3, norm=norm, image_size=28),
                     MAMLConfig(inner_lr=0.4, eval_inner_steps=2)),
    }


def _task(seed: int = 0) -> tuple[torch.Tensor, list[str], torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(6, 1, 28, 28, generator=g), ["a", "a", "b", "b", "c", "c"], \
        torch.rand(12, 1, 28, 28, generator=g)


@pytest.mark.parametrize("norm", ["transductive", "task"])
@pytest.mark.parametrize("name", ["protonet", "matching", "baseline", "maml"])
def test_a_prediction_is_identical_alone_and_among_others(name, norm):
    algo = _algorithms(norm)[name]
    sx, sy, qx = _task()
    clf = FewShotClassifier(algo).fit(sx, sy)
    among = clf.predict_proba(qx)
    for i in (0, 7, 11):
        assert np.array_equal(clf.predict_proba(qx[i:i + 1])[0], among[i])  # bit for bit
    assert np.array_equal(clf.predict_proba(qx[[3, 1]]), among[[3, 1]])  # order and company
    assert np.array_equal(clf.predict(qx), clf.classes_[among.argmax(1)])


@pytest.mark.parametrize("name", ["protonet", "maml"])
def test_transductive_prediction_depends_on_the_batch_and_stays_available(name):
    # what issue 17 saw with `adapt`: batch-statistics norm over the query batch moves p
    algo = _algorithms("transductive")[name]
    sx, sy, qx = _task()
    clf = FewShotClassifier(algo, query_independent=False).fit(sx, sy)
    assert not np.allclose(clf.predict_proba(qx[:1])[0], clf.predict_proba(qx)[0], atol=1e-6)
    # the protocol of the benchmarks is the predictor's own call on the whole query batch
    with torch.no_grad():
        ref = algo.adapt(sx, torch.tensor([0, 0, 1, 1, 2, 2]))(qx)
    assert torch.allclose(torch.as_tensor(clf.predict_proba(qx)).log(), ref.log_softmax(1), atol=1e-4)


def test_query_independent_maml_normalises_with_the_support_and_the_query():
    algo = _algorithms("transductive")["maml"]
    sx, sy, qx = _task()
    clf = FewShotClassifier(algo).fit(sx, sy)
    predictor = algo.adapt(sx, torch.tensor([0, 0, 1, 1, 2, 2]))
    with torch.no_grad():
        expected = predictor.forward(predictor.params, torch.cat([sx, qx[4:5]]))[-1]
    assert torch.allclose(torch.as_tensor(clf.predict_proba(qx[4:5])[0]), expected.softmax(0), atol=1e-6)


def _digit(value: int) -> Image.Image:
    a = np.full((28, 28), 255, np.uint8)
    a[4 + value * 3: 10 + value * 3, 6:22] = 0
    return Image.fromarray(a)


def test_fit_and_predict_take_image_files_and_pil_images(tmp_path):
    (tmp_path / "s" / "x").mkdir(parents=True)
    (tmp_path / "s" / "y").mkdir(parents=True)
    paths = []
    for cls, values in (("x", (0, 1)), ("y", (4, 5))):
        for v in values:
            _digit(v).save(tmp_path / "s" / cls / f"{v}.png")
            paths.append(tmp_path / "s" / cls / f"{v}.png")
    sx, sy, files = load_images(tmp_path / "s", 28, 1, invert=True)
    assert files == paths
    algo = _algorithms("transductive")["protonet"]
    clf = FewShotClassifier(algo, image_format=(28, 1, True))
    by_tensor = clf.fit(sx, sy).predict_proba(sx)
    assert np.array_equal(clf.fit([str(p) for p in paths], sy).predict_proba(paths), by_tensor)
    images = [Image.open(p) for p in paths]
    assert np.array_equal(clf.fit(images, sy).predict_proba(images), by_tensor)
    assert clf.predict_proba(str(paths[0])).shape == (1, 2)  # one file
    with pytest.raises(AdaptInputError, match="image_format"):
        FewShotClassifier(algo).fit(paths, sy)
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(AdaptInputError, match="bad.png"):
        clf.predict([tmp_path / "bad.png"])


@pytest.fixture(scope="module")
def proto_run(tmp_path_factory) -> Path:
    """A run directory of an untrained ProtoNet on Omniglot-format images (transductive norm)."""
    run = tmp_path_factory.mktemp("runs") / "proto"
    cfg = RunConfig(name="proto", data=DataConfig(dataset="omniglot", n_way=3, k_shot=2, n_query=1),
                    model=ModelConfig("conv4", {"hidden": 16, "norm": "transductive"}),
                    algorithm=AlgorithmConfig("protonet", {}), train=TrainConfig(device="cpu"))
    return save_untrained_run(run, cfg)


def save_untrained_run(run: Path, cfg: RunConfig) -> Path:
    """Write ``run`` as ``metalearn train`` would, with the seed-0 initial weights of ``cfg``."""
    torch.manual_seed(0)
    save_checkpoint(run / "checkpoints", "best", {"model": build_algorithm(cfg).state_dict()}, step=0,
                    config=cfg.to_dict())
    (run / "config.json").write_text(json.dumps(cfg.to_dict()))
    return run


def test_load_classifier_decodes_files_as_the_run(proto_run):
    clf = load_classifier(proto_run)
    assert clf.image_format == (28, 1, True) and clf.query_independent


def _adapt_probs(capsys, run, support, query, out, *extra) -> dict[str, list[float]]:
    code = main(["adapt", str(run), "--support", str(support), "--query", str(query), "--out", str(out), *extra])
    text = capsys.readouterr()
    assert code == 0, text.err
    return {Path(r["file"]).name: [float(v) for k, v in r.items() if k.startswith("p_")]
            for r in csv.DictReader(out.open())}


def test_adapt_csv_does_not_depend_on_the_other_query_files(proto_run, tmp_path, capsys):
    support, many, alone = tmp_path / "support", tmp_path / "many", tmp_path / "alone"
    for cls, values in (("x", (0, 1)), ("y", (3, 4)), ("z", (6, 7))):
        (support / cls).mkdir(parents=True)
        for v in values:
            _digit(v).save(support / cls / f"{v}.png")
    many.mkdir()
    alone.mkdir()
    for v in range(8):
        _digit(v).rotate(7 * v).save(many / f"q{v}.png")
    _digit(5).rotate(35).save(alone / "q5.png")
    p_many = _adapt_probs(capsys, proto_run, support, many, tmp_path / "many.csv")
    p_alone = _adapt_probs(capsys, proto_run, support, alone, tmp_path / "alone.csv")
    assert p_alone["q5.png"] == p_many["q5.png"]
    t_many = _adapt_probs(capsys, proto_run, support, many, tmp_path / "t1.csv", "--transductive")
    t_alone = _adapt_probs(capsys, proto_run, support, alone, tmp_path / "t2.csv", "--transductive")
    assert t_alone["q5.png"] != t_many["q5.png"]
