"""Class pools over hierarchies (metalearn.data.hierarchy): groups, the DAG, and their builders."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
import torch
from conftest import shared_data_root
from PIL import Image

from metalearn.data import ClassDAG, ClassDataset, ClassHierarchy, Omniglot
from metalearn.data.hierarchy import clinc_domains, omniglot_alphabets, read_folder_tree


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def chi_square_ok(counts: list[int], probs: list[float]) -> bool:
    """Pearson's chi-square statistic below the 0.999 quantile (Wilson-Hilferty approximation)."""
    n, dof = sum(counts), len(counts) - 1
    stat = sum((c - n * p) ** 2 / (n * p) for c, p in zip(counts, probs))
    z = 3.09  # standard normal 0.999 quantile
    return stat < dof * (1 - 2 / (9 * dof) + z * (2 / (9 * dof)) ** 0.5) ** 3


# ---- ClassHierarchy -----------------------------------------------------------------------------

GROUPS = {"a": [0, 1, 2, 3, 4], "b": [5, 6, 7, 8, 9, 10, 11], "c": [12, 13, 14, 15, 16, 17],
          "d": [18, 19, 20, 21, 22], "tiny": [23, 24], "one": [25]}


def test_one_group_per_episode_with_uniform_frequencies():
    h = ClassHierarchy(GROUPS, 27)
    by_pool = {tuple(v): k for k, v in GROUPS.items()}
    g, counts = gen(3), Counter()
    for _ in range(4000):
        pool, draw_ways = h.draw_pool(g)
        assert draw_ways is True and pool.dtype == np.int64
        counts[by_pool[tuple(pool.tolist())]] += 1  # KeyError unless a whole group's classes
    assert set(counts) == {"a", "b", "c", "d"}
    assert chi_square_ok([counts[k] for k in "abcd"], [0.25] * 4)
    assert not chi_square_ok([1300, 900, 900, 900], [0.25] * 4)  # the check can fail


def test_draws_are_seeded_and_pools_read_only():
    h = ClassHierarchy(GROUPS, 27)
    g1, g2, g3 = gen(7), gen(7), gen(8)
    draws = [h.draw_pool(g1)[0].tolist() for _ in range(20)]
    assert draws == [h.draw_pool(g2)[0].tolist() for _ in range(20)]
    assert draws != [h.draw_pool(g3)[0].tolist() for _ in range(20)]
    with pytest.raises(ValueError):
        h.draw_pool(gen(0))[0][0] = 99


def test_skip_counts_and_prints_once_refuse_names_them(capsys):
    groups = {**GROUPS, "small-x": [26]}
    h = ClassHierarchy(groups, 27)
    assert h.skipped == {"tiny": 2, "one": 1, "small-x": 1} and sorted(h.groups) == ["a", "b", "c", "d"]
    err = capsys.readouterr().err
    assert "skipped 3 of 7 groups" in err and "tiny (2)" in err and "one (1)" in err
    ClassHierarchy(groups, 27)  # the same notice is not printed twice
    assert capsys.readouterr().err == ""
    with pytest.raises(ValueError, match=r"3 groups have fewer than 5 classes: "
                                          r"one \(1\), small-x \(1\), tiny \(2\)"):
        ClassHierarchy(groups, 27, on_small="refuse")
    assert ClassHierarchy(GROUPS, 27, min_classes=2).skipped == {"one": 1}
    info = h.describe()
    assert json.loads(json.dumps(info)) == info and info["skipped"] == h.skipped and info["n_groups"] == 4


def test_hierarchy_errors_name_the_problem():
    with pytest.raises(ValueError, match="no group has 5 or more classes"):
        ClassHierarchy({"x": [0, 1], "y": [2]}, 3)
    with pytest.raises(ValueError, match=r"group 'a' holds class index 9, outside 0\.\.4"):
        ClassHierarchy({"a": [0, 1, 2, 3, 9]}, 5)
    with pytest.raises(ValueError, match="outside"):
        ClassHierarchy({"a": [-1, 1, 2, 3, 4]}, 5)
    with pytest.raises(ValueError, match="lists a class twice"):
        ClassHierarchy({"a": [0, 1, 2, 3, 3]}, 5)
    with pytest.raises(ValueError, match="class 2 is in groups 'a' and 'b'"):
        ClassHierarchy({"a": [0, 1, 2, 3, 4], "b": [2, 5, 6, 7, 8]}, 9)
    with pytest.raises(ValueError, match="on_small"):
        ClassHierarchy(GROUPS, 27, on_small="ignore")
    with pytest.raises(ValueError, match="at least one group"):
        ClassHierarchy({}, 3)


def test_from_class_names_levels_and_separator():
    names = [f"latin/upper/c{i}" for i in range(5)] + [f"latin/lower/c{i}" for i in range(6)] \
        + [f"greek/upper/c{i}" for i in range(3)]
    h0 = ClassHierarchy.from_class_names(names)
    assert {g: c.tolist() for g, c in h0.groups.items()} == {"latin": list(range(11))}
    assert h0.skipped == {"greek": 3}
    h1 = ClassHierarchy.from_class_names(names, level=1)
    assert {g: c.tolist() for g, c in h1.groups.items()} == {"latin/upper": [0, 1, 2, 3, 4],
                                                              "latin/lower": list(range(5, 11))}
    dashed = ClassHierarchy.from_class_names([n.replace("/", "-") for n in names], sep="-")
    assert sorted(dashed.groups) == ["latin"]
    with pytest.raises(ValueError, match=r"class name 'latin/upper/c0' has 3 component\(s\)"
                                          r".*level=2 needs at least 4"):
        ClassHierarchy.from_class_names(names, level=2)
    with pytest.raises(ValueError, match="pass the right sep"):
        ClassHierarchy.from_class_names(["a", "b"])


def test_subset_follows_a_subset_classes_view():
    names = [f"g{i // 6}/c{i}" for i in range(24)]
    ds = ClassDataset(np.arange(48.0)[:, None], np.repeat(np.arange(24), 2), names)
    h = ClassHierarchy.from_class_names(names)
    chosen = [23, 22, 21, 20, 19, 0, 1, 2, 3, 4, 5, 12]  # g3 five, g0 all six, g2 one
    for key in (chosen, [names[c] for c in chosen]):
        view, sub = ds.subset_classes(key), h.subset(key)
        assert sub.n_classes == view.num_classes == 12
        assert sorted(sub.groups) == ["g0", "g3"] and sub.skipped == {"g2": 1}
        for group, classes in sub.groups.items():
            assert all(view.class_names[c].startswith(group + "/") for c in classes)
        assert sorted(np.concatenate(list(sub.groups.values())).tolist()) == list(range(11))
    with pytest.raises(ValueError, match="no class names"):
        ClassHierarchy({"a": [0, 1, 2, 3, 4]}, 5).subset(["x"])
    with pytest.raises(ValueError, match="not in this hierarchy"):
        h.subset(["nope"])


# ---- ClassDAG ------------------------------------------------------------------------------------

LEAVES = [f"L{i}" for i in range(60)]


def synthetic_edges() -> list[tuple[str, str]]:
    """A by-hand DAG with shared children (leaves and inner nodes with several parents)."""
    e = [("A", f"L{i}") for i in range(0, 6)]        # A: L0..L5 (6)
    e += [("B", f"L{i}") for i in range(4, 10)]      # B: L4..L9 (6), shares L4, L5 with A
    e += [("C", "A"), ("C", "B")]                    # C: L0..L9 (10)
    e += [("D", f"L{i}") for i in range(5, 60)]      # D: L5..L59 (55 > 50: subsampled)
    e += [("F", "A")]                                # F: the same 6 leaves as A, another node
    e += [("tiny", "L0"), ("tiny", "L1")]            # 2 leaves: not eligible
    e += [("root", "C"), ("root", "D"), ("root", "tiny"), ("root", "F")]  # 60 > max_leaves=58
    e += [("other", "unrelated"), ("L3", "not-a-class")]  # pruned: nodes outside the classes' ancestry
    return e


def test_dag_eligible_nodes_and_leaf_sets_by_hand():
    dag = ClassDAG(synthetic_edges(), LEAVES, max_leaves=58)
    assert dag.eligible == ["A", "B", "C", "D", "F"]
    expected = {"A": range(0, 6), "B": range(4, 10), "C": range(0, 10), "D": range(5, 60), "F": range(0, 6)}
    for node, leaves in expected.items():
        assert dag.leaves_of(node).tolist() == list(leaves)
    assert ClassDAG(synthetic_edges(), LEAVES).eligible == ["A", "B", "C", "D", "F", "root"]
    assert ClassDAG(synthetic_edges(), LEAVES, min_leaves=2, max_leaves=9).eligible == ["A", "B", "F", "tiny"]
    with pytest.raises(KeyError, match="not an eligible node"):
        dag.leaves_of("tiny")
    info = dag.describe()
    assert json.loads(json.dumps(info)) == info and info["n_eligible"] == 5 and info["n_leaves"] == 60


def test_dag_pools_inside_one_node_capped_and_uniform_over_nodes():
    dag = ClassDAG(synthetic_edges(), LEAVES, max_leaves=58)
    spans = {node: set(dag.leaves_of(node).tolist()) for node in dag.eligible}
    g, kinds, d_hits = gen(1), Counter(), Counter()
    n = 5000
    for _ in range(n):
        pool, draw_ways = dag.draw_pool(g)
        assert draw_ways is False and pool.dtype == np.int64 and len(pool) <= 50
        assert len(set(pool.tolist())) == len(pool)
        inside = [node for node, s in spans.items() if set(pool.tolist()) <= s]
        assert inside, f"pool {pool.tolist()} is not within one node's leaves"
        members = tuple(pool.tolist())
        if members == tuple(range(0, 6)):
            kinds["A or F"] += 1
        elif members == tuple(range(4, 10)):
            kinds["B"] += 1
        elif members == tuple(range(0, 10)):
            kinds["C"] += 1
        else:
            assert len(pool) == 50 and set(members) <= spans["D"]  # D, subsampled to the cap
            kinds["D"] += 1
            d_hits.update(members)
    # 5 eligible nodes drawn uniformly; A and F have the same leaves, so that pool is 2/5.
    assert chi_square_ok([kinds["A or F"], kinds["B"], kinds["C"], kinds["D"]], [0.4, 0.2, 0.2, 0.2])
    # the subsample is uniform: each of D's 55 leaves is kept with probability 50/55
    assert set(d_hits) == spans["D"]
    assert all(abs(c / kinds["D"] - 50 / 55) < 0.05 for c in d_hits.values())


def test_dag_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match=r"cycle: C -> A -> C"):
        ClassDAG([*synthetic_edges(), ("A", "C")], LEAVES)
    with pytest.raises(ValueError, match="cycle: x -> x"):
        ClassDAG([*synthetic_edges(), ("x", "x")], LEAVES)
    with pytest.raises(ValueError, match=r"1 classes have other classes below them, "
                                          r"e\.g\. 'A' above \['L0'"):
        ClassDAG(synthetic_edges(), [*LEAVES, "A"])
    with pytest.raises(ValueError, match=r"1 leaves have no parent.*\['L99'\]"):
        ClassDAG(synthetic_edges(), [*LEAVES, "L99"])
    with pytest.raises(ValueError, match="repeated"):
        ClassDAG(synthetic_edges(), [*LEAVES, "L0"])
    with pytest.raises(ValueError, match=r"no internal node spans 100\.\.392 leaves"):
        ClassDAG(synthetic_edges(), LEAVES, min_leaves=100)
    with pytest.raises(ValueError, match="min_leaves <= max_leaves"):
        ClassDAG(synthetic_edges(), LEAVES, min_leaves=10, max_leaves=5)


def test_from_wordnet_reads_parent_child_lines(tmp_path):
    path = tmp_path / "wordnet.is_a.txt"
    path.write_text("".join(f"{p} {c}\n" for p, c in synthetic_edges()) + "\n")
    from_file = ClassDAG.from_wordnet(path, LEAVES, max_leaves=58, max_classes=7)
    assert from_file.eligible == ["A", "B", "C", "D", "F"] and from_file.max_classes == 7
    assert all(len(from_file.draw_pool(g)[0]) <= 7 for g in [gen(0)] for _ in range(50))
    path.write_text("A L0\nA L1 L2\n")
    with pytest.raises(ValueError, match=r"wordnet\.is_a\.txt:2: expected 'parent child'"):
        ClassDAG.from_wordnet(path, ["L0"])


# ---- builders ------------------------------------------------------------------------------------

def test_omniglot_alphabets_groups_by_alphabet_with_rotations():
    names = [f"Greek/character{i:02d}/rot{r:03d}" for i in range(1, 4) for r in (0, 90)] \
        + [f"Tagalog/character{i:02d}" for i in range(1, 6)]
    ds = ClassDataset(np.zeros((len(names), 1)), np.arange(len(names)), names)
    h = omniglot_alphabets(ds)
    assert {g: c.tolist() for g, c in h.groups.items()} == {"Greek": list(range(6)), "Tagalog": list(range(6, 11))}


def test_clinc_domains_synthetic_and_errors(tmp_path):
    path = tmp_path / "domains.json"
    path.write_text(json.dumps({"bank": ["a", "b", "c", "d", "e", "f"], "home": ["g", "h", "i", "j", "k"]}))
    h = clinc_domains(["k", "a", "b", "c", "d", "e", "g", "h", "i", "j"], path)
    assert h.groups["bank"].tolist() == [1, 2, 3, 4, 5] and h.groups["home"].tolist() == [0, 6, 7, 8, 9]
    with pytest.raises(ValueError, match=r"2 intents are in no domain of .*\['oos', 'zz'\]"):
        clinc_domains(["a", "oos", "zz"], path)
    path.write_text(json.dumps({"bank": ["a"], "home": ["a"]}))
    with pytest.raises(ValueError, match="intent 'a' is in domains 'bank' and 'home'"):
        clinc_domains(["a"], path)
    path.write_text(json.dumps(["a", "b"]))
    with pytest.raises(ValueError, match="expected a JSON object mapping each domain"):
        clinc_domains(["a"], path)


@pytest.mark.data
def test_clinc_domains_real_file():
    root = shared_data_root() / "clinc150"
    if not (root / "domains.json").is_file() or not (root / "data_full.json").is_file():
        pytest.skip(f"real CLINC150 not found: {root} lacks domains.json / data_full.json "
                    "(set METALEARN_TEST_DATA to the folder that holds clinc150/)")
    intents = sorted({intent for _, intent in json.loads((root / "data_full.json").read_text())["train"]})
    h = clinc_domains(intents, root / "domains.json")
    assert len(intents) == 150 and len(h.groups) == 10 and not h.skipped
    assert {len(c) for c in h.groups.values()} == {15}
    assert sorted(np.concatenate(list(h.groups.values())).tolist()) == list(range(150))


def make_tree(root, layout: dict[str, dict[str, int]], size: int = 8):
    for gi, (group, classes) in enumerate(layout.items()):
        for ci, (cls, n) in enumerate(classes.items()):
            (root / group / cls).mkdir(parents=True)
            for j in range(n):
                level = 10 * gi + 2 * ci + j % 2
                Image.new("L", (size, size), level).save(root / group / cls / f"{j}.png")
    return root


def test_read_folder_tree(tmp_path):
    layout = {"birds": {f"b{i}": 2 for i in range(5)}, "cars": {f"c{i}": 3 for i in range(6)},
              "few": {"f0": 2}}
    root = make_tree(tmp_path / "tree", layout)
    (root / "cars" / "c0" / "notes.txt").write_text("not an image")
    with pytest.warns(UserWarning, match="ignored 1 files"):
        ds, h = read_folder_tree(root, image_size=8, channels=1, cache=tmp_path / "cache")
    assert ds.class_names == [f"birds/b{i}" for i in range(5)] + [f"cars/c{i}" for i in range(6)] + ["few/f0"]
    assert ds.class_sizes().tolist() == [2] * 5 + [3] * 6 + [2] and ds.item_shape == (1, 8, 8)
    assert sorted(h.groups) == ["birds", "cars"] and h.skipped == {"few": 1}
    # the pixels follow the class: image j of class ci of group gi is grey level 10*gi + 2*ci + j%2
    first = ds.gather(torch.tensor([int(np.nonzero(ds.labels == 6)[0][1])]))[0]  # cars/c1, image 1
    assert torch.allclose(first * 255, torch.full_like(first, 13.0), atol=0.5)


def test_read_folder_tree_layout_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_folder_tree(tmp_path / "missing")
    flat = tmp_path / "flat"
    (flat / "cls").mkdir(parents=True)
    Image.new("L", (4, 4)).save(flat / "cls" / "0.png")
    with pytest.raises(ValueError, match=r"holds images \('0.png' \.\.\.\) where class folders were expected: "
                                          r"expected .*flat/<group>/<class>/<image>"):
        read_folder_tree(flat)
    Image.new("L", (4, 4)).save(tmp_path / "top.png")
    with pytest.raises(ValueError, match="where group folders were expected"):
        read_folder_tree(tmp_path)
    empty = tmp_path / "empty"
    (empty / "g" / "c").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"empty/g/c holds no image files \(expected "):
        read_folder_tree(empty)
    (tmp_path / "none").mkdir()
    with pytest.raises(FileNotFoundError, match="has no group folders: expected"):
        read_folder_tree(tmp_path / "none")


# ---- the Meta-Dataset Omniglot split, on the real data ---------------------------------------------

@pytest.mark.data
def test_omniglot_metadataset_split(omniglot_root):
    sizes, alphabets, chars = {}, {}, {}
    for part in ("train", "val", "test"):
        ds = Omniglot(f"md-{part}", root=omniglot_root)
        h = omniglot_alphabets(ds)
        sizes[part], chars[part] = ds.num_classes, set(ds.class_names)
        alphabets[part] = {c.split("/")[0] for c in ds.class_names}
        assert set(ds.class_sizes()) == {20} and not h.skipped and set(h.groups) == alphabets[part]
    assert sizes == {"train": 883, "val": 81, "test": 659}
    assert {k: len(v) for k, v in alphabets.items()} == {"train": 25, "val": 5, "test": 20}
    assert alphabets["val"] == {"Blackfoot_(Canadian_Aboriginal_Syllabics)",
                                "Ojibwe_(Canadian_Aboriginal_Syllabics)",
                                "Inuktitut_(Canadian_Aboriginal_Syllabics)", "Tagalog",
                                "Alphabet_of_the_Magi"}
    assert not chars["train"] & chars["val"] and not (chars["train"] | chars["val"]) & chars["test"]
    with pytest.raises(ValueError, match="no rotated classes"):
        Omniglot("md-train", root=omniglot_root, rotations=True)
