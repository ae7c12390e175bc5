"""What the harness gives a method's ``train(run, cfg)``: data views, seeded builders and batch order, a timed batch
iterator, a supervised fit loop with early stopping, evaluation, logging, and cached models (the shared teacher)."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from benchmark import metrics as M
from benchmark import models
from benchmark.data import Dataset
from benchmark.spec import RunSpec, derive_seed, stable_hash
from benchmark.store import Store, atomic_torch_save, load_state
from benchmark.timing import StepTimer, timed_batches

FINAL = -1  # the epoch value of rows that describe the model a method ends with


class NonFiniteLoss(RuntimeError):
    pass


class RunContext:
    def __init__(self, spec: RunSpec, cfg, dataset: Dataset, store: Store, *, execute: Callable | None = None):
        self.spec = spec
        self.cfg = cfg
        self.data = dataset
        self.store = store
        self.rows: list[dict[str, Any]] = []
        self.timer = StepTimer()
        self.reference: dict[str, torch.Tensor] = {}  # teacher logits per split, for the agreement metric
        self._execute = execute  # runs a baseline spec (for the shared teacher); given by the runner

    # ---- identity and randomness ---------------------------------------------------------------------------
    @property
    def seed(self) -> int:
        return self.spec.seed

    @property
    def rep(self) -> int:
        return self.spec.rep

    def generator(self, *purpose: Any) -> torch.Generator:
        """A generator seeded by (run seed, purpose): the same purpose gives the same stream in every method."""
        return torch.Generator().manual_seed(derive_seed(self.seed, *purpose))

    # ---- data --------------------------------------------------------------------------------------------
    def view(self, spec: str, split: str) -> torch.Tensor:
        return self.data.view(spec, split)

    def labels(self, split: str) -> torch.Tensor:
        return self.data.labels(split)

    @property
    def num_classes(self) -> int:
        return self.data.num_classes

    def build(self, arch: str, view: str, **options) -> nn.Module:
        """``arch`` for this dataset's ``view``, initialised from (seed, arch, view, options): a method's student and
        the scratch student of the same architecture start from the same weights."""
        gen = self.generator("init", arch, view, stable_hash(options))
        model = models.build(arch, self.data.view_shape(view), self.num_classes, generator=gen, **options)
        model.build_args = {"arch": arch, "view": view, "options": options}
        return model

    def batches(self, batch_size: int, *, epoch: int, split: str = "train", shuffle: bool = True,
                drop_last: bool = False, stream: str = "order"):
        """Timed index batches over ``split``; the order depends on (seed, epoch) only, so it is paired."""
        gen = self.generator(stream, epoch)
        return timed_batches(self.data.size(split), batch_size, generator=gen, shuffle=shuffle, drop_last=drop_last,
                             timer=self.timer)

    # ---- logging and checks --------------------------------------------------------------------------------
    def log(self, role: str, metric: str, value: float, epoch: int = FINAL) -> None:
        self.rows.append({"role": role, "epoch": int(epoch), "metric": metric, "value": float(value)})

    def check_finite(self, value: float | torch.Tensor, what: str) -> None:
        v = float(value)
        if not math.isfinite(v):
            raise NonFiniteLoss(f"{what} became {v}")

    # ---- evaluation ----------------------------------------------------------------------------------------
    @torch.no_grad()
    def logits(self, model: nn.Module, view: str, split: str, chunk: int = 4096) -> torch.Tensor:
        was_training = model.training
        model.eval()
        x = self.view(view, split)
        out = torch.cat([model(x[i:i + chunk]) for i in range(0, len(x), chunk)])
        model.train(was_training)
        return out

    def evaluate(self, model: nn.Module, view: str, split: str) -> dict[str, float]:
        logits = self.logits(model, view, split)
        result = M.classification_metrics(logits, self.labels(split), self.num_classes)
        if split in self.reference:
            result["agreement"] = M.agreement(logits, self.reference[split])
        return result

    # ---- the supervised loop -------------------------------------------------------------------------------
    def fit(self, model: nn.Module, *, role: str, view: str, loss_fn: Callable, epochs: int, batch_size: int,
            lr: float, patience: int | None = None, adam_eps: float = 1e-7, parameters=None,
            curves: bool = True, drop_last: bool = False) -> nn.Module:
        """Adam on ``loss_fn(model, x, y, idx)`` (a tensor, or a dict with ``loss`` and named parts) for ``epochs``.

        With ``patience``, stops when the validation NLL has not improved for that many epochs and restores the best
        weights (Keras EarlyStopping(monitor="val_loss", restore_best_weights=True)). Logs per epoch: the training
        loss and its parts, and validation/test accuracy and NLL (test only for learning curves, never for choices).
        ``drop_last`` drops each epoch's incomplete last batch (as ``drop_remainder=True`` in tf.data), unless the
        training split is smaller than one batch.
        """
        x_train, y_train = self.view(view, "train"), self.labels("train")
        params = list(parameters if parameters is not None else model.parameters())
        optimizer = torch.optim.Adam(params, lr=lr, eps=adam_eps)
        best, best_state, best_epoch, waited = math.inf, None, -1, 0
        for epoch in range(epochs):
            model.train()
            sums: dict[str, torch.Tensor] = {}
            steps = 0
            for idx in self.batches(batch_size, epoch=epoch, drop_last=drop_last and len(y_train) >= batch_size):
                out = loss_fn(model, x_train[idx], y_train[idx], idx)
                parts = out if isinstance(out, dict) else {"loss": out}
                optimizer.zero_grad(set_to_none=True)
                parts["loss"].backward()
                optimizer.step()
                for k, v in parts.items():
                    sums[k] = sums.get(k, 0.0) + v.detach()
                steps += 1
            train = {k: float(v) / max(steps, 1) for k, v in sums.items()}
            self.check_finite(train["loss"], f"training loss of {role} at epoch {epoch}")
            if not curves and patience is None:
                continue  # nothing to log or choose: no evaluation
            val = self.evaluate(model, view, "val")
            if curves:
                for k, v in train.items():
                    self.log(role, f"train_{k}", v, epoch)
                test = self.evaluate(model, view, "test")
                self.log(role, "val_acc", val["acc"], epoch)
                self.log(role, "val_nll", val["nll"], epoch)
                self.log(role, "test_acc", test["acc"], epoch)
                self.log(role, "test_nll", test["nll"], epoch)
            if val["nll"] < best:
                best, best_epoch, waited = val["nll"], epoch, 0
                if patience is not None:
                    best_state = copy.deepcopy(model.state_dict())
            else:
                waited += 1
                if patience is not None and waited >= patience:
                    break
        if best_state is not None:
            model.load_state_dict(best_state)
        if curves:
            self.log(role, "epochs_trained", epoch + 1 if epochs else 0)
            self.log(role, "best_epoch", best_epoch)
        return model

    # ---- cached models -------------------------------------------------------------------------------------
    def baseline_model(self, baseline: str, role: str, **overrides) -> nn.Module:
        """The trained, frozen model of a cache-providing baseline (e.g. ``teacher``) for this dataset and
        repetition, trained once (as its own stored run) and reused. Its test/val logits become the reference for
        the ``agreement`` metric."""
        if self._execute is None:
            raise RuntimeError("this run context cannot run baselines")
        path = self._execute(baseline, overrides, self.spec)
        model = self._load_checkpoint(path, role)
        freeze(model)
        for split in ("val", "test"):
            self.reference[split] = self.logits(model, model.build_args["view"], split)
        return model

    def cached_model(self, tag: str, key: dict[str, Any], build: Callable[[], nn.Module],
                     train: Callable[[nn.Module], Any]) -> nn.Module:
        """A model this method trains for itself and reuses across its runs (e.g. subclass KD's own teacher).

        The cache key is ``key`` plus the dataset, repetition, seed, data budget and the method's source hash. The
        steps of training it are not counted in this run's step timing.
        """
        spec = self.spec
        full_key = stable_hash({"key": key, "dataset": spec.dataset, "rep": spec.rep, "seed": spec.seed,
                                "data": spec.data, "method": spec.method, "source": spec.source_hash})
        path = self.store.cache_path(f"{spec.method}-{tag}", full_key)
        model = build()
        if path.exists():
            try:
                state = load_state(path)
                model.load_state_dict(state["state_dict"])
                return model
            except Exception:  # a corrupt cache entry is retrained, never trusted
                path.unlink(missing_ok=True)
        saved_timer, self.timer = self.timer, StepTimer()
        try:
            train(model)
        finally:
            self.timer = saved_timer
        atomic_torch_save(path, {"state_dict": model.state_dict()})
        return model

    def _load_checkpoint(self, path, role: str) -> nn.Module:
        state = load_state(path)
        entry = state["roles"][role]
        model = self.build(entry["arch"], entry["view"], **entry["options"])
        model.load_state_dict(entry["state_dict"])
        return model


def freeze(model: nn.Module) -> nn.Module:
    """Eval mode and no gradients, once, by the harness (not by each method)."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def checkpoint(models_by_role: dict[str, nn.Module]) -> dict[str, Any]:
    return {"roles": {role: {**m.build_args, "state_dict": m.state_dict()} for role, m in models_by_role.items()}}
