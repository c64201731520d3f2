"""A learned rule as a ``torch.optim.Optimizer``, for ordinary training loops.

:class:`LearnedOptimizer` runs a rule (for example a :class:`~metalearn.optim.LSTMRule`
meta-trained by :func:`~metalearn.optim.train_learned_rule`) on the ``.grad`` of ordinary
parameters. The rule is used as it is: its parameters are read, never changed. Its per-parameter
state (the LSTM's hidden states, the MLP rule's momentum: the entries of its
:class:`~metalearn.optim.LearnedRuleState`) lives in ``optimizer.state`` and goes through
``state_dict()`` / ``load_state_dict()`` like Adam's moments; save the rule module itself with
its own ``state_dict()``.

Examples:
    >>> import torch
    >>> from metalearn.optim import LSTMRule
    >>> model = torch.nn.Linear(3, 1)
    >>> opt = LearnedOptimizer(model.parameters(), LSTMRule())
    >>> loss = model(torch.randn(8, 3)).pow(2).mean()
    >>> loss.backward(); opt.step(); opt.zero_grad()
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import Tensor

from metalearn.optim.learned_rules import LearnedRule, LearnedRuleState


class LearnedOptimizer(torch.optim.Optimizer):
    """Apply ``rule_module``'s rule to the ``.grad`` of ``params`` at every ``step()``.

    Args:
        params: Tensors to optimise, or ``(name, tensor)`` pairs such as
            ``model.named_parameters()`` (names matter for rules keyed by name, like
            :class:`~metalearn.optim.MetaSGDRule`; otherwise tensors are
            named ``"0"``, ``"1"``, ...).
        rule_module: The learned rule module; its parameters are used without gradients.

    Raises:
        ValueError: for an empty parameter list or repeated names.
    """

    def __init__(self, params: Iterable[Tensor] | Iterable[tuple[str, Tensor]],
                 rule_module: LearnedRule):
        items = list(params)
        if not items:
            raise ValueError("LearnedOptimizer got an empty parameter list: pass model.parameters()")
        if all(isinstance(it, tuple) for it in items):
            names, tensors = [n for n, _ in items], [t for _, t in items]
        else:
            names, tensors = [str(i) for i in range(len(items))], items
        if len(set(names)) != len(names):
            raise ValueError("LearnedOptimizer got repeated parameter names")
        super().__init__(tensors, defaults={})
        self.names = names
        self.rule_module = rule_module

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:
        """Update every parameter with the learned rule.

        Args:
            closure: Optional; re-evaluates the model and returns the loss.

        Raises:
            ValueError: if a parameter has no gradient (names it and says what to do), or the
                rule sits on another device than the parameters.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        tensors = [p for group in self.param_groups for p in group["params"]]
        missing = [n for n, p in zip(self.names, tensors) if p.grad is None]
        if missing:
            raise ValueError(f"parameters {missing} have no gradient: call loss.backward() before "
                             "step(), and leave parameters the loss does not use (or frozen ones) "
                             "out of the optimizer")
        rule_params = {k: v.detach() for k, v in self.rule_module.named_parameters()}
        first = next(iter(rule_params.values()), None)
        if first is not None and any(p.device != first.device for p in tensors):
            raise ValueError(f"the rule's parameters are on {first.device} but the optimised "
                             f"ones on {tensors[0].device}: move the rule with rule.to(device)")
        rule = self.rule_module.rule(rule_params)
        params = dict(zip(self.names, tensors))
        grads = {n: p.grad for n, p in params.items()}
        if any("rule_state" not in self.state[p] for p in tensors):
            state = rule.init(params)
        else:
            state = LearnedRuleState({n: self.state[p]["rule_state"] for n, p in params.items()})
        updates, state = rule.update(grads, state, params)
        for n, p in params.items():
            p.add_(updates[n])
            self.state[p]["rule_state"] = state.per_tensor[n]
        return loss
