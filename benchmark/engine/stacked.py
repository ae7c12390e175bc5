"""R copies of one architecture as one batched model: the repetitions of a configuration trained in one pass.

``Stacked([model_0, ..., model_R-1])`` holds every parameter and buffer of the R models stacked along a new first
axis (``[R, ...]``), initialised from the R models (so each repetition starts from exactly its own weights), and
runs all R on their own batches at once: dense layers as one batched matrix product whose forward and backward are,
slice by slice, the very products ``F.linear`` makes; BatchNorm1d over the R·F features (statistics per
repetition); dropout with each repetition's own generator; convolutional layers per repetition on a CPU. A
repetition's numbers are therefore bit for bit the same on a CPU whether it trains alone (R = 1), with other
repetitions, or as a plain module without dropout; R = 1 is the same code, and the harness trains every stackable
model through it so that a dropout mask depends only on the run.

Packed convolutions (``packed=True``, the default for models on a GPU): the R repetitions' feature maps as one
tensor ``[B, R·C, ...]`` and every convolution as one grouped convolution (R groups), BatchNorm over the R·C
channels, pooling and ReLU on the whole: one kernel launch where the CPU's loop makes R. A grouped convolution's
backward does not add up a repetition's gradient in the order its own convolution does, so packed numbers agree
with the loop's to float rounding, not bit for bit (tested on the CPU); that is why the CPU keeps the loop. On a
GPU a repetition's numbers then depend on how many repetitions train with it (R: the kernels are chosen by shape),
which its record says (``batch``).

Stackable: ``nn.Sequential`` of Linear, Conv1d/2d (ungrouped), BatchNorm1d/2d, Dropout, ReLU, MaxPool1d/2d,
Flatten and Identity. Anything else trains unstacked (:func:`stackable` says which). A network's named hidden
features (:class:`benchmark.nn.Network`) come out of the same pass (:meth:`Stacked.forward_features`), and a small
stacked model can be applied to one repetition's own tensor (:meth:`Stacked.apply_one`: a regressor on that
repetition's features).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _stack(xs: list[torch.Tensor]) -> torch.Tensor:
    return xs[0].unsqueeze(0) if len(xs) == 1 else torch.stack(xs)  # one repetition: a view, no copy


class StackedLinear(torch.autograd.Function):
    """``x [R, B, in] @ W[r].T + b[r]`` with ``W [R, out, in]``: per slice, the products of ``F.linear`` and of its
    backward (``g @ W``, ``g.T @ x``, ``g.sum(0)``), so each repetition's gradients are bit-identical to its own."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        w = weight.transpose(1, 2)
        return torch.baddbmm(bias.unsqueeze(1), x, w) if bias is not None else torch.bmm(x, w)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        grad_x = torch.bmm(grad, weight) if ctx.needs_input_grad[0] else None
        grad_w = torch.bmm(grad.transpose(1, 2), x) if ctx.needs_input_grad[1] else None
        grad_b = grad.sum(1) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return grad_x, grad_w, grad_b


LEAVES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.BatchNorm1d, nn.BatchNorm2d, nn.Dropout, nn.ReLU, nn.MaxPool1d,
          nn.MaxPool2d, nn.Flatten, nn.Identity)


def stackable(model: nn.Module) -> bool:
    """Whether ``model`` is made only of layers :class:`Stacked` knows (or wraps such a model, see
    :func:`inner`)."""
    if hasattr(model, "stack_inner"):
        return stackable(model.stack_inner())
    if isinstance(model, nn.Sequential):
        return all(stackable(m) for m in model)
    if isinstance(model, (nn.Conv1d, nn.Conv2d)):
        return model.groups == 1 and model.padding_mode == "zeros"
    if isinstance(model, nn.Flatten):
        return model.start_dim == 1 and model.end_dim == -1
    return isinstance(model, LEAVES)


def inner(model: nn.Module) -> nn.Module:
    """The stackable network inside ``model``. A module may wrap one by defining ``stack_inner()`` (the wrapped
    network) and ``stack_output(raw, call)`` (its output, or that of its method ``call``, from the wrapped network's
    output; it must act on each example alone: it is given the R repetitions' rows together)."""
    return model.stack_inner() if hasattr(model, "stack_inner") else model


def _leaves(model: nn.Module) -> list[nn.Module]:
    if isinstance(model, nn.Sequential):
        return [leaf for m in model for leaf in _leaves(m)]
    return [model]


class Stacked(nn.Module):
    """R models of one architecture as one; ``forward(xs)`` takes the R batches (a list, each ``[B, ...]``) and
    returns ``[R, B, ...]``. :meth:`unstack` writes the trained values back into the R models."""

    def __init__(self, models: list[nn.Module], dropout_generators: list[torch.Generator] | None = None,
                 packed: bool | None = None):
        super().__init__()
        if not models or not all(stackable(m) for m in models):
            raise ValueError("only stackable models can be stacked")
        self.models = models
        self.R = len(models)
        self.packed = next(models[0].parameters()).is_cuda if packed is None else packed
        self.wrapper = models[0] if hasattr(models[0], "stack_inner") else None
        self.layers = list(zip(*[_leaves(inner(m)) for m in models], strict=True))  # per layer, its R copies
        self.cuts: dict[int, str] = {}  # number of leaf layers before a named feature's cut -> its name
        network = inner(models[0])
        for name, cut in getattr(network, "feature_cuts", {}).items():
            self.cuts[sum(len(_leaves(m)) for m in list(network)[:cut])] = name
        self.generators = dropout_generators
        self.params = nn.ParameterList()
        self.names: list[tuple[int, str]] = []  # (layer index, attribute) of each stacked parameter / buffer
        self.stacked: dict[tuple[int, str], torch.Tensor] = {}
        for i, copies in enumerate(self.layers):
            first = copies[0]
            for name, p in first.named_parameters(recurse=False):
                if isinstance(first, nn.Conv2d) and name == "weight" and not self.packed:
                    # Convolutions run per repetition: each keeps its own kernel, channels-last, the layout in
                    # which the CPU's convolution and its backward run fastest (results are deterministic)
                    params = [nn.Parameter(getattr(c, name).detach().clone(memory_format=torch.channels_last),
                                           requires_grad=p.requires_grad) for c in copies]
                    self.params.extend(params)
                    self.stacked[i, name] = params
                    continue
                param = nn.Parameter(torch.stack([getattr(c, name).detach() for c in copies]),
                                     requires_grad=p.requires_grad)
                self.params.append(param)
                self.stacked[i, name] = param
            for name, b in first.named_buffers(recurse=False):
                if b is None:
                    continue
                buffer = torch.stack([getattr(c, name) for c in copies]).clone()
                self.register_buffer(f"buffer_{i}_{name}", buffer)
                self.stacked[i, name] = buffer

    # ---- forward ------------------------------------------------------------------------------------------
    # Activations are either "rows", one [R, B, ...] tensor (dense layers: one batched product for all R), or
    # "list", R tensors [B, C, ...] (convolutional layers, run per repetition: a grouped convolution's backward
    # does not give the per-group results bit for bit, so it would make a repetition's numbers depend on its batch),
    # or "packed", one [B, R*C, ...] tensor (convolutional layers as grouped convolutions: ``packed``).
    def forward(self, xs: list[torch.Tensor], call: str | None = None) -> torch.Tensor:
        return self._forward(xs, call, None)

    def forward_features(self, xs: list[torch.Tensor], call: str | None = None
                         ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The output and every named feature (``[R, B, ...]`` each), from one pass."""
        features: dict[str, torch.Tensor] = {}
        return self._forward(xs, call, features), features

    def _forward(self, xs: list[torch.Tensor], call: str | None, features: dict | None) -> torch.Tensor:
        first = self.layers[0][0]
        conv = isinstance(first, (nn.Conv1d, nn.Conv2d, nn.BatchNorm2d, nn.MaxPool1d, nn.MaxPool2d))
        if conv and self.packed:
            x, layout = self._pack(xs), "packed"
        elif conv:
            x, layout = [t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t for t in xs], "list"
        else:
            x, layout = _stack(xs), "rows"
        i = 0
        while i < len(self.layers):
            layer = self.layers[i][0]
            after = self.layers[i + 1][0] if i + 1 < len(self.layers) else None
            if isinstance(layer, nn.ReLU) and isinstance(after, (nn.MaxPool1d, nn.MaxPool2d)) and layout != "rows" \
                    and not (features is not None and i + 1 in self.cuts):
                # max pooling commutes with the monotone ReLU, values and gradients alike (a window whose maximum
                # is not positive gets a zero gradient either way): pool first, and ReLU a quarter of the values
                x, layout = self._apply(i + 1, after, x, layout)
                x, layout = self._apply(i, layer, x, layout)
                i += 2
            else:
                x, layout = self._apply(i, layer, x, layout)
                i += 1
            if features is not None and i in self.cuts:
                features[self.cuts[i]] = self._rows(x, layout)
        out = self._rows(x, layout)
        if self.wrapper is not None:
            r, b = out.shape[:2]
            out = self.wrapper.stack_output(out.flatten(0, 1), call).unflatten(0, (r, b))
        elif call is not None:
            raise ValueError(f"a stacked plain network has no method {call!r}")
        return out

    def apply_one(self, r: int, x: torch.Tensor) -> torch.Tensor:
        """Repetition ``r`` alone on its own input ``x`` (e.g. a regressor on that repetition's hidden features):
        the calls a plain module makes, on the repetition's slices of the stacked tensors, so that its gradients
        land in them and the repetition computes what it computes alone."""
        if self.wrapper is not None:
            raise ValueError("apply_one runs a plain network, not a wrapper")
        for i, copies in enumerate(self.layers):
            layer = copies[0]
            if isinstance(layer, nn.Linear):
                bias = self.stacked.get((i, "bias"))
                x = F.linear(x, self.stacked[i, "weight"][r], None if bias is None else bias[r])
            elif isinstance(layer, nn.ReLU):
                x = F.relu(x)
            elif isinstance(layer, nn.Dropout):
                if self.training and layer.p:
                    keep = 1 - layer.p
                    x = x * torch.empty_like(x).bernoulli_(keep, generator=self._gens()[r]).div_(keep)
            elif isinstance(layer, nn.Flatten):
                x = x.flatten(1)
            elif not isinstance(layer, nn.Identity):
                x = self._single(i, r, layer, x)
        return x

    def _apply(self, i: int, layer: nn.Module, x, layout: str):
        if isinstance(layer, nn.Linear):
            x = self._rows(x, layout)
            weight, bias = self.stacked[i, "weight"], self.stacked.get((i, "bias"))
            if self.R == 1:  # the very call a plain module makes
                return F.linear(x[0], weight[0], None if bias is None else bias[0]).unsqueeze(0), "rows"
            return StackedLinear.apply(x, weight, bias), "rows"
        if isinstance(layer, nn.BatchNorm1d) and layout == "rows" and x.dim() == 3:
            return self._batchnorm_rows(i, layer, x), "rows"
        if isinstance(layer, nn.ReLU):
            return ([F.relu(t) for t in x] if layout == "list" else F.relu(x)), layout
        if isinstance(layer, nn.Dropout):
            return self._dropout(layer, x, layout), layout
        if isinstance(layer, nn.Flatten):
            if layout == "list":
                return _stack([t.flatten(1) for t in x]), "rows"
            if layout == "packed":  # [B, R*C, ...] -> [R, B, C*...], each repetition's features in its own order
                return x.unflatten(1, (self.R, -1)).flatten(2).transpose(0, 1), "rows"
            return x.flatten(2), "rows"
        if isinstance(layer, nn.Identity):
            return x, layout
        if self.packed:
            return self._packed(i, layer, self._pack(list(x)) if layout == "rows" else x), "packed"
        # convolution, pooling, BatchNorm over feature maps: each repetition through the layer's own functional form
        xs = list(x) if layout == "rows" else x
        return [self._single(i, r, layer, t) for r, t in enumerate(xs)], "list"

    def _pack(self, xs: list[torch.Tensor]) -> torch.Tensor:
        """R tensors [B, C, ...] -> [B, R*C, ...] (one repetition: itself)."""
        return xs[0] if len(xs) == 1 else torch.stack(xs, 1).flatten(1, 2)

    def _rows(self, x, layout: str) -> torch.Tensor:
        """Any layout as [R, B, ...]."""
        if layout == "list":
            return _stack(x)
        if layout == "packed":
            return x.unflatten(1, (self.R, -1)).transpose(0, 1)
        return x

    def _packed(self, i: int, layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """Layer ``i`` of every repetition at once on [B, R*C, ...]: a convolution in R groups, per-channel
        BatchNorm over the R*C channels (each repetition's statistics its own), pooling on every channel."""
        if isinstance(layer, (nn.Conv1d, nn.Conv2d)):
            conv = F.conv2d if isinstance(layer, nn.Conv2d) else F.conv1d
            bias = self.stacked.get((i, "bias"))
            return conv(x, self.stacked[i, "weight"].flatten(0, 1), None if bias is None else bias.flatten(),
                        layer.stride, layer.padding, layer.dilation, self.R)
        if isinstance(layer, (nn.BatchNorm1d, nn.BatchNorm2d)):
            if self.training and (i, "num_batches_tracked") in self.stacked:
                self.stacked[i, "num_batches_tracked"].add_(1)
            mean, var = self.stacked.get((i, "running_mean")), self.stacked.get((i, "running_var"))
            flat = [t.view(-1) if t is not None else None
                    for t in (mean, var, self.stacked.get((i, "weight")), self.stacked.get((i, "bias")))]
            return F.batch_norm(x, *flat, self.training or mean is None, layer.momentum, layer.eps)
        pool = F.max_pool2d if isinstance(layer, nn.MaxPool2d) else F.max_pool1d
        return pool(x, layer.kernel_size, layer.stride, layer.padding, layer.dilation, ceil_mode=layer.ceil_mode)

    def _single(self, i: int, r: int, layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """Layer ``i`` of repetition ``r`` on its own batch, with the stacked tensors' slices as its state."""
        state = {name: t[r] for (j, name), t in self.stacked.items() if j == i}
        if isinstance(layer, (nn.BatchNorm1d, nn.BatchNorm2d)):
            if self.training and "num_batches_tracked" in state:
                state["num_batches_tracked"].add_(1)
            use_batch = self.training or state.get("running_mean") is None
            return F.batch_norm(x, state.get("running_mean"), state.get("running_var"), state.get("weight"),
                                state.get("bias"), use_batch, layer.momentum, layer.eps)
        if isinstance(layer, (nn.Conv1d, nn.Conv2d)):
            conv = F.conv2d if isinstance(layer, nn.Conv2d) else F.conv1d
            return conv(x, state["weight"], state.get("bias"), layer.stride, layer.padding, layer.dilation)
        pool = F.max_pool2d if isinstance(layer, nn.MaxPool2d) else F.max_pool1d
        return pool(x, layer.kernel_size, layer.stride, layer.padding, layer.dilation, ceil_mode=layer.ceil_mode)

    def _batchnorm_rows(self, i: int, layer, x: torch.Tensor) -> torch.Tensor:
        """BatchNorm1d after a dense layer, all repetitions at once: [R, B, F] -> [B, R*F] (per-channel
        statistics, so each repetition's are its own, bit for bit)."""
        if self.training and (i, "num_batches_tracked") in self.stacked:
            self.stacked[i, "num_batches_tracked"].add_(1)
        mean, var = self.stacked.get((i, "running_mean")), self.stacked.get((i, "running_var"))
        flat = [t.view(-1) if t is not None else None
                for t in (mean, var, self.stacked.get((i, "weight")), self.stacked.get((i, "bias")))]
        r, b, f = x.shape
        y = F.batch_norm(x.transpose(0, 1).reshape(b, r * f), *flat, self.training or mean is None,
                         layer.momentum, layer.eps)
        return y.reshape(b, r, f).transpose(0, 1)

    def _dropout(self, layer: nn.Dropout, x, layout: str):
        """Each repetition's mask from its own generator, with the shape it has alone (F.dropout's arithmetic)."""
        if not self.training or layer.p == 0:
            return x
        keep = 1 - layer.p
        slices = x if layout == "list" else list(self._rows(x, layout))
        masks = [torch.empty_like(t).bernoulli_(keep, generator=g).div_(keep) for t, g in zip(slices, self._gens())]
        if layout == "list":
            return [t * m for t, m in zip(x, masks)]
        if layout == "packed":
            return x * self._pack(masks)
        return x * _stack(masks)

    def _gens(self) -> list[torch.Generator | None]:
        return self.generators if self.generators is not None else [None] * self.R

    # ---- back to the R models -----------------------------------------------------------------------------
    @torch.no_grad()
    def unstack(self) -> list[nn.Module]:
        """Copy the stacked parameters and buffers into the R models (and return them)."""
        for (i, name), tensor in self.stacked.items():
            for r in range(self.R):
                target = getattr(self.layers[i][r], name)
                target.copy_(tensor[r])
        return self.models

    @torch.no_grad()
    def restack(self) -> None:
        """The reverse of :meth:`unstack` (after the R models were changed, e.g. best weights restored)."""
        for (i, name), tensor in self.stacked.items():
            for r in range(self.R):
                tensor[r].copy_(getattr(self.layers[i][r], name))
