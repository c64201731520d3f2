"""Check that the peers venv works: each peer library runs one step and matches a reference.

Run with the peers venv (``benchmarks/peers/setup.sh`` runs it as its last step)::

    benchmarks/.venv-peers/bin/python benchmarks/peers/check.py

Checks, on a tiny synthetic 5-way classification task in float64:
- learn2learn ``l2l.algorithms.MAML``: one ``adapt`` step gives ``theta - lr * grad`` and the
  second-order meta-gradient equals a plain ``torch.func.functional_call`` reference.
- higher ``innerloop_ctx``: one differentiable SGD step gives the same meta-gradient.
- easyfsl ``PrototypicalNetworks``: the forward scores equal minus the euclidean distances from
  the query features to the class means of the support features.
Exits non-zero (AssertionError) on any mismatch.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

sys.path.insert(0, str(Path(__file__).resolve().parent))
from shim import (  # noqa: E402
    import_easyfsl,
    import_higher,
    import_learn2learn,
    install_torchvision_shim,
)

N_WAY, K_SHOT, N_QUERY, DIM, LR = 5, 2, 3, 8, 0.4


def make_task(device: torch.device) -> tuple[torch.Tensor, ...]:
    """Gaussian blobs: support (N_WAY*K_SHOT, DIM), query (N_WAY*N_QUERY, DIM), labels int64."""
    g = torch.Generator().manual_seed(0)
    centers = 2 * torch.randn(N_WAY, DIM, generator=g, dtype=torch.float64)
    ys = torch.arange(N_WAY).repeat_interleave(K_SHOT)
    yq = torch.arange(N_WAY).repeat_interleave(N_QUERY)
    xs = centers[ys] + torch.randn(len(ys), DIM, generator=g, dtype=torch.float64)
    xq = centers[yq] + torch.randn(len(yq), DIM, generator=g, dtype=torch.float64)
    return tuple(t.to(device) for t in (xs, ys, xq, yq))


def make_model(device: torch.device) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(DIM, 16), nn.Tanh(), nn.Linear(16, N_WAY)).double().to(device)


def reference_meta_grad(model: nn.Module, xs, ys, xq, yq) -> list[torch.Tensor]:
    """Second-order MAML meta-gradient of one SGD inner step, written with torch.func."""
    params = dict(model.named_parameters())
    support_loss = F.cross_entropy(functional_call(model, params, (xs,)), ys)
    grads = torch.autograd.grad(support_loss, list(params.values()), create_graph=True)
    adapted = {name: p - LR * g for (name, p), g in zip(params.items(), grads)}
    query_loss = F.cross_entropy(functional_call(model, adapted, (xq,)), yq)
    return list(torch.autograd.grad(query_loss, list(params.values())))


def assert_close(got: list[torch.Tensor], want: list[torch.Tensor], what: str) -> float:
    err = max((a - b).abs().max().item() for a, b in zip(got, want))
    assert err < 1e-10, f"{what}: max abs difference {err:.3g} from the reference"
    return err


def check_learn2learn(device: torch.device) -> None:
    l2l = import_learn2learn()
    xs, ys, xq, yq = make_task(device)
    model = make_model(device)
    want = reference_meta_grad(model, xs, ys, xq, yq)

    maml = l2l.algorithms.MAML(model, lr=LR, first_order=False)
    learner = maml.clone()
    support_loss = F.cross_entropy(learner(xs), ys)
    grads = torch.autograd.grad(support_loss, list(model.parameters()), retain_graph=True)
    learner.adapt(support_loss)
    stepped = [p - LR * g for p, g in zip(model.parameters(), grads)]
    assert_close(list(learner.parameters()), stepped, "learn2learn adapt step")
    F.cross_entropy(learner(xq), yq).backward()
    err = assert_close([p.grad for p in maml.parameters()], want, "learn2learn meta-gradient")
    print(f"learn2learn {l2l.__version__} MAML adapt + meta-gradient: ok (max err {err:.1e})")


def check_higher(device: torch.device) -> None:
    higher = import_higher()
    xs, ys, xq, yq = make_task(device)
    model = make_model(device)
    want = reference_meta_grad(model, xs, ys, xq, yq)

    inner_opt = torch.optim.SGD(model.parameters(), lr=LR)
    with higher.innerloop_ctx(model, inner_opt, copy_initial_weights=False) as (fmodel, diffopt):
        diffopt.step(F.cross_entropy(fmodel(xs), ys))
        F.cross_entropy(fmodel(xq), yq).backward()
    err = assert_close([p.grad for p in model.parameters()], want, "higher meta-gradient")
    print(f"higher innerloop_ctx step + meta-gradient: ok (max err {err:.1e})")


def check_easyfsl(device: torch.device) -> None:
    easyfsl = import_easyfsl()
    xs, ys, xq, _ = make_task(device)
    backbone = make_model(device)[:2]  # features of dimension 16
    protonet = easyfsl.methods.PrototypicalNetworks(backbone).to(device)
    protonet.process_support_set(xs, ys)
    scores = protonet(xq)
    assert scores.shape == (N_WAY * N_QUERY, N_WAY), tuple(scores.shape)
    with torch.no_grad():
        prototypes = torch.stack([backbone(xs[ys == c]).mean(0) for c in range(N_WAY)])
        want = -torch.cdist(backbone(xq), prototypes)
    err = assert_close([scores.detach()], [want], "easyfsl PrototypicalNetworks scores")
    print(f"easyfsl {easyfsl.__version__} PrototypicalNetworks forward: ok (max err {err:.1e})")


def main() -> None:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    install_torchvision_shim()
    import torchvision  # only after the shim; imported here to report its version

    print(f"torch {torch.__version__} (cuda {torch.version.cuda}) on {device}")
    check_learn2learn(device)
    check_higher(device)
    check_easyfsl(device)
    print(
        f"torchvision {torchvision.__version__} imported through the shim; all peer checks passed"
    )


if __name__ == "__main__":
    main()
