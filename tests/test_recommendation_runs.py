"""The recommendation domain through the command line: train -> eval -> recommend on tiny synthetic
MovieLens-format data, resume == uninterrupted, prepare-data, a CSV of ratings, and bad input."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from metalearn.cli.main import main
from metalearn.data.synthetic_ratings import SyntheticRatings, write_synthetic_movielens
from metalearn.train.checkpoint import load_checkpoint

TINY = SyntheticRatings(n_users=150, n_items=120, max_ratings=80)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("synthetic-ml")
    write_synthetic_movielens(folder, TINY, seed=0)
    return folder


def _train(data, out, *extra, steps=6):
    args = ["train", "--preset", "melu-movielens-synthetic", "--data-root", str(data), "--out", str(out),
            "--quiet", "--set", f"train.steps={steps}", "--set", "train.val_every=3",
            "--set", "train.checkpoint_every=3", "--set", "train.meta_batch=8",
            "--set", "algorithm.inner_steps=1", *extra]
    assert main(args) == 0


@pytest.fixture(scope="module")
def run(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "melu"
    _train(data, out)
    return out


def test_eval_prints_mae_rmse_and_ndcg_with_intervals(run, capsys):
    assert main(["eval", str(run)]) == 0
    text = capsys.readouterr().out
    for name in ("mae", "rmse", "ndcg@3", "ndcg@5", "ndcg@10"):
        assert f"{name}: " in text and "±" in text.split(f"{name}: ")[1].splitlines()[0]
    record = json.loads((run / "eval_test.json").read_text())
    assert record["episodes"]["protocol"] == "melu" and record["episodes"]["users"] == record["result"]["n"]
    assert set(record["result"]["extra"]) == {"mae", "rmse", "ndcg@3", "ndcg@5", "ndcg@10"}
    assert main(["eval", str(run), "--k-shot", "3"]) == 2
    assert "--k-shot does not apply" in capsys.readouterr().err


def _ratings_file(path, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["item", "rating"])
        w.writerows(rows)
    return path


def test_recommend_lists_unrated_items_by_predicted_rating(run, tmp_path, capsys):
    ratings = _ratings_file(tmp_path / "me.csv", [["Synthetic Movie 1", 5], ["2", 1], ["synthetic movie 3", 4]])
    out = tmp_path / "recs.csv"
    assert main(["recommend", str(run), "--ratings", str(ratings), "--top", "4", "--out", str(out),
                 "--user", "gender=F"]) == 0
    rows = list(csv.DictReader(open(out)))
    assert [r["rank"] for r in rows] == ["1", "2", "3", "4"]
    assert not {r["item"] for r in rows} & {"1", "2", "3"}  # rated items are never recommended
    predicted = [float(r["predicted_rating"]) for r in rows]
    assert predicted == sorted(predicted, reverse=True) and all(1 <= p <= 5 for p in predicted)
    assert "highest predicted rating" in capsys.readouterr().out


@pytest.mark.parametrize("rows, message", [
    ([["Synthetic Movie 1 (1969)", 5]], "did you mean"),
    ([["Synthetic Movi 11", 5]], "did you mean"),
    ([["1", 7]], "outside the data's scale 1..5"),
    ([["1", 4], ["1", 3]], "rated already on line 2"),
    ([["1", "good"]], "line 2: rating 'good' is not a number"),
])
def test_recommend_names_bad_ratings(run, tmp_path, capsys, rows, message):
    ratings = _ratings_file(tmp_path / "bad.csv", rows)
    assert main(["recommend", str(run), "--ratings", str(ratings)]) == 2
    assert message in capsys.readouterr().err


def test_recommend_names_unknown_attributes_and_refuses_other_runs(run, tmp_path, capsys):
    ratings = _ratings_file(tmp_path / "me.csv", [["1", 5]])
    assert main(["recommend", str(run), "--ratings", str(ratings), "--user", "sex=F"]) == 2
    assert "unknown user attribute 'sex'" in capsys.readouterr().err
    assert main(["recommend", str(run), "--ratings", str(ratings), "--user", "gender=X"]) == 2
    assert "choose one of" in capsys.readouterr().err
    sine = tmp_path / "sine"
    assert main(["train", "--preset", "maml-sinusoid-5shot", "--set", "train.steps=2", "--out", str(sine),
                 "--quiet"]) == 0
    assert main(["recommend", str(sine), "--ratings", str(ratings)]) == 2
    assert "not on ratings" in capsys.readouterr().err


def test_resumed_training_equals_uninterrupted(data, tmp_path):
    whole, halves = tmp_path / "whole", tmp_path / "halves"
    _train(data, whole, steps=6)
    _train(data, halves, steps=3)
    assert main(["train", "--out", str(halves), "--resume", "--set", "train.steps=6", "--quiet"]) == 0
    a = load_checkpoint(whole / "checkpoints", "last")["state"]["model"]
    b = load_checkpoint(halves / "checkpoints", "last")["state"]["model"]
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_the_cnp_trains_on_the_same_data(data, tmp_path, capsys):
    out = tmp_path / "cnp"
    assert main(["train", "--preset", "cnp-movielens-synthetic", "--data-root", str(data), "--out", str(out),
                 "--quiet", "--set", "train.steps=3", "--set", "data.protocol=mamo"]) == 0
    assert main(["eval", str(out), "--quiet"]) == 0
    assert "mse" in capsys.readouterr().out


def test_prepare_data_imports_a_movielens_100k_folder(data, tmp_path, capsys):
    assert main(["prepare-data", "movielens-100k", "--from", str(data), "--data-root", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert f"{TINY.n_users} users" in text and "melu protocol" in text and "mamo protocol" in text
    assert (tmp_path / "movielens-100k" / "u.data").is_file()


def test_a_csv_of_ratings_trains(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    rows = ["user,item,rating,timestamp"]
    for u in range(40):
        for i in range(25):
            rows.append(f"u{u},m{(u * 7 + i) % 60},{1 + (u + i) % 5},{1000 * u + i}")
    (folder / "ratings.csv").write_text("\n".join(rows) + "\n")
    (folder / "items.csv").write_text("item,title,genre\n" + "".join(
        f"m{i},Movie {i},{'Drama|Comedy' if i % 2 else 'Action'}\n" for i in range(60)))
    out = tmp_path / "run"
    assert main(["train", "--preset", "melu-movielens-synthetic", "--set", "data.dataset=ratings-csv",
                 "--data-root", str(folder), "--out", str(out), "--quiet", "--set", "train.steps=2",
                 "--set", "train.meta_batch=4", "--set", "algorithm.inner_steps=1"]) == 0
    fields = json.loads((out / "config.json").read_text())["data"]
    assert fields["dataset"] == "ratings-csv"
