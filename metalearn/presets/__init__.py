"""Presets: Python functions returning a whole :class:`~metalearn.train.config.RunConfig`.

Each follows a published recipe (``notes`` says which, and every deviation). Variants call a
preset and edit fields; from the command line, ``--set key=value`` does the same.

Examples:
    >>> cfg = PRESETS["maml-omniglot-5w1s"]()
    >>> cfg.algorithm.options["inner_lr"], cfg.train.meta_batch
    (0.4, 32)
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from metalearn.presets.metadataset import (
    baseline_omniglot_md,
    proto_maml_omniglot_md,
    protonet_omniglot_md,
    tsa_omniglot_md,
)
from metalearn.presets.model_based import cnp_sinusoid, generator_omniglot_5w1s
from metalearn.presets.omniglot import (
    anil_omniglot_20w1s,
    baseline_omniglot_5w1s,
    baseline_pp_omniglot_5w1s,
    demo_omniglot,
    fomaml_omniglot_5w1s,
    maml_omniglot_5w1s,
    maml_omniglot_20w1s,
    matching_omniglot_5w1s,
    meta_sgd_omniglot_5w1s,
    protonet_omniglot_5w1s,
    protonet_omniglot_5w5s,
    protonet_omniglot_20w1s,
    protonet_omniglot_20w5s,
    relation_omniglot_5w1s,
    reptile_omniglot_5w1s,
    reptile_omniglot_5w5s,
)
from metalearn.presets.recommendation import RATINGS_DATASETS, RATINGS_RECIPES
from metalearn.presets.rl import RL_PRESETS
from metalearn.presets.sinusoid import demo, maml_sinusoid, meta_sgd_sinusoid, pretrained_sinusoid
from metalearn.presets.text import TEXT_DATASETS, TEXT_RECIPES
from metalearn.train.config import ConfigError, RunConfig, suggest

PRESETS: dict[str, Callable[[], RunConfig]] = {
    "demo": demo,
    "demo-omniglot": demo_omniglot,
    **{f"maml-sinusoid-{k}shot": partial(maml_sinusoid, k) for k in (5, 10, 20)},
    **{f"meta-sgd-sinusoid-{k}shot": partial(meta_sgd_sinusoid, k) for k in (5, 10, 20)},
    **{f"pretrained-sinusoid-{k}shot": partial(pretrained_sinusoid, k) for k in (5, 10, 20)},
    "maml-omniglot-5w1s": maml_omniglot_5w1s,
    "maml-omniglot-20w1s": maml_omniglot_20w1s,
    "fomaml-omniglot-5w1s": fomaml_omniglot_5w1s,
    "meta-sgd-omniglot-5w1s": meta_sgd_omniglot_5w1s,
    "anil-omniglot-20w1s": anil_omniglot_20w1s,
    "reptile-omniglot-5w1s": reptile_omniglot_5w1s,
    "reptile-omniglot-5w5s": reptile_omniglot_5w5s,
    "protonet-omniglot-5w1s": protonet_omniglot_5w1s,
    "protonet-omniglot-5w5s": protonet_omniglot_5w5s,
    "protonet-omniglot-20w1s": protonet_omniglot_20w1s,
    "protonet-omniglot-20w5s": protonet_omniglot_20w5s,
    "matching-omniglot-5w1s": matching_omniglot_5w1s,
    "relation-omniglot-5w1s": relation_omniglot_5w1s,
    "baseline-omniglot-5w1s": baseline_omniglot_5w1s,
    "baseline-pp-omniglot-5w1s": baseline_pp_omniglot_5w1s,
    "generator-omniglot-5w1s": generator_omniglot_5w1s,
    **{f"cnp-sinusoid-{k}shot": partial(cnp_sinusoid, k) for k in (5, 10, 20)},
    "protonet-omniglot-md": protonet_omniglot_md,
    "proto-maml-omniglot-md": proto_maml_omniglot_md,
    "baseline-omniglot-md": partial(baseline_omniglot_md, "linear"),
    "baseline-pp-omniglot-md": partial(baseline_omniglot_md, "cosine"),
    "finetune-omniglot-md": partial(baseline_omniglot_md, "linear", "all"),
    "tsa-omniglot-md": tsa_omniglot_md,
    **{f"{algo}-{ds}-5w{k}s": partial(recipe, k, ds) for algo, recipe in TEXT_RECIPES.items()
       for ds in TEXT_DATASETS for k in (1, 5)},
    **{f"{algo}-{ds}": partial(recipe, ds) for algo, recipe in RATINGS_RECIPES.items() for ds in RATINGS_DATASETS},
}
"""Name table for the CLI: preset name -> function returning its :class:`RunConfig`."""


def get_preset(name: str) -> RunConfig:
    """The config of preset ``name``.

    Raises:
        ConfigError: unknown name, with the closest names.
    """
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}.{suggest(name, [*PRESETS, *RL_PRESETS])} "
                          "See `metalearn list` for all presets.")
    return PRESETS[name]()


def describe(name: str) -> str:
    """One line about a preset (supervised or meta-RL): the first line of its function's docstring."""
    fn = PRESETS.get(name) or RL_PRESETS[name]
    line = (getattr(fn, "func", fn).__doc__ or "").strip().splitlines()[0]
    if isinstance(fn, partial):  # e.g. maml_sinusoid(k_shot) -> "... on 5-shot sinusoid ..."
        line = line.replace("K-shot", f"{fn.args[0]}-shot")
        if isinstance(fn.args[-1], str):  # text recipes (k_shot, dataset), ratings recipes (dataset)
            line = line.replace("DATASET", fn.args[-1])
    return line


__all__ = ["PRESETS", "RL_PRESETS", "describe", "get_preset"]
