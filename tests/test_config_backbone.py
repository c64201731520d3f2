"""Switching a preset's backbone with --set (issue 17, point 4), and model vs data image size."""

from __future__ import annotations

import json

import pytest

from metalearn.cli import main
from metalearn.presets import get_preset
from metalearn.train.config import ConfigError, apply_overrides


def test_switching_backbone_drops_the_options_it_does_not_take(capsys):
    cfg = apply_overrides(get_preset("protonet-omniglot-5w1s"),
                          ["model.backbone=resnet12", "data.image_size=84"])
    err = capsys.readouterr().err
    assert cfg.model.backbone == "resnet12" and cfg.data.image_size == 84
    # the options ResNet-12 takes keep the preset's values; its own take their defaults
    assert cfg.model.options == {"in_channels": 1, "channels": [64, 160, 320, 640],
                                 "out_features": None, "norm": "transductive"}
    assert err.count("dropped options") == 1
    assert "model.backbone=resnet12: dropped options hidden=64, image_size=28 that resnet12 " \
           "does not take" in err


def test_options_given_for_the_new_backbone_apply(capsys):
    cfg = apply_overrides(get_preset("maml-omniglot-5w1s"),
                          ["model.backbone=resnet12", "model.channels=[8,8,8,8]", "model.norm=task"])
    assert cfg.model.options["channels"] == [8, 8, 8, 8] and cfg.model.options["norm"] == "task"
    assert cfg.model.options["out_features"] == 5  # the preset's head carries over


def test_an_option_set_explicitly_that_the_new_backbone_lacks_is_still_an_error(capsys):
    base = get_preset("protonet-omniglot-5w1s")
    with pytest.raises(ConfigError, match="model.hidden was set, but backbone 'resnet12' has no such option"):
        apply_overrides(base, ["model.hidden=32", "model.backbone=resnet12"])
    with pytest.raises(ConfigError, match="'resnet12': in_channels, channels"):
        apply_overrides(base, ["model.backbone=resnet12", "model.hidden=32"])


def test_same_backbone_keeps_every_option(capsys):
    cfg = apply_overrides(get_preset("protonet-omniglot-5w1s"), ["model.backbone=conv4"])
    assert cfg.model.options["hidden"] == 64 and "dropped" not in capsys.readouterr().err


def test_data_image_size_leaves_the_model_options_alone():
    # the bad-input corpus trains a 28-px Conv4 on 12-px folders: flat features still work
    cfg = apply_overrides(get_preset("protonet-omniglot-5w1s"), ["data.image_size=84"])
    assert cfg.model.options["image_size"] == 28 and cfg.data.image_size == 84


def test_the_issue_command_shows_a_resnet12_config(capsys):
    code = main(["train", "--preset", "protonet-omniglot-5w1s", "--set", "model.backbone=resnet12",
                 "--set", "data.image_size=84", "--show-config"])
    out = capsys.readouterr()
    assert code == 0, out.err
    cfg = json.loads(out.out)
    assert cfg["model"]["backbone"] == "resnet12" and "hidden" not in cfg["model"]["options"]
    assert "dropped options hidden=64" in out.err
