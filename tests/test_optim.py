"""metalearn.optim's update rules: every state is a named type, and chain composes them."""

import pytest
import torch
from torch.func import vmap

from metalearn.optim import (
    ChainState,
    EmptyState,
    LearnedRuleState,
    LSTMRule,
    MetaSGDRule,
    MLPRule,
    chain,
    clip_by_global_norm,
    meta_sgd,
    scale,
    sgd,
    unroll,
)


def params_and_grads():
    g = torch.Generator().manual_seed(0)
    params = {"w": torch.randn(2, 3, generator=g), "b": torch.randn(3, generator=g)}
    grads = {k: torch.randn(v.shape, generator=g) for k, v in params.items()}
    return params, grads


RULES = {
    "sgd": (lambda: sgd(0.1), EmptyState),
    "meta_sgd": (lambda: meta_sgd({"w": torch.full((2, 3), 0.1), "b": torch.full((3,), 0.2)}), EmptyState),
    "scale": (lambda: scale(2.0), EmptyState),
    "clip_by_global_norm": (lambda: clip_by_global_norm(1.0), EmptyState),
    "chain": (lambda: chain(scale(2.0), sgd(0.1)), ChainState),
    "lstm": (lambda: LSTMRule(hidden_size=3).rule(), LearnedRuleState),
    "mlp": (lambda: MLPRule(hidden_size=4).rule(), LearnedRuleState),
    "meta_sgd_rule": (lambda: MetaSGDRule({"w": (2, 3), "b": (3,)}).rule(), LearnedRuleState),
}


@pytest.mark.parametrize("name", RULES)
def test_every_rule_state_is_its_named_type(name):
    make, state_type = RULES[name]
    rule = make()
    params, grads = params_and_grads()
    state = rule.init(params)
    assert type(state) is state_type
    for _ in range(2):
        updates, state = rule.update(grads, state, params)
        assert type(state) is state_type
        assert updates.keys() == grads.keys()
    if state_type is LearnedRuleState:  # one entry per optimised tensor
        assert state.per_tensor.keys() == params.keys()


def test_chain_composes_the_typed_states_of_its_rules():
    torch.manual_seed(0)
    mlp = MLPRule(hidden_size=4)
    rule = chain(clip_by_global_norm(1.0), mlp.rule(), scale(0.5))
    params, grads = params_and_grads()
    state = rule.init(params)
    assert [type(s) for s in state.states] == [EmptyState, LearnedRuleState, EmptyState]
    updates, new = rule.update(grads, state, params)
    assert [type(s) for s in new.states] == [EmptyState, LearnedRuleState, EmptyState]
    # The same as applying the three rules by hand, each on the previous one's output.
    clipped, _ = clip_by_global_norm(1.0).update(grads, EmptyState(), params)
    learned, momentum = mlp.rule().update(clipped, mlp.rule().init(params), params)
    for k in params:
        assert torch.allclose(updates[k], 0.5 * learned[k])
        assert torch.equal(new.states[1].per_tensor[k], momentum.per_tensor[k])


def test_typed_states_go_through_vmap_autograd_and_unroll():
    """NamedTuple states are pytrees: vmap maps over them, gradients reach the rule through
    them, and unroll detaches them between steps."""
    torch.manual_seed(0)
    lstm = LSTMRule(hidden_size=3)
    w = dict(lstm.named_parameters())
    rule = chain(clip_by_global_norm(10.0), lstm.rule(w))
    params = {"theta": torch.randn(4, 5)}  # 4 tasks

    def one_task(theta):
        p = {"theta": theta}
        state = rule.init(p)
        for _ in range(2):
            grads = {"theta": 2 * p["theta"]}
            updates, state = rule.update(grads, state, p)
            p = {"theta": p["theta"] + updates["theta"]}
        return p["theta"].pow(2).sum(), state

    losses, states = vmap(one_task)(params["theta"])
    assert type(states) is ChainState and type(states.states[1]) is LearnedRuleState
    assert states.states[1].per_tensor["theta"][0].shape == (4, 5, 3)  # (task, n, hidden)
    grads = torch.autograd.grad(losses.sum(), list(w.values()))
    assert all(torch.isfinite(g).all() for g in grads) and any(g.abs().sum() > 0 for g in grads)

    def loss_fn(p):
        return p["theta"].pow(2).sum(-1)

    _, state, _ = unroll(rule, loss_fn, params, rule.init(params), 3)
    assert type(state) is ChainState and type(state.states[1]) is LearnedRuleState
    assert not any(t.requires_grad for t in state.states[1].per_tensor["theta"])
