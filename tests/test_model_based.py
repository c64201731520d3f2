"""Parameter generator and Conditional Neural Process: shapes, symmetries, equivalences, learning."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from metalearn.algorithms import CNP, CNPConfig, GeneratorConfig, ParameterGenerator, ProtoNet
from metalearn.algorithms.generator import linear_head
from metalearn.data import EpisodeSampler, FixedEpisodes, SinusoidTasks
from metalearn.eval import evaluate
from metalearn.models import MLP, Conv4, ResNet12
from metalearn.types import Episode, EpisodeBatch

IN, SIGNAL = 24, 6  # blob inputs: the first SIGNAL coordinates separate classes, the rest is noise


@pytest.fixture(autouse=True)
def single_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def blob_episode(g: torch.Generator, n_way: int = 5, k_shot: int = 1, n_query: int = 5,
                 pool: int = 50, pool_seed: int = 0) -> Episode:
    """A few-shot task over a fixed pool of Gaussian classes (noise dominates 18 of 24 inputs)."""
    centres = torch.zeros(pool, IN)
    centres[:, :SIGNAL] = 3 * torch.randn(pool, SIGNAL, generator=torch.Generator().manual_seed(pool_seed))
    scale = torch.cat([torch.full((SIGNAL,), 0.5), torch.full((IN - SIGNAL,), 3.0)])
    classes = torch.randperm(pool, generator=g)[:n_way]

    def draw(per: int):
        x = centres[classes].repeat_interleave(per, 0)
        return x + scale * torch.randn(x.shape, generator=g), torch.arange(n_way).repeat_interleave(per)

    (sx, sy), (qx, qy) = draw(k_shot), draw(n_query)
    return Episode(sx, sy, qx, qy, class_ids=classes)


def generator(seed: int = 0, **options) -> ParameterGenerator:
    torch.manual_seed(seed)
    return ParameterGenerator(MLP(IN, (32,), out_features=None), GeneratorConfig(hidden=16, **options))


def randomise(module: nn.Module, seed: int = 1, std: float = 0.3) -> None:
    """Give the zero-initialised generator layers random values (to test the general case)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(std * torch.randn(p.shape, generator=g))


def mean_accuracy(algo, episodes) -> float:
    return evaluate(algo, episodes).mean


# ----------------------------------------------------------------- parameter generator


def test_generated_head_shapes_and_logits():
    algo = generator()
    ep = blob_episode(torch.Generator().manual_seed(0), n_way=4, k_shot=2, n_query=3)
    z = algo.backbone(ep.support_x)
    head = algo.generate(z, ep.support_y, 4)
    assert head["weight"].shape == (4, 32) and head["bias"].shape == (4,)
    assert algo.adapt(ep.support_x, ep.support_y)(ep.query_x).shape == (12, 4)


def test_set_encoder_is_invariant_to_support_order_and_equivariant_to_relabelling():
    algo = generator(film=True)
    randomise(algo.to_weight), randomise(algo.to_bias, 2), randomise(algo.to_film, 3)
    ep = blob_episode(torch.Generator().manual_seed(1), n_way=5, k_shot=3, n_query=4)
    logits = algo.logits(ep.support_x, ep.support_y, ep.query_x, 5)
    perm = torch.randperm(15, generator=torch.Generator().manual_seed(2))
    shuffled = algo.logits(ep.support_x[perm], ep.support_y[perm], ep.query_x, 5)
    torch.testing.assert_close(shuffled, logits)
    relabel = torch.tensor([3, 0, 4, 1, 2])  # class c becomes relabel[c]
    renamed = algo.logits(ep.support_x, relabel[ep.support_y], ep.query_x, 5)
    torch.testing.assert_close(renamed[:, relabel], logits)


def test_untrained_generator_is_protonet():
    """With A = b = 0 the head is (2 p_k, -|p_k|^2): ProtoNet's logits up to a per-query constant."""
    algo = generator()
    proto = ProtoNet(algo.backbone)
    ep = blob_episode(torch.Generator().manual_seed(3), k_shot=2)
    ours = algo.adapt(ep.support_x, ep.support_y)(ep.query_x)
    theirs = proto.adapt(ep.support_x, ep.support_y)(ep.query_x)
    torch.testing.assert_close(F.log_softmax(ours, -1), F.log_softmax(theirs, -1), atol=1e-4, rtol=1e-4)


def test_zero_finetune_steps_is_exactly_the_generated_head():
    algo = generator(finetune_steps=0)
    randomise(algo.to_weight)
    ep = blob_episode(torch.Generator().manual_seed(4))
    predictor = algo.adapt(ep.support_x, ep.support_y)
    zs, zq = algo.backbone(ep.support_x), algo.backbone(ep.query_x)
    generated = algo.generate(zs, ep.support_y, 5)
    for k, v in predictor.head(ep.query_x).items():
        assert torch.equal(v, generated[k]), k
    torch.testing.assert_close(predictor(ep.query_x), linear_head(generated, zq))


def test_finetuning_starts_from_the_generated_head_and_lowers_the_support_loss():
    ep = blob_episode(torch.Generator().manual_seed(5), k_shot=2)
    tuned = generator(finetune_steps=5, finetune_lr=0.05)
    plain = generator(finetune_steps=0)
    one = generator(finetune_steps=1, finetune_lr=0.05)  # one hand-written SGD step
    for algo in (plain, tuned, one):  # a generated head that is far from fitting the support
        randomise(algo.to_weight, std=3.0), randomise(algo.to_bias, 2, std=3.0)
    zs = plain.backbone(ep.support_x)
    losses = [F.cross_entropy(linear_head(a.adapt(ep.support_x, ep.support_y).head(ep.query_x), zs),
                              ep.support_y).item() for a in (plain, tuned)]
    assert losses[1] < 0.9 * losses[0], losses
    head = plain.generate(zs, ep.support_y, 5)
    w, b = (t.detach().requires_grad_() for t in (head["weight"], head["bias"]))
    gw, gb = torch.autograd.grad(F.cross_entropy(zs.detach() @ w.T + b, ep.support_y), [w, b])
    got = one.adapt(ep.support_x, ep.support_y).head(ep.query_x)
    torch.testing.assert_close(got["weight"], w - 0.05 * gw)
    torch.testing.assert_close(got["bias"], b - 0.05 * gb)


def test_film_starts_as_identity_and_then_modulates():
    ep = blob_episode(torch.Generator().manual_seed(6))
    plain, film = generator(), generator(film=True)  # same seed: same backbone and encoder
    film.load_state_dict({**film.state_dict(), **plain.state_dict()})
    a = plain.logits(ep.support_x, ep.support_y, ep.query_x, 5)
    torch.testing.assert_close(film.logits(ep.support_x, ep.support_y, ep.query_x, 5), a)
    randomise(film.to_film)
    assert not torch.allclose(film.logits(ep.support_x, ep.support_y, ep.query_x, 5), a)
    assert not film.backbone.norms[0]._forward_hooks, "FiLM hooks must be removed after use"


@pytest.mark.parametrize("name", ["mlp", "conv4", "resnet12"])
@pytest.mark.parametrize("film", [False, True])
def test_generator_runs_on_every_backbone(name, film):
    torch.manual_seed(0)
    if name == "mlp":
        backbone, x = MLP(12, (16, 16), out_features=None, norm="group"), torch.randn(25, 12)
    elif name == "conv4":
        backbone, x = Conv4(1, hidden=8, image_size=16), torch.randn(25, 1, 16, 16)
    else:
        backbone, x = ResNet12(1, channels=(4, 4, 8, 8), norm="task"), torch.randn(25, 1, 16, 16)
    algo = ParameterGenerator(backbone, GeneratorConfig(hidden=8, film=film, finetune_steps=1))
    y = torch.arange(5).repeat(5)
    batch = EpisodeBatch.stack([Episode(x[:5], y[:5], x[5:], y[5:])] * 2)
    loss, metrics = algo.meta_loss(batch)
    loss.backward()
    assert math.isfinite(loss.item()) and set(metrics) == {"loss", "accuracy"}
    assert algo.to_weight.weight.grad is not None
    if film:
        assert algo.to_film.weight.grad.abs().sum() > 0


def test_generator_learns_blobs_and_adapt_leaves_meta_parameters_alone():
    algo = generator(finetune_steps=1)
    g = torch.Generator().manual_seed(10)
    test = [blob_episode(torch.Generator().manual_seed(1000 + i), pool_seed=1) for i in range(30)]
    before = mean_accuracy(algo, test)
    snapshot = {k: v.clone() for k, v in algo.state_dict().items()}
    algo.adapt(test[0].support_x, test[0].support_y)(test[0].query_x)
    assert all(torch.equal(v, algo.state_dict()[k]) for k, v in snapshot.items())
    opt = torch.optim.Adam(algo.parameters(), lr=3e-3)
    for _ in range(80):
        loss, _ = algo.meta_loss(EpisodeBatch.stack([blob_episode(g) for _ in range(4)]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = mean_accuracy(algo, test)  # unseen classes (another pool)
    assert after > before + 0.1 and after > 0.75, (before, after)


def test_generator_bad_inputs_name_the_fix():
    with pytest.raises(ValueError, match="out_features=None"):
        ParameterGenerator(MLP(4, (8,), out_features=3))
    with pytest.raises(ValueError, match="feature_dim"):
        ParameterGenerator(nn.Linear(4, 8))
    with pytest.raises(ValueError, match="film=False"):
        ParameterGenerator(nn.Linear(4, 8), GeneratorConfig(feature_dim=8, film=True))
    with pytest.raises(ValueError, match="finetune_steps"):
        generator(finetune_steps=-1)
    with pytest.raises(ValueError, match="no support example"):
        generator().adapt(torch.randn(2, IN), torch.tensor([0, 2]))


# ----------------------------------------------------------------- conditional neural process


def cnp(seed: int = 0, **kwargs) -> CNP:
    torch.manual_seed(seed)
    return CNP(MLP(1, (32,), out_features=None),
               CNPConfig(hidden=32, encoder_layers=2, decoder_layers=2, **kwargs))


@pytest.mark.parametrize("options", [{}, {"attention": True}, {"ridge": True},
                                     {"ridge": True, "ridge_prior": True}])
def test_cnp_shapes_positive_variance_and_order_invariance(options):
    model = cnp(**options)
    sx, sy, qx = torch.randn(7, 1), torch.randn(7, 1), torch.randn(11, 1)
    predictor = model.adapt(sx, sy)
    mean, var = predictor.distribution(qx)
    assert mean.shape == var.shape == (11, 1)
    assert (var > 0).all() and (var >= model.config.min_std ** 2).all()
    torch.testing.assert_close(predictor(qx), mean)
    torch.testing.assert_close(predictor.variance(qx), var)
    perm = torch.randperm(7)
    torch.testing.assert_close(model.adapt(sx[perm], sy[perm])(qx), mean)
    assert model.adapt(sx[:1], sy[:1])(qx).shape == (11, 1)  # one context point is enough


def test_attentive_cnp_recalls_what_a_mean_forgets():
    """Tasks that are lookup tables: 8 fixed inputs, a fresh N(0, 1) target for each per task,
    every input in the support and queried again. The mean of the support's encodings must
    squeeze 8 independent numbers into one vector; attention looks the query's own pair up."""
    xs = torch.linspace(-1, 1, 8).unsqueeze(1)
    gen = torch.Generator().manual_seed(0)

    def fit(model: CNP) -> float:
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        for _ in range(300):
            ys = torch.randn(4, 8, 1, generator=gen)
            loss = sum(F.mse_loss(model.distribution(xs, y, xs)[0], y) for y in ys) / 4
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            ys = torch.randn(64, 8, 1, generator=gen)
            return float(sum(F.mse_loss(model.distribution(xs, y, xs)[0], y) for y in ys) / 64)

    plain, attentive = fit(cnp()), fit(cnp(attention=True, heads=4))
    assert attentive < 0.5 * plain, (plain, attentive)


def test_the_ridge_path_is_the_closed_form_ridge_fit_that_the_decoder_corrects():
    model = cnp(ridge=True, ridge_features=6)
    with torch.no_grad():
        model.log_ridge.fill_(math.log(0.3))
    sx, sy, qx = torch.randn(9, 1), torch.randn(9, 1), torch.randn(4, 1)
    zs, zq = model.backbone(sx), model.backbone(qx)
    phi_s, phi_q = model.ridge_map(zs).double(), model.ridge_map(zq).double()
    y = sy.double()
    w = torch.linalg.lstsq(torch.cat([phi_s, math.sqrt(0.3) * torch.eye(6, dtype=torch.double)]),
                           torch.cat([y - y.mean(), torch.zeros(6, 1, dtype=torch.double)])).solution
    ridge = (y.mean() + phi_q @ w).float()  # argmin |Phi w - (y - mean y)|^2 + 0.3 |w|^2, by least squares
    torch.testing.assert_close(model._ridge(zs, sy, zq), ridge, atol=1e-5, rtol=1e-4)
    last = [m for m in model.decoder if isinstance(m, nn.Linear)][-1]
    with torch.no_grad():
        last.weight.zero_(), last.bias.zero_()
    torch.testing.assert_close(model.adapt(sx, sy)(qx), ridge, atol=1e-5, rtol=1e-4)  # no correction
    loss, _ = model.meta_loss([Episode(sx, sy, qx, torch.randn(4, 1))])
    loss.backward()
    assert model.log_ridge.grad.abs() > 0 and model.ridge_map[0].weight.grad.abs().sum() > 0


def test_the_ridge_prior_path_fits_the_residuals_of_the_prior_with_a_penalised_offset():
    model = cnp(ridge=True, ridge_prior=True, ridge_features=5)
    with torch.no_grad():
        model.log_ridge.fill_(math.log(0.3))
        model.log_ridge_bias.fill_(math.log(2.0))
    sx, sy, qx = torch.randn(9, 1), torch.randn(9, 1), torch.randn(4, 1)
    zs, zq = model.backbone(sx), model.backbone(qx)
    a_s = torch.cat([torch.ones(9, 1), model.ridge_map(zs)], -1).double()
    a_q = torch.cat([torch.ones(4, 1), model.ridge_map(zq)], -1).double()
    residual = (sy - model.prior(zs)).double()
    root = torch.diag(torch.tensor([math.sqrt(2.0)] + [math.sqrt(0.3)] * 5, dtype=torch.double))
    w = torch.linalg.lstsq(torch.cat([a_s, root]), torch.cat([residual, torch.zeros(6, 1, dtype=torch.double)])).solution
    expected = (model.prior(zq).double() + a_q @ w).float()  # argmin |A w - r|^2 + 2 w_0^2 + 0.3 |w_1:|^2
    torch.testing.assert_close(model._ridge(zs, sy, zq), expected, atol=1e-5, rtol=1e-4)
    # a huge penalty leaves the prior alone: the support cannot move the prediction
    with torch.no_grad():
        model.log_ridge.fill_(30.0), model.log_ridge_bias.fill_(30.0)
    torch.testing.assert_close(model._ridge(zs, sy, zq), model.prior(zq), atol=1e-5, rtol=1e-4)
    loss, _ = model.meta_loss([Episode(sx, sy, qx, torch.randn(4, 1))])
    loss.backward()
    assert model.prior[0].weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="ridge=true"):
        cnp(ridge_prior=True)


def test_cnp_meta_loss_is_the_gaussian_nll():
    model = cnp()
    batch = SinusoidTasks().sample_batch(3, 5, 6, torch.Generator().manual_seed(0))
    loss, metrics = model.meta_loss(batch)
    expected = []
    for ep in batch:
        mean, var = model.distribution(ep.support_x, ep.support_y, ep.query_x)
        nll = 0.5 * (torch.log(2 * math.pi * var) + (ep.query_y - mean) ** 2 / var)
        expected.append(nll.mean())
    torch.testing.assert_close(loss, torch.stack(expected).mean())
    assert set(metrics) == {"loss", "mse"}


def test_cnp_learns_sinusoids_in_seconds():
    model = cnp()
    sampler = EpisodeSampler(SinusoidTasks(), None, k_shot=10, n_query=10, seed=0)
    test = FixedEpisodes(SinusoidTasks(), None, 10, 50, n_episodes=50, seed=2)
    before = evaluate(model, test).mean
    snapshot = {k: v.clone() for k, v in model.state_dict().items()}
    model.adapt(test[0].support_x, test[0].support_y)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in snapshot.items())
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(400):
        loss, _ = model.meta_loss(sampler.sample_batch(4))
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = evaluate(model, test).mean
    # The Gaussian NLL first inflates the variance, then fits the mean: the MSE drops slowly
    # (about 3.9 -> 2.6 here; the zero predictor scores about 4.2).
    assert after < 0.75 * before, (before, after)


def test_cnp_bad_inputs_name_the_fix():
    model = cnp()
    with pytest.raises(ValueError, match="generator"):
        model.adapt(torch.randn(4, 1), torch.tensor([0, 1, 0, 1]))
    with pytest.raises(ValueError, match="y_dim=2"):
        model.adapt(torch.randn(4, 1), torch.randn(4, 2))
    with pytest.raises(ValueError, match="k_shot >= 1"):
        model.adapt(torch.randn(0, 1), torch.randn(0, 1))
    with pytest.raises(ValueError, match="feature_dim"):
        CNP(nn.Identity())
    with pytest.raises(ValueError, match="ridge_features must be >= 1"):
        cnp(ridge=True, ridge_features=0)
    with pytest.raises(ValueError, match="heads that divide hidden"):
        cnp(attention=True, heads=5)


def test_cnp_preset_trains_and_evaluates_through_the_cli(tmp_path):
    from metalearn.cli import main

    out = tmp_path / "cnp"
    tiny = ["--set", "train.steps=3", "--set", "train.val_every=3", "--set", "data.val_episodes=4",
            "--set", "data.test_episodes=5", "--set", "train.tensorboard=false"]
    assert main(["train", "--preset", "cnp-sinusoid-5shot", "--out", str(out), "--quiet", *tiny]) == 0
    assert main(["eval", str(out), "--quiet"]) == 0
    result = json.loads((out / "eval_test.json").read_text())["result"]
    assert result["metric"] == "mse" and result["n"] == 5 and math.isfinite(result["mean"])


def test_eval_finetune_steps_apply_in_adapt_only():
    ep = blob_episode(torch.Generator().manual_seed(7), k_shot=2)
    algo = generator(finetune_steps=0, eval_finetune_steps=3, finetune_lr=0.05)
    randomise(algo.to_weight, std=3.0), randomise(algo.to_bias, 2, std=3.0)
    zs, zq = algo.backbone(ep.support_x), algo.backbone(ep.query_x)
    generated = algo.generate(zs, ep.support_y, 5)
    torch.testing.assert_close(algo.logits(ep.support_x, ep.support_y, ep.query_x, 5), linear_head(generated, zq))
    tuned = algo.adapt(ep.support_x, ep.support_y).head(ep.query_x)
    assert not torch.allclose(tuned["weight"], generated["weight"])
    with pytest.raises(ValueError, match="eval_finetune_steps"):
        generator(eval_finetune_steps=-2)


# ----------------------------------------------------------------- meta-batches of unequal episodes


def test_generator_and_cnp_take_a_list_of_episodes_of_different_shapes():
    """Each task of a list keeps its own shape (n_way, k_shot, n_query or number of points)."""
    from test_metric_common import assert_list_is_mean_of_episodes

    g = torch.Generator().manual_seed(3)
    episodes = [blob_episode(g, 3, 1, 2), blob_episode(g, 5, 2, 4)]
    algo = generator(finetune_steps=1)
    randomise(algo)
    assert_list_is_mean_of_episodes(algo, episodes)
    tasks = SinusoidTasks()
    points = [tasks.sample_batch(1, k, q, torch.Generator().manual_seed(k))[0] for k, q in ((5, 6), (10, 3))]
    assert_list_is_mean_of_episodes(cnp(), points)


def test_film_modulates_every_block_of_conv4_on_the_cpu_fast_path():
    """Conv4's CPU kernels bypass the first block's modules, so with FiLM's hooks on it the
    plain layers run: the same outputs as ``fast_cpu=False``, and block 0 is modulated."""
    from metalearn.models.film import film_sites, modulated

    torch.manual_seed(0)
    fast = Conv4(1, hidden=8, image_size=16)
    plain = Conv4(1, hidden=8, image_size=16, fast_cpu=False)
    plain.load_state_dict(fast.state_dict())
    x = torch.randn(10, 1, 16, 16)
    sites = [name for name, _ in film_sites(fast)]
    scales = [torch.full((8,), 2.0 if i == 0 else 1.0) for i in range(len(sites))]
    shifts = [torch.full((8,), 0.5 if i == 0 else 0.0) for i in range(len(sites))]
    with modulated(fast, sites, scales, shifts):
        a = fast(x, n_support=5)
    with modulated(plain, sites, scales, shifts):
        b = plain(x, n_support=5)
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, fast(x, n_support=5)), "block 0's modulation was skipped"
