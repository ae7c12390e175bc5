"""What the harness gives a method's ``train(run, cfg)``: the data views, seeded builders and batch order, the fit
loop (:mod:`benchmark.engine.fit`), evaluation, logging, and the trained models of the runs it requires.

On a GPU (``device``) the views, labels, models and batch indices a method gets are there; what is random is drawn
as on the CPU (initial weights and batch order from the run's CPU generators, then moved), so a run starts from the
same weights and sees the same batches on every device. Metrics are computed on the CPU from the logits."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from benchmark import metrics as M
from benchmark import nn as layers
from benchmark.contract import Role, required_method
from benchmark.engine import device as devices
from benchmark.engine import fit as fitting
from benchmark.engine.fit import FINAL
from benchmark.engine.spec import RunSpec, derive_seed, stable_hash
from benchmark.engine.timing import StepTimer, step_clock, timed_batches
from benchmark.store import Store, load_state

__all__ = ["FINAL", "RunContext", "checkpoint", "checkpoint_mismatch", "freeze"]


class RequiredRunMissing(RuntimeError):
    pass


class RunContext:
    def __init__(self, spec: RunSpec, cfg, dataset, store: Store, roles: dict[str, Role],
                 device: torch.device | None = None):
        self.spec = spec
        self.cfg = cfg
        self.data = dataset
        self.store = store
        self.roles = roles
        self.device = device or torch.device("cpu")
        self.on_gpu = self.device.type != "cpu"
        self.rows: list[dict[str, Any]] = []
        self.timer = StepTimer(clock=step_clock(self.device))
        self.reference: dict[str, torch.Tensor] = {}  # a required teacher's logits per split (agreement metric)
        self.built: set[str] = set()  # architectures built by this run (they must be declared by its roles)

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

    def device_generator(self, *purpose: Any) -> torch.Generator:
        """:meth:`generator` on the run's device (what draws there, such as dropout masks, needs its own): the
        CPU's stream on a CPU, the same seed on a GPU (a GPU's stream is another sequence)."""
        return devices.generator(self.device, derive_seed(self.seed, *purpose))

    # ---- data --------------------------------------------------------------------------------------------
    def view(self, spec: str, split: str) -> torch.Tensor:
        return self.data.view(spec, split, self.device if self.on_gpu else None)

    def labels(self, split: str) -> torch.Tensor:
        return self.data.labels(split, self.device if self.on_gpu else None)

    @property
    def num_classes(self) -> int:
        return self.data.num_classes

    def build(self, arch: str, view: str, *, init: str | None = None, **options) -> nn.Module:
        """``arch`` for this dataset's ``view``, initialised from (seed, arch, view): a method's model and the
        scratch student of the same architecture and view start from the same weights. Build options (a head's
        size) do not enter the seed, so layers before an option-sized head draw the same initial weights.
        ``init`` names a stream of the role's own (``Role.init``): (seed, arch, view, init), other weights than
        every model built without it, and the same as its scratch student's."""
        gen = self.generator("init", arch, view, stable_hash({}) if init is None else stable_hash({"init": init}))
        model = layers.build(arch, self.data.view_shape(view), self.num_classes, generator=gen, **options)
        model.build_args = {"arch": arch, "view": view, "options": options}
        self.built.add(arch)
        return model.to(self.device) if self.on_gpu else model

    def batches(self, batch_size: int, *, epoch: int, n: int | None = None, shuffle: bool = True,
                drop_last: bool = False, timed: bool = True):
        """Timed index batches over the training split (or its first ``n`` positions); the order depends on
        (seed, epoch) only, so it is paired across methods."""
        gen = self.generator("order", epoch)
        size = self.data.size("train") if n is None else n
        return timed_batches(size, batch_size, generator=gen, shuffle=shuffle, drop_last=drop_last,
                             timer=self.timer if timed else None, device=self.device if self.on_gpu else None)

    # ---- training ----------------------------------------------------------------------------------------
    def fit(self, models: dict[str, nn.Module], step: Callable, **options) -> dict[str, nn.Module]:
        """Train ``models`` (by role) with the method's ``step``; see :func:`benchmark.engine.fit.fit`."""
        if self.on_gpu:
            for model in models.values():  # a model the method made itself (a regressor) goes to the GPU too
                model.to(self.device)
        return fitting.fit(self, models, step, **options)

    # ---- logging and checks --------------------------------------------------------------------------------
    def log(self, role: str, metric: str, value: float, epoch: int = FINAL) -> None:
        self.rows.append({"role": role, "epoch": int(epoch), "metric": metric, "value": float(value)})

    def curve(self, role: str, metric: str) -> list[float]:
        """The per-epoch values logged so far for ``role``'s ``metric``, in epoch order."""
        rows = sorted((r["epoch"], r["value"]) for r in self.rows
                      if r["role"] == role and r["metric"] == metric and r["epoch"] >= 0)
        return [v for _, v in rows]

    # ---- evaluation ----------------------------------------------------------------------------------------
    # Every evaluation goes through :meth:`in_chunks`: EVAL_CHUNK examples at a time from the split's first example,
    # whatever evaluates (final metrics, learning curves, a required teacher's reference and soft targets, hidden
    # features, a method's probes). A CPU's kernels may block a product by the batch's shape (on AVX-512 and AMX
    # machines they do), so a logit can differ in its last bits between a batch evaluated whole and in chunks: one
    # chunking for every evaluation is what makes a run's numbers repeat on one machine. 128 on a CPU keeps a
    # CNN's activations in cache (2x faster than 4,096 at a time on 28x28 images); a GPU evaluates in large chunks
    # (benchmark.engine.device.EVAL_CHUNK).
    EVAL_CHUNK = devices.EVAL_CHUNK["cpu"]

    @property
    def eval_chunk(self) -> int:
        return devices.EVAL_CHUNK[self.device.type] if self.on_gpu else self.EVAL_CHUNK

    @staticmethod
    def view_of(model: nn.Module) -> str:
        """The view ``model`` was built for (:meth:`build`, :meth:`required`): a required teacher's logits and
        features are computed on its own view, which need not be the student's."""
        return model.build_args["view"]

    @torch.no_grad()
    def in_chunks(self, fn: Callable, x: torch.Tensor):
        """``fn`` applied to ``x`` in the one evaluation chunking (``eval_chunk`` rows at a time from row 0), its
        outputs joined: a tensor, or a list or tuple of tensors joined element by element."""
        parts = [fn(x[i:i + self.eval_chunk]) for i in range(0, len(x), self.eval_chunk)]
        if not parts:
            return fn(x)
        if torch.is_tensor(parts[0]):
            return torch.cat(parts)
        return type(parts[0])(torch.cat(column) for column in zip(*parts, strict=True))

    @torch.no_grad()
    def logits(self, model: nn.Module, view: str, split: str) -> torch.Tensor:
        """``model``'s logits on a split, in eval mode, on the run's device."""
        was_training = model.training
        model.eval()
        out = self.in_chunks(model, self.view(view, split))
        model.train(was_training)
        return out

    @torch.no_grad()
    def features(self, model: nn.Module, view: str, split: str, name: str) -> torch.Tensor:
        """``model``'s hidden feature ``name`` (:class:`benchmark.nn.Network`) on a split, in eval mode (dropout
        off, BatchNorm's running statistics), computed once like :meth:`logits`: a frozen teacher's hint for every
        training example, looked up by ``b.idx``."""
        network = model.stack_inner() if hasattr(model, "stack_inner") else model
        if name not in layers.feature_names(model):
            raise KeyError(f"{type(network).__name__} names no feature {name!r} "
                           f"(it names: {', '.join(layers.feature_names(model)) or 'none'})")
        was_training = model.training
        model.eval()
        out = self.in_chunks(lambda x: network.features(x, name), self.view(view, split))
        model.train(was_training)
        return out

    def evaluate(self, model: nn.Module, view: str, split: str) -> dict[str, float]:
        logits = self.logits(model, view, split).cpu()  # one copy per evaluation; the metrics are the CPU's
        result = M.classification_metrics(logits, self.data.labels(split), self.num_classes)
        if split in self.reference:
            result["agreement"] = M.agreement(logits, self.reference[split])
        return result

    # ---- the models of required runs -----------------------------------------------------------------------
    def required(self, name: str, role: str | None = None) -> nn.Module:
        """The trained, frozen model of a run this one requires (``Method.requires``), loaded from its checkpoint:
        trained before this run by the scheduler, never from inside it. Its validation and test logits become
        the reference of the ``agreement`` metric."""
        if name not in self.spec.requires:
            raise RequiredRunMissing(f"{self.spec.method} loads {name!r} but its requires() does not declare it")
        run_id = self.spec.requires[name]
        path = self.store.cache_path(required_method(name), run_id)  # "born_again#2" is a born_again run
        if not path.is_file():
            raise RequiredRunMissing(f"required run {name} ({run_id}) has no checkpoint at {path.name}")
        state = load_state(path)
        problem = checkpoint_mismatch(state, run_id, self.store.read_run(run_id))
        if problem:  # never distil from a model that is not the required run's
            raise RequiredRunMissing(f"required run {name} ({run_id}): its checkpoint {path.name} {problem}; "
                                     "train it again (remove the checkpoint)")
        roles = state["roles"]
        if role is None:
            if len(roles) != 1:
                raise RequiredRunMissing(f"required run {name} has roles {sorted(roles)}: name one")
            role = next(iter(roles))
        entry = roles[role]
        gen = self.generator("init", entry["arch"], entry["view"], stable_hash({}))
        model = layers.build(entry["arch"], self.data.view_shape(entry["view"]), self.num_classes, generator=gen,
                             **entry["options"])
        model.build_args = {"arch": entry["arch"], "view": entry["view"], "options": entry["options"]}
        model.load_state_dict(entry["state_dict"])
        model = freeze(model.to(self.device) if self.on_gpu else model)
        for split in ("val", "test"):
            if self.data.size(split):
                self.reference[split] = self.logits(model, entry["view"], split).cpu()
        return model


def freeze(model: nn.Module) -> nn.Module:
    """Eval mode and no gradients, once, by the harness (not by each method)."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def checkpoint(models_by_role: dict[str, nn.Module], run_id: str) -> dict[str, Any]:
    """The trained models by role, their tensors on the CPU (a checkpoint made on a GPU loads anywhere), with the
    id of the run that trained them: a loader checks it, and each role's architecture, against the run it needs."""
    return {"run_id": run_id, "roles": {role: {**m.build_args, "state_dict": _on_cpu(m.state_dict())}
                                        for role, m in models_by_role.items()}}


def checkpoint_mismatch(state: Any, run_id: str, record: dict | None) -> str | None:
    """None if ``state`` is a checkpoint written by run ``run_id`` whose roles have the architectures that run's
    ``record`` declares, else what it is instead (one line). A checkpoint without a run id (written before it
    carried one) is not loadable: which run made it cannot be told. Without a record, only the id is checked."""
    if not isinstance(state, dict) or not isinstance(state.get("roles"), dict):
        return "is not a checkpoint of trained models"
    roles = state["roles"]
    if not all(isinstance(r, dict) and "state_dict" in r and "arch" in r for r in roles.values()):
        return "is not a checkpoint of trained models"
    written_by = state.get("run_id")
    if written_by is None:
        return "does not say which run wrote it"
    if written_by != run_id:
        return f"was written by run {str(written_by)[:16]}, not by {run_id}"
    if record is not None:
        declared = {role: entry.get("arch") for role, entry in (record.get("roles") or {}).items()}
        found = {role: entry["arch"] for role, entry in roles.items()}
        if found != declared:
            what = ", ".join(f"{r} {a}" for r, a in sorted(found.items()))
            want = ", ".join(f"{r} {a}" for r, a in sorted(declared.items()))
            return f"holds {what}, not the {want} its run declares"
    return None


def _on_cpu(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    for key, tensor in state.items():  # in place: a state dict is a fresh OrderedDict that keeps its _metadata
        state[key] = tensor.cpu()
    return state
