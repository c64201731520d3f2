"""Out-of-scope rejection of a deployed few-shot classifier (issue 18, point 10): a threshold
calibrated on the support set alone (leave one out) rejects inputs far from every class."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from metalearn.algorithms import MAML, MAMLConfig, ProtoNet
from metalearn.eval.fewshot import AdaptInputError, FewShotClassifier
from metalearn.models import MLP


def _clusters(seed: int = 0, k: int = 5):
    """Three tight 2-D clusters (support and in-scope queries) and far-away out-of-scope points."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[0.0, 0.0], [4.0, 0.0], [0.0, 4.0]])
    sx = (centres[:, None] + 0.3 * torch.randn(3, k, 2, generator=g)).reshape(-1, 2)
    sy = [c for c in "abc" for _ in range(k)]
    qx = (centres[:, None] + 0.3 * torch.randn(3, 10, 2, generator=g)).reshape(-1, 2)
    qy = np.array([c for c in "abc" for _ in range(10)])
    far = torch.tensor([[-8.0, -8.0], [12.0, 12.0], [12.0, -8.0], [-8.0, 12.0]])
    return sx, sy, qx, qy, far


def test_calibrated_threshold_rejects_far_inputs_and_keeps_in_scope_ones():
    sx, sy, qx, qy, far = _clusters()
    clf = FewShotClassifier(ProtoNet(nn.Identity())).fit(sx, sy)
    assert clf.threshold_ is None and "out_of_scope" not in clf.predict(far).tolist()
    clf.calibrate_rejection(0.05)
    assert clf.threshold_ is not None
    assert (clf.predict(far) == "out_of_scope").all()  # every far point rejected
    pred = clf.predict(qx)
    assert np.mean(pred == qy) >= 0.9  # in-scope queries mostly kept and right
    # a higher quantile rejects at least as much
    strict = FewShotClassifier(ProtoNet(nn.Identity())).fit(sx, sy).calibrate_rejection(0.5)
    assert strict.threshold_ >= clf.threshold_
    assert (strict.predict(qx) == "out_of_scope").sum() >= (pred == "out_of_scope").sum()


def test_threshold_is_the_quantile_of_leave_one_out_scores():
    sx, sy, *_ = _clusters(k=3)
    algo = ProtoNet(nn.Identity())
    clf = FewShotClassifier(algo).fit(sx, sy).calibrate_rejection(0.25)
    y = torch.as_tensor(np.searchsorted(clf.classes_, sy))
    scores = []
    for i in range(len(sy)):
        keep = [j for j in range(len(sy)) if j != i]
        scores.append(float(algo.adapt(sx[keep], y[keep])(sx[i:i + 1]).max()))
    assert clf.threshold_ == pytest.approx(float(np.quantile(scores, 0.25)))


def test_calibration_leaves_meta_parameters_unchanged_with_a_gradient_learner():
    torch.manual_seed(0)
    sx, sy, qx, _, _ = _clusters(k=3)
    algo = MAML(MLP(2, (16,), out_features=3), MAMLConfig(inner_lr=0.1, eval_inner_steps=3))
    before = {k: v.clone() for k, v in algo.state_dict().items()}
    clf = FewShotClassifier(algo, n_way=3).fit(sx, sy).calibrate_rejection(0.1)
    assert len(clf.predict(qx)) == len(qx)
    assert all(torch.equal(before[k], v) for k, v in algo.state_dict().items())


def test_calibration_errors_name_the_fix():
    sx, sy, *_ = _clusters(k=1)
    clf = FewShotClassifier(ProtoNet(nn.Identity()))
    with pytest.raises(AdaptInputError, match="before calibrate_rejection"):
        clf.calibrate_rejection()
    clf.fit(sx, sy)
    with pytest.raises(AdaptInputError, match="at least two per class"):
        clf.calibrate_rejection()
    with pytest.raises(AdaptInputError, match=r"\[0, 1\)"):
        FewShotClassifier(ProtoNet(nn.Identity())).fit(*_clusters(k=2)[:2]).calibrate_rejection(1.0)
