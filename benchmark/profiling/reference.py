"""The references a profile measures against: the in-process matmul peak, and distillation as a tutorial writes
it (a ``DataLoader`` feeding a student, the teacher's forward pass at every step)."""

from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.engine.context import freeze
from benchmark.engine.device import synchronize
from benchmark.engine.timing import StepTimer, timed_iter
from benchmark.nn import keras_init, mlp
from benchmark.profiling.measure import until_complete

TEXTBOOK = "textbook_kd_loop"
# The same loop fed the way torchvision's MNIST-family datasets feed it: each example a uint8 image turned into
# a PIL image and back into a tensor by ``ToTensor`` (image datasets only).
TEXTBOOK_TORCHVISION = "textbook_kd_loop[torchvision]"


def tutorial_mlp(sizes: list[int], dropout: float = 0.0) -> nn.Module:
    """A tutorial's dense network: the teacher 784-1200-1200-10 with dropout 0.5, the student 784-300-10."""
    model = nn.Sequential(*mlp(sizes, dropout=dropout))
    keras_init(model, None)
    return model


def matmul_peak(size: int = 1024, repeats: int = 10, device: torch.device | None = None,
                precision: str = "fp32") -> float:
    """GFLOP/s of the best of ``repeats`` float32 ``size``² matrix products (2·size³ FLOPs each), on the CPU, or on
    a GPU (8192², each product timed between synchronisations) in IEEE float32 or TensorFloat-32 (``precision``;
    the run's own setting is restored)."""
    if device is None or device.type != "cuda":
        return _best_rate(size, repeats, torch.device("cpu"))
    matmul = torch.backends.cuda.matmul
    was = matmul.fp32_precision
    matmul.fp32_precision = "tf32" if precision == "tf32" else "ieee"
    try:
        return _best_rate(8192, repeats, device)
    finally:
        matmul.fp32_precision = was


def _best_rate(size: int, repeats: int, device: torch.device) -> float:
    a, b = torch.randn(size, size, device=device), torch.randn(size, size, device=device)
    out = torch.empty(size, size, device=device)
    for _ in range(3):
        torch.mm(a, b, out=out)
    best = math.inf
    for _ in range(repeats):
        synchronize(device)
        began = time.perf_counter()
        torch.mm(a, b, out=out)
        synchronize(device)
        best = min(best, time.perf_counter() - began)
    return 2 * size**3 / best / 1e9


class TorchvisionStyle(torch.utils.data.Dataset):
    """Examples as ``torchvision.datasets.FashionMNIST`` serves them: a uint8 image -> PIL -> ``ToTensor``
    (then flattened for the MLPs)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        from torchvision.transforms import ToTensor

        self.images = (images * 255).round().to(torch.uint8).squeeze(1).numpy()  # [N, H, W] or [N, C, H, W]
        self.labels, self.to_tensor = labels.tolist(), ToTensor()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        from PIL import Image

        image = self.images[i]
        image = Image.fromarray(image if image.ndim == 2 else image.transpose(1, 2, 0))
        return self.to_tensor(image).flatten(), self.labels[i]


def textbook_kd_loop(dataset, timer: StepTimer, *, batch_size: int = 64, temperature: float = 10.0,
                     alpha: float = 0.1, lr: float = 1e-3, seed: int = 0, max_epochs: int = 1000,
                     torchvision_style: bool = False) -> bool:
    """Hinton KD as a tutorial writes it: a ``DataLoader`` over a ``TensorDataset`` (per-example fetch and
    collation; or, ``torchvision_style``, per-example PIL and ``ToTensor`` as torchvision's datasets do) and
    the frozen 784-1200-1200-10 teacher's forward pass at every step of a 784-300-10 student.

    The harness's Hinton KD method computes the same loss from index batches of in-memory tensors and the
    teacher's logits computed once. The teacher here is untrained: its forward pass costs the same. Runs until
    ``timer`` raises ``StopTraining`` (returns True) or ``max_epochs`` end (False).
    """
    from torch.utils.data import DataLoader, TensorDataset

    torch.manual_seed(seed)
    x, y = dataset.view("flat", "train"), dataset.labels("train")
    shape, classes = dataset.view_shape("flat"), dataset.num_classes
    teacher = freeze(tutorial_mlp([shape[0], 1200, 1200, classes], dropout=0.5))
    student = tutorial_mlp([shape[0], 300, classes])
    optimizer = torch.optim.Adam(student.parameters(), lr=lr, eps=1e-7)
    examples = TorchvisionStyle(dataset.view("image", "train"), y) if torchvision_style else TensorDataset(x, y)
    loader = DataLoader(examples, batch_size=batch_size, shuffle=True)

    def loop():
        for _ in range(max_epochs):
            for xb, yb in timed_iter(loader, timer):
                with torch.no_grad():
                    teacher_logits = teacher(xb)
                logits = student(xb)
                soft = F.kl_div(F.log_softmax(logits / temperature, dim=1),
                                F.softmax(teacher_logits / temperature, dim=1), reduction="batchmean")
                loss = alpha * F.cross_entropy(logits, yb) + (1 - alpha) * temperature**2 * soft
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()

    return until_complete(timer, loop)
