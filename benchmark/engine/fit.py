"""The one training loop: any number of models by role, each with its own input view and optimiser, updated by a
method-supplied step in the method's own order.

    def step(b):                                   # one batch; the method decides the order of updates
        target = b.predict("B")                    # eval mode, no gradient (Keras training=False)
        b.update({"A": loss_a(b.forward("A"), target, b.y)})

    models = run.fit({"A": model_a, "B": model_b}, step, epochs=30, batch_size=8, lr=0.01)

The harness owns the rest: batching (index batches whose order depends on the run's seed and the epoch only, so
it is paired across methods), step timing, logging each loss part as an epoch mean, finite checks, per-epoch
validation/test curves for every classifier role, early stopping on a role's validation NLL with the best weights
restored, and the final evaluation (after ``train`` returns). A forward-only method (no optimiser) uses the same
loop: ``lr=None`` and the step updates ``b.model(role)`` itself.
"""

from __future__ import annotations

import copy
import functools
import math
import operator
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from benchmark.errors import NonFiniteLoss

FINAL = -1  # the epoch value of rows that describe the model a method ends with
CURVES = ("acc", "nll")  # per-epoch metrics of every classifier role, on the validation and test splits


class Batch:
    """One training batch, as a method's step sees it."""

    def __init__(self, loop: _Loop, epoch: int, step: int, idx: torch.Tensor):
        self._loop = loop
        self.epoch = epoch  # 0-based
        self.epochs = loop.epochs
        self.step = step  # 0-based, within the epoch
        self.idx = idx  # positions in the training split (what a method indexes its precomputed targets with)
        self.y = loop.labels[idx]
        self._x: dict[str, torch.Tensor] = {}

    def x(self, role: str) -> torch.Tensor:
        """This batch in ``role``'s input view."""
        if role not in self._x:
            self._x[role] = self._loop.inputs[role][self.idx]
        return self._x[role]

    def model(self, role: str) -> nn.Module:
        return self._loop.models[role]

    def forward(self, role: str, call: str | None = None) -> torch.Tensor:
        """``role``'s output on this batch in training mode (``call``: a method of the model to use instead of
        ``forward``, e.g. one that returns raw subclass logits)."""
        model = self._loop.models[role]
        return (getattr(model, call) if call else model)(self.x(role))

    @torch.no_grad()
    def predict(self, role: str, call: str | None = None) -> torch.Tensor:
        """``role``'s output on this batch in inference mode, without gradient (Keras ``training=False``)."""
        model = self._loop.models[role]
        model.eval()
        try:
            return (getattr(model, call) if call else model)(self.x(role))
        finally:
            model.train()

    def update(self, parts: dict[str, dict[str, torch.Tensor]], loss: torch.Tensor | None = None) -> None:
        """One optimiser step for each role in ``parts`` on ``loss`` (default: the sum of their ``"loss"``
        parts). Every part is logged as ``train_<part>``, averaged over the epoch's steps. Partners' outputs must
        enter a role's loss detached, so that each role's gradient is that of its own loss."""
        roles = list(parts)
        if loss is None:
            loss = functools.reduce(operator.add, (parts[r]["loss"] for r in roles))
        optimisers = [self._loop.optimisers[r] for r in roles]
        for optimiser in optimisers:
            optimiser.zero_grad(set_to_none=True)
        loss.backward()
        for optimiser in optimisers:
            optimiser.step()
        for role, role_parts in parts.items():
            for name, value in role_parts.items():
                self._loop.accumulate(role, f"train_{name}", value.detach(), 1)

    def log(self, role: str, name: str, value: float | torch.Tensor, weight: float = 1) -> None:
        """A per-epoch value: the epoch's rows hold sum(value) / sum(weight) over its steps (``weight`` = a
        batch's size makes a running accuracy exact with a smaller last batch)."""
        self._loop.accumulate(role, name, value.detach() if torch.is_tensor(value) else value, weight)


class _Loop:
    def __init__(self, run, models: dict[str, nn.Module], *, epochs: int, views: dict[str, str],
                 optimisers: dict[str, torch.optim.Optimizer], train_index: torch.Tensor | None):
        self.run, self.models, self.epochs, self.views, self.optimisers = run, models, epochs, views, optimisers
        labels = run.labels("train")
        self.labels = labels if train_index is None else labels[train_index]
        self.inputs = {}
        for role, view in views.items():
            x = run.view(view, "train")
            self.inputs[role] = x if train_index is None else x[train_index]
        self.sums: dict[tuple[str, str], Any] = {}

    def accumulate(self, role: str, name: str, value, weight: float) -> None:
        total, weights = self.sums.get((role, name), (0.0, 0))
        self.sums[role, name] = (total + value, weights + weight)

    def flush(self, epoch: int) -> dict[tuple[str, str], float]:
        out = {}
        for (role, name), (total, weights) in self.sums.items():
            value = float(total) / max(weights, 1)
            if not math.isfinite(value):
                raise NonFiniteLoss(f"{name.removeprefix('train_')} of {role} at epoch {epoch} became {value}")
            out[role, name] = value
        self.sums = {}
        return out


def adam(model: nn.Module, lr: float, eps: float) -> torch.optim.Optimizer:
    return torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr, eps=eps)


def fit(run, models: dict[str, nn.Module], step: Callable[[Batch], None], *, epochs: int, batch_size: int | None,
        lr: float | dict[str, float] | None = None, adam_eps: float = 1e-7, patience: int | None = None,
        monitor: str | None = None, drop_last: bool = False, shuffle: bool = True, curves: tuple[str, ...] = CURVES,
        views: dict[str, str] | None = None, train_index: torch.Tensor | None = None) -> dict[str, nn.Module]:
    """Train ``models`` for ``epochs`` with ``step`` called on each batch (see the module docstring).

    ``lr``: Adam's learning rate for every role (a dict: per role; None: no optimiser, the step updates the
    models itself), with Keras's epsilon by default. ``batch_size`` None is one full batch per epoch.
    ``patience``: stop when ``monitor``'s (default: the only role's) validation NLL has not improved for that many
    epochs and restore every model's best weights (Keras ``EarlyStopping(monitor="val_loss",
    restore_best_weights=True)``). ``curves``: metrics logged per epoch on the validation and test splits for every
    classifier role (the test split only as a learning curve: nothing is chosen on it). ``drop_last`` drops each
    epoch's incomplete last batch (tf.data's ``drop_remainder=True``) unless the training split is smaller than one
    batch. ``views``: the input view per role (default: the roles' declared views). ``train_index``: train on
    these examples of the training split only.
    """
    declared = run.roles
    views = {role: (views or {}).get(role) or declared[role].view for role in models}
    if lr is None:
        optimisers = {}
    else:
        rates = lr if isinstance(lr, dict) else {role: lr for role in models}
        optimisers = {role: adam(models[role], rates[role], adam_eps) for role in rates}
    has_val = run.data.size("val") > 0
    if patience is not None and not has_val:
        raise ValueError("early stopping needs a validation split (validation='none' has none)")
    if patience is not None and monitor is None and len(models) != 1:
        raise ValueError("early stopping with several models needs monitor=<role>")
    if monitor is None and len(models) == 1 and has_val:
        monitor = next(iter(models))  # a single model's best epoch is logged even without early stopping
    loop = _Loop(run, models, epochs=epochs, views=views, optimisers=optimisers, train_index=train_index)
    n = len(loop.labels)
    size = n if batch_size is None else batch_size
    classifiers = [role for role in models if role in declared and declared[role].classifier]
    evaluate_each_epoch = bool(curves and classifiers) or patience is not None
    best, best_state, best_epoch, waited, epoch = math.inf, None, -1, 0, -1
    for epoch in range(epochs):
        for model in models.values():
            model.train()
        for step_index, idx in enumerate(run.batches(size, epoch=epoch, n=n, shuffle=shuffle,
                                                     drop_last=drop_last and n >= size)):
            step(Batch(loop, epoch, step_index, idx))
        for (role, name), value in loop.flush(epoch).items():
            run.log(role, name, value, epoch)
        if not evaluate_each_epoch:
            continue
        scores = {}
        splits = (("val", "test") if has_val else ("test",)) if curves else ()
        for role in classifiers:
            for split in splits:
                result = run.evaluate(models[role], views[role], split)
                scores[role, split] = result
                for metric in curves:
                    run.log(role, f"{split}_{metric}", result[metric], epoch)
        if monitor is None:
            continue
        val = scores.get((monitor, "val")) or run.evaluate(models[monitor], views[monitor], "val")
        if val["nll"] < best:
            best, best_epoch, waited = val["nll"], epoch, 0
            if patience is not None:
                best_state = {role: copy.deepcopy(m.state_dict()) for role, m in models.items()}
        else:
            waited += 1
            if patience is not None and waited >= patience:
                break
    if best_state is not None:
        for role, model in models.items():
            model.load_state_dict(best_state[role])
    if evaluate_each_epoch:
        for role in models:
            run.log(role, "epochs_trained", epoch + 1 if epochs else 0)
        if monitor is not None:
            run.log(monitor, "best_epoch", best_epoch)
    return models
