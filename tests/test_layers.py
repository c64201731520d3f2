"""The package's layer order: no module imports a higher layer, not even inside a function."""

from __future__ import annotations

import ast
from pathlib import Path

import metalearn

# types, errors -> data, models, kernels, optim -> algorithms -> eval -> train -> presets, cli.
# Within one layer imports are free. ``metalearn/__init__.py`` (the curated API) sits on top.
LAYERS = {"types": 0, "errors": 0, "_rng": 0, "_runtime": 0, "_lazy": 0, "data": 1, "models": 1, "kernels": 1, "optim": 1,
          "algorithms": 2, "eval": 3, "train": 4, "rl": 4, "presets": 5, "cli": 5, "demo": 5,
          "__init__": 6}
ROOT = Path(metalearn.__file__).parent


def layer_of(module: str) -> str:
    """``metalearn.train.loop`` -> ``train``; ``metalearn`` and ``metalearn.__init__`` -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def upward_imports(source: str, module: str, where: str) -> list[str]:
    """``file:line`` of each import (module level or inside a function) of a higher layer."""
    own = layer_of(module)
    assert own in LAYERS, f"{where}: {own!r} has no layer; add it to LAYERS"
    found = []
    for node in ast.walk(ast.parse(source, where)):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in (n for n in names if n.split(".")[0] == "metalearn"):
            target = layer_of(name)
            assert target in LAYERS, f"{where}:{node.lineno}: {name} has no layer; add it to LAYERS"
            if LAYERS[target] > LAYERS[own]:
                found.append(f"{where}:{node.lineno}: {own} (layer {LAYERS[own]}) imports {name} "
                             f"({target}, layer {LAYERS[target]})")
    return found


def test_no_module_imports_a_higher_layer():
    problems = []
    for path in sorted(ROOT.rglob("*.py")):
        module = ".".join(("metalearn", *path.relative_to(ROOT).with_suffix("").parts))
        problems += upward_imports(path.read_text(), module, str(path.relative_to(ROOT.parent)))
    assert not problems, "upward imports:\n" + "\n".join(problems)


def test_function_level_and_plain_imports_are_caught():
    source = "import metalearn.cli\n\ndef f():\n    from metalearn.train.loop import load_run\n"
    found = upward_imports(source, "metalearn.eval.fewshot", "x.py")
    assert [f.split(": ")[0] for f in found] == ["x.py:1", "x.py:4"]
    assert "eval (layer 3) imports metalearn.train.loop (train, layer 4)" in found[1]
    assert upward_imports("from metalearn.eval import evaluate\n", "metalearn.train.loop", "y.py") == []
