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

Repetitions trained as one batch. The same loop trains the R repetitions of one configuration at once when their
runs meet here (:class:`Rendezvous`, set up by the executor): each role's R models become one
:class:`~benchmark.engine.stacked.Stacked` model, every repetition's step function is called in turn on its own
batch, the forward passes it asks for are computed for all R at the first request, and its updates are applied
for all R after the last repetition's step (one backward pass, one optimiser step). A step whose order that cannot
honour (a role used again after its own update within the step) raises :class:`NotBatchable`, and the runs are
trained one by one instead. Every stackable model goes through the stacked path, alone too, so a repetition's
numbers (dropout masks included: each role's own generator) do not depend on how it was batched (on a CPU; on a
GPU they depend on how many were packed together, see :mod:`benchmark.engine.stacked`).
"""

from __future__ import annotations

import copy
import functools
import math
import operator
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from benchmark.engine.stacked import Stacked, stackable
from benchmark.engine.timing import StopTraining
from benchmark.errors import NonFiniteLoss

FINAL = -1  # the epoch value of rows that describe the model a method ends with
CURVES = ("acc", "nll")  # per-epoch metrics of every classifier role, on the validation and test splits


class NotBatchable(RuntimeError):
    """These runs cannot be trained as one batch (the executor then trains them one by one)."""


class Batch:
    """One training batch of one repetition, as a method's step sees it."""

    def __init__(self, shared: SharedStep, rep: int):
        self._shared, self._rep = shared, rep
        repetition = shared.repetitions[rep]
        self.epoch = shared.epoch  # 0-based
        self.epochs = repetition.epochs
        self.step = shared.index  # 0-based, within the epoch
        self.idx = shared.idx[rep]  # positions in the training split (what a method indexes its targets with)
        self.y = repetition.labels[self.idx]
        self._x: dict[str, torch.Tensor] = {}
        self._calls: dict[tuple[str, str], int] = {}

    def x(self, role: str) -> torch.Tensor:
        """This batch in ``role``'s input view."""
        if role not in self._x:
            self._x[role] = self._shared.repetitions[self._rep].inputs[role][self.idx]
        return self._x[role]

    def model(self, role: str) -> nn.Module:
        """``role``'s model (a method that updates its parameters itself; not with repetitions batched)."""
        return self._shared.model(role, self._rep)

    def forward(self, role: str, call: str | None = None) -> torch.Tensor:
        """``role``'s output on this batch in training mode (``call``: a method of the model to use instead of
        ``forward``, e.g. one that returns raw subclass logits)."""
        return self._shared.output(self, role, call, train=True)

    def predict(self, role: str, call: str | None = None) -> torch.Tensor:
        """``role``'s output on this batch in inference mode, without gradient (Keras ``training=False``)."""
        return self._shared.output(self, role, call, train=False)

    def features(self, role: str, name: str) -> torch.Tensor:
        """The hidden feature ``name`` of ``role``'s architecture (:class:`benchmark.nn.Network`) on this batch, in
        training mode, with gradient: from the pass ``b.forward(role)`` returns (its latest in this step, or the
        next one if it has not been called yet), so the logits and the feature come from one forward pass."""
        return self._shared.features(self, role, name)

    def apply(self, role: str, x: torch.Tensor) -> torch.Tensor:
        """``role``'s model, in training mode, on a tensor of this step (e.g. a regressor on a hidden feature): a
        model given to ``run.fit`` that reads no input view (not a declared role, no entry in ``views``)."""
        return self._shared.apply(self, role, x)

    def update(self, parts: dict[str, dict[str, torch.Tensor]], loss: torch.Tensor | None = None) -> None:
        """One optimiser step for each role in ``parts`` on ``loss`` (default: the sum of their ``"loss"``
        parts). Every part is logged as ``train_<part>``, averaged over the epoch's steps. Partners' outputs must
        enter a role's loss detached, so that each role's gradient is that of its own loss."""
        if loss is None:
            loss = functools.reduce(operator.add, (parts[r]["loss"] for r in parts))
        for role, role_parts in parts.items():
            for name, value in role_parts.items():
                self._shared.repetitions[self._rep].accumulate(role, f"train_{name}", value.detach(), 1)
        self._shared.update(self._rep, list(parts), loss)

    def log(self, role: str, name: str, value: float | torch.Tensor, weight: float = 1) -> None:
        """A per-epoch value: the epoch's rows hold sum(value) / sum(weight) over its steps (``weight`` = a
        batch's size makes a running accuracy exact with a smaller last batch)."""
        value = value.detach() if torch.is_tensor(value) else value
        self._shared.repetitions[self._rep].accumulate(role, name, value, weight)


class RepetitionState:
    """One repetition's side of the loop: its run, models, inputs, labels, epoch sums and early-stopping state."""

    def __init__(self, run, models: dict[str, nn.Module], *, epochs: int, views: dict[str, str],
                 train_index: torch.Tensor | None):
        self.run, self.models, self.epochs, self.views = run, models, epochs, views
        labels = run.labels("train")
        self.labels = labels if train_index is None else labels[train_index]
        self.inputs = {}
        for role, view in views.items():
            if view is None:  # a model applied to the step's tensors (Batch.apply), not to the batch
                continue
            x = run.view(view, "train")
            self.inputs[role] = x if train_index is None else x[train_index]
        self.sums: dict[tuple[str, str], Any] = {}
        self.active = True  # False once early stopping ended this repetition
        self.best, self.best_state, self.best_epoch, self.waited, self.last_epoch = math.inf, None, -1, 0, -1

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


class SharedStep:
    """What the R repetitions' steps share within one batch: the models (plain or stacked), the outputs computed
    so far, and the updates waiting for the last repetition."""

    def __init__(self, models: RepetitionModels, epoch: int, index: int, idx: list[torch.Tensor]):
        self.models, self.repetitions, self.epoch, self.index = models, models.repetitions, epoch, index
        self.idx = idx
        self.outputs: dict[tuple[str, str, bool, int], tuple[torch.Tensor, dict[str, torch.Tensor]]] = {}
        self.pending: list[list[tuple[list[str], torch.Tensor]]] = [[] for _ in idx]
        self.updated: list[set[str]] = [set() for _ in idx]  # per repetition: roles updated in this step

    @property
    def deferred(self) -> bool:
        return len(self.idx) > 1

    def model(self, role: str, rep: int) -> nn.Module:
        if self.deferred or self.models.stacked:
            raise NotBatchable("a step that changes a model itself cannot be batched")
        return self.models.own[rep][role]

    def output(self, batch: Batch, role: str, call: str | None, *, train: bool) -> torch.Tensor:
        if self.deferred and role in self.updated[batch._rep]:
            raise NotBatchable(f"{role} is used again after its update in the same step")
        key = (role, call or "", train)
        count = batch._calls.get(key, 0)
        batch._calls[key] = count + 1
        return self._pass(batch, (*key, count))[0][batch._rep]

    def features(self, batch: Batch, role: str, name: str) -> torch.Tensor:
        if self.deferred and role in self.updated[batch._rep]:
            raise NotBatchable(f"{role} is used again after its update in the same step")
        count = max(batch._calls.get((role, "", True), 0) - 1, 0)
        features = self._pass(batch, (role, "", True, count))[1]
        if name not in features:
            raise KeyError(f"{role}'s model names no feature {name!r} (it names: {', '.join(features) or 'none'})")
        return features[name][batch._rep]

    def _pass(self, batch: Batch, key: tuple[str, str, bool, int]):
        """(output, named features) of every repetition's pass ``key``, computed at its first request."""
        if key not in self.outputs:
            role, call, train, _ = key
            xs = [batch.x(role)] if not self.deferred else \
                [repetition.inputs[role][idx] for repetition, idx in zip(self.repetitions, self.idx, strict=True)]
            self.outputs[key] = self.models.forward(role, call or None, xs, train)
        return self.outputs[key]

    def apply(self, batch: Batch, role: str, x: torch.Tensor) -> torch.Tensor:
        if self.deferred and role in self.updated[batch._rep]:
            raise NotBatchable(f"{role} is used again after its update in the same step")
        return self.models.apply(role, batch._rep, x)

    def update(self, rep: int, roles: list[str], loss: torch.Tensor) -> None:
        if not self.deferred:
            self.models.step_optimisers(roles, loss)
            return
        self.pending[rep].append((roles, loss))
        self.updated[rep].update(roles)

    def finish(self) -> None:
        """Apply the deferred updates: the u-th update of every repetition together."""
        if not self.deferred:
            return
        counts = {len(p) for p in self.pending}
        if len(counts) != 1:
            raise NotBatchable("the repetitions' steps made different numbers of updates")
        for u in range(counts.pop()):
            roles = [p[u][0] for p in self.pending]
            if any(r != roles[0] for r in roles):
                raise NotBatchable("the repetitions' steps updated different roles")
            self.models.step_optimisers(roles[0], functools.reduce(operator.add, (p[u][1] for p in self.pending)))


class RepetitionModels:
    """The models of every repetition, plain (one repetition, unstackable models) or stacked by role, and their
    optimisers: ``own[r][role]`` is repetition r's own module, ``stacked[role]`` all R of a role as one model."""

    def __init__(self, repetitions: list[RepetitionState], own: list[dict[str, nn.Module]], roles: list[str], lr,
                 adam_eps):
        self.repetitions, self.own, self.roles = repetitions, own, roles
        self.stacked: dict[str, Stacked] = {}
        if all(stackable(own[0][role]) for role in roles):
            for role in roles:
                generators = [repetition.run.device_generator("dropout", role) for repetition in repetitions]
                self.stacked[role] = Stacked([m[role] for m in own], generators)
        elif len(own) > 1:
            raise NotBatchable("only stackable models can be trained as a batch of repetitions")
        self.optimisers = {}
        if lr is not None:
            rates = lr if isinstance(lr, dict) else {role: lr for role in roles}
            for role, rate in rates.items():
                module = self.stacked.get(role) or own[0][role]
                params = [p for p in module.parameters() if p.requires_grad]
                self.optimisers[role] = torch.optim.Adam(params, lr=rate, eps=adam_eps)

    def train(self) -> None:
        for module in (self.stacked.values() if self.stacked else self.own[0].values()):
            module.train()

    def forward(self, role: str, call: str | None, xs: list[torch.Tensor], train: bool):
        """``[R, B, ...]``: every repetition's output on its own batch, and its named features (``[R, B, ...]``)."""
        if role in self.stacked:
            module = self.stacked[role]
            run = lambda inputs: module.forward_features(inputs, call)  # noqa: E731
        else:
            module = self.own[0][role]
            run = lambda inputs: _plain_pass(module, call, inputs[0])  # noqa: E731
        if train:
            return run(xs)
        with torch.no_grad():
            module.eval()
            try:
                return run(xs)
            finally:
                module.train()

    def apply(self, role: str, rep: int, x: torch.Tensor) -> torch.Tensor:
        if role in self.stacked:
            return self.stacked[role].apply_one(rep, x)
        return self.own[0][role](x)

    def step_optimisers(self, roles: list[str], loss: torch.Tensor) -> None:
        optimisers = [self.optimisers[r] for r in roles]
        for optimiser in optimisers:
            optimiser.zero_grad(set_to_none=True)
        loss.backward()
        for optimiser in optimisers:
            optimiser.step()

    def sync(self) -> None:
        """Write the stacked values back into every repetition's own models (to evaluate or save them)."""
        for stacked in self.stacked.values():
            stacked.unstack()

    def restore(self) -> None:
        for stacked in self.stacked.values():
            stacked.restack()


def _plain_pass(module: nn.Module, call: str | None, x: torch.Tensor):
    """An unstacked module's output (``[1, B, ...]``) and named features."""
    if call is None and hasattr(module, "forward_features"):
        out, features = module.forward_features(x)
        return out.unsqueeze(0), {name: f.unsqueeze(0) for name, f in features.items()}
    return (getattr(module, call) if call else module)(x).unsqueeze(0), {}


@dataclass
class _Request:
    run: Any
    models: dict[str, nn.Module]
    step: Callable[[Batch], None]
    options: dict[str, Any]


class Rendezvous:
    """Where the R runs of one batched task meet: each run's ``fit`` waits until all R have called it, the last
    to arrive trains all of them together, and each gets its own models back."""

    def __init__(self, reps: int, timeout: float = 600.0):
        self.reps, self.timeout = reps, timeout
        self.requests: list[_Request | None] = [None] * reps
        self.barrier = threading.Barrier(reps)
        self.error: BaseException | None = None
        self.result: list[dict[str, nn.Module]] | None = None

    def fit(self, index: int, request: _Request) -> dict[str, nn.Module]:
        self.requests[index] = request
        try:
            if self.barrier.wait(self.timeout) == 0:
                try:
                    self.result = _fit(self.requests)
                except BaseException as exc:  # noqa: B036 - every run of the batch gets it
                    self.error = exc
            self.barrier.wait(self.timeout)
        except threading.BrokenBarrierError:
            raise NotBatchable("a run of the batch failed before or during the fit") from self.error
        if isinstance(self.error, StopTraining):  # a step timer ended the batch's training: every run stops
            raise StopTraining from self.error
        if self.error is not None:
            raise NotBatchable(f"the batched fit failed: {self.error!r}") from self.error
        return self.result[index]

    def abort(self) -> None:
        self.barrier.abort()


def fit(run, models: dict[str, nn.Module], step: Callable[[Batch], None], **options) -> dict[str, nn.Module]:
    """Train ``models`` for ``epochs`` with ``step`` called on each batch (see the module docstring).

    Options: ``epochs``, ``batch_size`` (None: one full batch per epoch); ``lr``: Adam's learning rate for every
    role (a dict: per role; None: no optimiser, the step updates the models itself) and ``adam_eps`` (Keras's
    1e-7 by default); ``patience``: stop when ``monitor``'s (default: the only role's) validation NLL has not
    improved for that many epochs and restore every model's best weights (Keras ``EarlyStopping(
    monitor="val_loss", restore_best_weights=True)``); ``curves``: metrics logged per epoch on the validation and
    test splits for every classifier role (the test split only as a learning curve: nothing is chosen on it);
    ``drop_last``: drop each epoch's incomplete last batch (tf.data's ``drop_remainder=True``) unless the training
    split is smaller than one batch; ``shuffle``; ``views``: the input view per role (default: the roles' declared
    views); ``train_index``: train on these examples of the training split only.
    """
    request = _Request(run, models, step, options)
    group = getattr(run, "rendezvous", None)
    if group is not None:
        return group.fit(run.rendezvous_index, request)
    return _fit([request])[0]


DEFAULTS = {"batch_size": None, "lr": None, "adam_eps": 1e-7, "patience": None, "monitor": None, "drop_last": False,
            "shuffle": True, "curves": CURVES, "views": None, "train_index": None}


def _fit(requests: list[_Request]) -> list[dict[str, nn.Module]]:
    first = requests[0]
    unknown = set(first.options) - set(DEFAULTS) - {"epochs"}
    if unknown:
        raise TypeError(f"fit() got unknown options {sorted(unknown)}")
    options = {**DEFAULTS, **first.options}
    if any(r.options.keys() != first.options.keys() or
           any(_differs(r.options[k], first.options[k]) for k in first.options) for r in requests[1:]):
        raise NotBatchable("the repetitions asked for different fits")
    run0, roles = first.run, list(first.models)
    declared = run0.roles
    views = {role: (options["views"] or {}).get(role) or (declared[role].view if role in declared else None)
             for role in roles}
    has_val = run0.data.size("val") > 0
    patience, monitor = options["patience"], options["monitor"]
    if patience is not None and not has_val:
        raise ValueError("early stopping needs a validation split (validation='none' has none)")
    if patience is not None and monitor is None and len(roles) != 1:
        raise ValueError("early stopping with several models needs monitor=<role>")
    if monitor is None and len(roles) == 1 and has_val:
        monitor = roles[0]  # a single model's best epoch is logged even without early stopping
    repetitions = [RepetitionState(r.run, r.models, epochs=options["epochs"], views=views,
                                   train_index=options["train_index"]) for r in requests]
    models = RepetitionModels(repetitions, [r.models for r in requests], roles, options["lr"], options["adam_eps"])
    n = len(repetitions[0].labels)
    size = n if options["batch_size"] is None else options["batch_size"]
    drop_last = options["drop_last"] and n >= size
    curves = options["curves"]
    classifiers = [role for role in roles if role in declared and declared[role].classifier]
    evaluate_each_epoch = bool(curves and classifiers) or patience is not None
    for epoch in range(options["epochs"]):
        models.train()
        orders = [repetition.run.batches(size, epoch=epoch, n=n, shuffle=options["shuffle"], drop_last=drop_last,
                                         timed=repetition.active) for repetition in repetitions]
        for index, idx in enumerate(zip(*orders)):
            shared = SharedStep(models, epoch, index, list(idx))
            for rep, request in enumerate(requests):
                request.step(Batch(shared, rep))
            shared.finish()
        models.sync()
        for repetition in repetitions:
            sums = repetition.flush(epoch)
            if not repetition.active:
                continue
            repetition.last_epoch = epoch
            for (role, name), value in sums.items():
                repetition.run.log(role, name, value, epoch)
            if evaluate_each_epoch:
                _evaluate_epoch(repetition, epoch, classifiers, curves, has_val, monitor, patience)
        if not any(repetition.active for repetition in repetitions):
            break
    for repetition in repetitions:
        if repetition.best_state is not None:
            for role, model in repetition.models.items():
                model.load_state_dict(repetition.best_state[role])
        if evaluate_each_epoch:
            for role in roles:
                repetition.run.log(role, "epochs_trained", repetition.last_epoch + 1)
            if monitor is not None:
                repetition.run.log(monitor, "best_epoch", repetition.best_epoch)
    return [repetition.models for repetition in repetitions]


def _differs(a, b) -> bool:
    if torch.is_tensor(a) or torch.is_tensor(b):
        return not (torch.is_tensor(a) and torch.is_tensor(b) and torch.equal(a, b))
    return a != b


def _evaluate_epoch(repetition: RepetitionState, epoch: int, classifiers, curves, has_val: bool, monitor,
                    patience) -> None:
    run = repetition.run
    scores = {}
    splits = (("val", "test") if has_val else ("test",)) if curves else ()
    for role in classifiers:
        for split in splits:
            result = run.evaluate(repetition.models[role], repetition.views[role], split)
            scores[role, split] = result
            for metric in curves:
                run.log(role, f"{split}_{metric}", result[metric], epoch)
    if monitor is None:
        return
    val = scores.get((monitor, "val")) or run.evaluate(repetition.models[monitor], repetition.views[monitor], "val")
    if val["nll"] < repetition.best:
        repetition.best, repetition.best_epoch, repetition.waited = val["nll"], epoch, 0
        if patience is not None:
            repetition.best_state = {role: copy.deepcopy(m.state_dict()) for role, m in repetition.models.items()}
    else:
        repetition.waited += 1
        if patience is not None and repetition.waited >= patience:
            repetition.active = False
