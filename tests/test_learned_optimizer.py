"""Learned optimizers: the rules, truncated-BPTT meta-training, MAML integration, the wrapper."""

import copy
import math

import pytest
import torch
from torch import nn

from metalearn.algorithms import ALGORITHMS
from metalearn.algorithms.learned_optimizer import LearnedOptimizerMAML, LearnedOptimizerMAMLConfig
from metalearn.data import SinusoidTasks
from metalearn.models import MLP
from metalearn.optim import (
    BlobMLPFamily,
    LearnedOptimizer,
    LSTMRule,
    MetaSGDRule,
    MLPRule,
    Optimizee,
    QuadraticFamily,
    RuleTrainingConfig,
    SinusoidMLPFamily,
    evaluate_rule,
    lstm_cell,
    preprocess_gradients,
    train_learned_rule,
    unroll,
)


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def quadratics(n_tasks=2, dim=2, seed=0, dtype=torch.float32):
    """Tiny ||W theta - y||^2 problems built by hand (any dtype)."""
    g = torch.Generator().manual_seed(seed)
    w, y, theta = (torch.randn(n_tasks, *shape, generator=g, dtype=dtype)
                   for shape in ((dim, dim), (dim,), (dim,)))
    return Optimizee({"theta": theta}, lambda p: ((w @ p["theta"][..., None])[..., 0] - y).pow(2).sum(-1))


def test_preprocessing_follows_the_paper():
    p = 10.0
    g = torch.tensor([2.0, -3e-3, 1e-5, -1e-6, 0.0], dtype=torch.float64)
    out = preprocess_gradients(g, p)
    assert out.shape == (5, 2)
    # |g| >= e^-p: (log|g| / p, sign g); below: (-1, e^p g).
    assert torch.allclose(out[:2, 0], torch.log(g[:2].abs()) / p)
    assert out[:2, 1].tolist() == [1.0, -1.0]
    assert out[2:, 0].tolist() == [-1.0, -1.0, -1.0]
    assert torch.allclose(out[2:, 1], g[2:] * math.exp(p))
    # Finite gradients everywhere, including g = 0 (the discarded log branch is clamped).
    g.requires_grad_()
    (grad,) = torch.autograd.grad(preprocess_gradients(g, p).sum(), g)
    assert torch.isfinite(grad).all()


def test_functional_lstm_cell_equals_nn_lstmcell():
    torch.manual_seed(0)
    cell = nn.LSTMCell(2, 5)
    x, h, c = torch.randn(7, 2), torch.randn(7, 5), torch.randn(7, 5)
    params = {f"c.{k}": v for k, v in cell.named_parameters()}
    h1, c1 = lstm_cell(x, h, c, params, "c.")
    h2, c2 = cell(x, (h, c))
    assert torch.allclose(h1, h2, atol=1e-6) and torch.allclose(c1, c2, atol=1e-6)


def test_lstm_rule_is_coordinatewise():
    """Each coordinate's update depends only on its own gradient history, whatever tensor it
    sits in: splitting the parameters differently gives the same updates."""
    torch.manual_seed(0)
    rule = LSTMRule().rule()
    g = torch.randn(3, 6)
    one = {"w": torch.zeros(3, 6)}
    split = {"a": torch.zeros(2, 6), "b": torch.zeros(6)}
    s1, s2 = rule.init(one), rule.init(split)
    for _ in range(3):
        u1, s1 = rule.update({"w": g}, s1, one)
        u2, s2 = rule.update({"a": g[:2], "b": g[2]}, s2, split)
        assert torch.allclose(u1["w"], torch.cat([u2["a"], u2["b"][None]]), atol=1e-6)
        g = g * 0.5 - 0.1


@pytest.mark.parametrize("make", [lambda: LSTMRule(hidden_size=3), lambda: MLPRule(hidden_size=4),
                                  lambda: MetaSGDRule({"theta": (2,)}, lr=0.05)],
                         ids=["lstm", "mlp", "meta_sgd"])
def test_meta_gradient_matches_finite_differences(make):
    """The unrolled loss is differentiable end to end in the rule's own parameters (exact,
    second-order meta-gradient, float64)."""
    torch.manual_seed(0)
    module = make().double()
    problem = quadratics(dtype=torch.float64)
    names = [n for n, _ in module.named_parameters()]

    def final_loss(*tensors):
        rule = module.rule(dict(zip(names, tensors)))
        _, _, losses = unroll(rule, problem.loss, problem.params, rule.init(problem.params), 3,
                              meta=True, second_order=True)
        return losses[1:].mean()

    inputs = tuple(p.detach().clone().requires_grad_() for p in module.parameters())
    assert torch.autograd.gradcheck(final_loss, inputs, eps=1e-6, atol=1e-5, rtol=1e-4)


def test_first_order_meta_gradient_treats_optimizee_gradients_as_constants():
    """second_order=False drops exactly the d(grad f)/d(phi) terms: one step from the start
    point, where the gradient does not depend on phi yet, both agree."""
    torch.manual_seed(0)
    module = LSTMRule(hidden_size=4).double()
    problem = quadratics(dtype=torch.float64)
    grads = []
    for second_order in (False, True):
        rule = module.rule()
        _, _, losses = unroll(rule, problem.loss, problem.params, rule.init(problem.params), 1,
                              meta=True, second_order=second_order)
        grads.append(torch.autograd.grad(losses[1:].mean(), list(module.parameters())))
    assert all(torch.allclose(a, b) for a, b in zip(*grads))


@pytest.fixture(scope="module")
def trained_lstm():
    """An LSTM rule meta-trained for ~2 s on 10-d quadratics (horizon 40, unroll 10)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    lstm = LSTMRule()
    history = train_learned_rule(lstm, QuadraticFamily(dim=10), RuleTrainingConfig(
        horizon=40, unroll=10, trajectories=25, n_tasks=64, meta_lr=1e-2))
    torch.set_num_threads(threads)
    return lstm, history


def test_meta_training_beats_tuned_sgd_on_held_out_quadratics(trained_lstm):
    lstm, history = trained_lstm
    assert len(history) == 25 * 4 and all(math.isfinite(h) for h in history)
    held_out = QuadraticFamily(dim=10).sample(64, torch.Generator().manual_seed(999))

    def final(rule):
        return unroll(rule, held_out.loss, held_out.params, rule.init(held_out.params), 40)[2][-1].mean()

    from metalearn.optim.update_rules import sgd

    best_sgd = min(final(sgd(lr)) for lr in (0.003, 0.01, 0.02))
    assert final(lstm.rule()) < best_sgd


def test_families_give_one_loss_per_task_and_independent_problems():
    g = torch.Generator().manual_seed(0)
    for family in (QuadraticFamily(dim=3), BlobMLPFamily(in_features=4, n_classes=3, hidden=5, n_points=12),
                   SinusoidMLPFamily(hidden=(6,), n_points=5)):
        problem = family.sample(3, g)
        losses = problem.loss(problem.params)
        assert losses.shape == (3,) and torch.isfinite(losses).all()
        # Moving task 0's parameters leaves the other tasks' losses unchanged.
        moved = {k: torch.cat([v[:1] + 0.1, v[1:]]) for k, v in problem.params.items()}
        after = problem.loss(moved)
        assert after[0] != losses[0] and torch.equal(after[1:], losses[1:])


def test_unroll_longer_than_horizon_is_refused():
    with pytest.raises(ValueError, match="unroll <= horizon"):
        RuleTrainingConfig(horizon=10, unroll=20)


def test_parameter_without_gradient_is_named():
    problem = quadratics()
    params = {**problem.params, "unused": torch.zeros(2, 3)}
    rule = LSTMRule().rule()
    with pytest.raises(ValueError, match=r"\['unused'\] get no gradient"):
        unroll(rule, problem.loss, params, rule.init(params), 2)
    model = nn.Linear(2, 1)
    opt = LearnedOptimizer(model.named_parameters(), LSTMRule())
    model.weight.sum().backward()  # the bias gets no gradient
    with pytest.raises(ValueError, match=r"\['bias'\] have no gradient.*backward"):
        opt.step()


def test_non_finite_meta_loss_says_reduce_unroll_or_learning_rate():
    exploding = LSTMRule(output_scale=1e30)
    with pytest.raises(FloatingPointError, match="Reduce the unroll length or the meta learning rate"):
        train_learned_rule(exploding, QuadraticFamily(dim=3), RuleTrainingConfig(horizon=6, unroll=3,
                                                                     trajectories=1, n_tasks=2))


def test_wrapper_equals_functional_unroll():
    """LearnedOptimizer in an ordinary loop takes exactly the functional rule's steps."""
    torch.manual_seed(0)
    module = MLPRule()
    problem = quadratics(n_tasks=3, dim=4)
    theta = nn.Parameter(problem.params["theta"].clone())
    opt = LearnedOptimizer([("theta", theta)], module)
    for _ in range(5):
        opt.zero_grad()
        problem.loss({"theta": theta}).sum().backward()
        opt.step()
    rule = module.rule()
    params, _, _ = unroll(rule, problem.loss, problem.params, rule.init(problem.params), 5)
    assert torch.allclose(theta.detach(), params["theta"], atol=1e-6)


def test_wrapper_with_meta_sgd_rule_is_sgd():
    torch.manual_seed(0)
    a, b = nn.Linear(3, 2), nn.Linear(3, 2)
    b.load_state_dict(a.state_dict())
    rates = MetaSGDRule({k: v.shape for k, v in a.named_parameters()}, lr=0.1)
    opts = [LearnedOptimizer(a.named_parameters(), rates), torch.optim.SGD(b.parameters(), lr=0.1)]
    x = torch.randn(5, 3)
    for _ in range(3):
        for model, opt in zip((a, b), opts):
            opt.zero_grad()
            model(x).pow(2).sum().backward()
            opt.step()
    assert torch.allclose(a.weight, b.weight) and torch.allclose(a.bias, b.bias)


def test_wrapper_trains_a_tiny_model_with_a_meta_trained_lstm(trained_lstm):
    lstm, _ = trained_lstm
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    x = torch.randn(64, 4)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]]) + 0.3
    opt = LearnedOptimizer(model.parameters(), lstm)
    losses = []
    for _ in range(40):
        opt.zero_grad()
        loss = (model(x) - y).pow(2).mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 1e-2 * losses[0]


@pytest.mark.parametrize("make", [LSTMRule, MLPRule])
def test_state_dict_round_trip(make):
    """Resuming from saved optimizer and rule state dicts equals running uninterrupted."""
    torch.manual_seed(0)
    module = make()
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))
    x, y = torch.randn(16, 3), torch.randn(16, 1)

    def run(model, opt, steps):
        for _ in range(steps):
            opt.zero_grad()
            (model(x) - y).pow(2).mean().backward()
            opt.step()

    opt = LearnedOptimizer(model.parameters(), module)
    run(model, opt, 3)
    saved_model, saved_opt = copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict())
    saved_rule = copy.deepcopy(module.state_dict())
    run(model, opt, 3)

    model2 = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))
    model2.load_state_dict(saved_model)
    module2 = make()
    module2.load_state_dict(saved_rule)
    opt2 = LearnedOptimizer(model2.parameters(), module2)
    opt2.load_state_dict(saved_opt)
    run(model2, opt2, 3)
    for p, q in zip(model.parameters(), model2.parameters()):
        assert torch.equal(p, q)


def sinusoid_batch(n_tasks=3, seed=0):
    return SinusoidTasks().sample_batch(n_tasks, 5, 6, torch.Generator().manual_seed(seed))


def test_maml_with_learned_rule_meta_learns_init_and_rule_jointly():
    torch.manual_seed(0)
    algo = ALGORITHMS["learned_optimizer"](MLP(1, (8,), 1),
                                           config=LearnedOptimizerMAMLConfig(inner_steps=2))
    batch = sinusoid_batch()
    before = copy.deepcopy(algo.state_dict())
    loss, metrics = algo.meta_loss(batch)
    assert set(metrics) == {"loss", "mse"}
    loss.backward()
    for name, p in algo.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert any(p.grad.abs().sum() > 0 for p in algo.rule_module.parameters())
    predictor = algo.adapt(batch.support_x[0], batch.support_y[0])
    assert predictor(batch.query_x[0]).shape == (6, 1)
    assert all(torch.equal(v, algo.state_dict()[k]) for k, v in before.items())


def test_maml_with_learned_rule_loop_equals_vmap():
    torch.manual_seed(0)
    net = MLP(1, (8,), 1)
    batch = sinusoid_batch()
    grads = []
    for mode in ("loop", "vmap"):
        algo = LearnedOptimizerMAML(net, LearnedOptimizerMAMLConfig(inner_steps=2, task_mode=mode))
        torch.manual_seed(1)
        algo.rule_module.load_state_dict(LSTMRule().state_dict())
        loss, _ = algo.meta_loss(batch)
        grads.append(torch.autograd.grad(loss, list(algo.parameters())))
    for a, b in zip(*grads):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-4)


def test_maml_with_learned_rule_lowers_the_query_loss():
    torch.manual_seed(0)
    algo = LearnedOptimizerMAML(MLP(1, (16,), 1), LearnedOptimizerMAMLConfig(inner_steps=3))
    opt = torch.optim.Adam(algo.parameters(), lr=1e-2)
    held_out = sinusoid_batch(8, seed=123)
    with torch.no_grad():
        start = algo.meta_loss(held_out)[0].item()
    for step in range(60):
        loss, _ = algo.meta_loss(sinusoid_batch(4, seed=step))
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        assert algo.meta_loss(held_out)[0].item() < 0.6 * start


def test_bad_rule_name():
    with pytest.raises(ValueError, match="choose one of"):
        LearnedOptimizerMAML(MLP(1, (4,), 1), LearnedOptimizerMAMLConfig(rule="adam"))


def test_validation_keeps_the_best_rule():
    """With validation problems the best rule seen is kept (same seeds, so both runs follow the
    same trajectory and differ only in which rule is returned)."""
    family = QuadraticFamily(dim=4)
    val = family.sample(8, torch.Generator().manual_seed(5))
    cfg = RuleTrainingConfig(horizon=10, unroll=5, trajectories=6, n_tasks=8, meta_lr=3e-2, eval_every=1)
    modules = []
    for validation in (None, val):
        torch.manual_seed(0)
        module = MLPRule()
        train_learned_rule(module, family, cfg, validation=validation)
        modules.append(module)
    last, best = (evaluate_rule(m, val, 10)[1:].mean() for m in modules)
    assert best < last  # here the last rule is worse (0.89 vs 0.84): the best one was restored


def test_wrapper_refuses_a_rule_on_another_device():
    model = nn.Linear(2, 1)
    opt = LearnedOptimizer(model.parameters(), LSTMRule().to("meta"))
    model(torch.randn(3, 2)).sum().backward()
    with pytest.raises(ValueError, match=r"rule.to\(device\)"):
        opt.step()


def test_divergence_keeps_the_best_validated_rule():
    """A run stopped by a non-finite meta-loss leaves the rule at its best validated state: the
    same as a run that ends cleanly just before the bad trajectory."""
    family = QuadraticFamily(dim=3)
    val = family.sample(4, torch.Generator().manual_seed(5))

    class Poisoned:
        def __init__(self):
            self.calls = 0

        def sample(self, n_tasks, g, device="cpu"):
            self.calls += 1
            problem = family.sample(n_tasks, g, device)
            if self.calls <= 3:
                return problem
            return Optimizee(problem.params, lambda p: problem.loss(p) * math.inf)

    cfg = dict(horizon=6, unroll=3, n_tasks=4, meta_lr=3e-2, eval_every=1)
    states = []
    for fam, trajectories in ((Poisoned(), 5), (family, 3)):
        torch.manual_seed(0)
        module = MLPRule()
        if trajectories == 5:
            with pytest.raises(FloatingPointError, match="trajectory 3"):
                train_learned_rule(module, fam, RuleTrainingConfig(trajectories=5, **cfg), validation=val)
        else:
            train_learned_rule(module, fam, RuleTrainingConfig(trajectories=3, **cfg), validation=val)
        states.append(module.state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[1])


def test_state_dict_saved_under_the_old_optimizer_keys_still_loads():
    """The rule module was the attribute ``optimizer`` until it became ``rule_module``: a state
    dict saved then (keys ``optimizer.*``) loads into today's class, strictly, to equal values."""
    torch.manual_seed(0)
    saved = LearnedOptimizerMAML(MLP(1, (8,), 1), LearnedOptimizerMAMLConfig(rule="mlp", hidden_size=4))
    new_keys = saved.state_dict()
    assert any(k.startswith("rule_module.") for k in new_keys)
    assert not any(k.startswith("optimizer.") for k in new_keys)
    old = {k.replace("rule_module.", "optimizer.", 1) if k.startswith("rule_module.") else k: v
           for k, v in new_keys.items()}
    torch.manual_seed(1)
    algo = LearnedOptimizerMAML(MLP(1, (8,), 1), LearnedOptimizerMAMLConfig(rule="mlp", hidden_size=4))
    assert not all(torch.equal(v, algo.state_dict()[k]) for k, v in new_keys.items())
    result = algo.load_state_dict(old)
    assert not result.missing_keys and not result.unexpected_keys
    assert all(torch.equal(v, algo.state_dict()[k]) for k, v in new_keys.items())
    # Nested under a prefix (an algorithm inside another module) the remap applies as well.
    outer = torch.nn.ModuleDict({"algo": algo})
    outer.load_state_dict({f"algo.{k}": torch.zeros_like(v) for k, v in old.items()})
    assert all(not v.any() for v in algo.rule_module.state_dict().values())


def test_run_checkpoint_saved_under_the_old_optimizer_keys_still_loads():
    """``metalearn eval`` / ``--resume`` of a run saved before the rename: the run checkpoint's
    key check lets the module map ``optimizer.*`` itself; a checkpoint of another model is
    still refused and leaves the model untouched."""
    from metalearn.train.checkpoint import CheckpointError, load_model_state

    torch.manual_seed(0)
    saved = LearnedOptimizerMAML(MLP(1, (8,), 1), LearnedOptimizerMAMLConfig(rule="mlp", hidden_size=4))
    old = {k.replace("rule_module.", "optimizer.", 1): v for k, v in saved.state_dict().items()}
    torch.manual_seed(1)
    algo = LearnedOptimizerMAML(MLP(1, (8,), 1), LearnedOptimizerMAMLConfig(rule="mlp", hidden_size=4))
    load_model_state(algo, old)
    assert all(torch.equal(v, algo.state_dict()[k]) for k, v in saved.state_dict().items())
    before = {k: v.clone() for k, v in algo.state_dict().items()}
    wrong = {**old, "extra.weight": torch.zeros(1)}
    with pytest.raises(CheckpointError, match="different model"):
        load_model_state(algo, wrong)
    assert all(torch.equal(v, algo.state_dict()[k]) for k, v in before.items())
