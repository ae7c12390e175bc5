"""The harness's splits: budgets (``max_train``, ``max_test``) and the validation split, all seeded and stratified.

With ``max_train``, a seeded stratified subset of ``max_train`` official training examples is taken first; then the
validation split is carved out of that (budgeted) training set, never out of the test set:

- ``"stratified"``: a seeded stratified ``val_fraction`` of it;
- ``"keras_last"``: its last examples, in their order (Keras's ``validation_split``, which takes the tail of the
  arrays it is given, before any shuffling);
- ``"none"``: nothing held out; the validation split exists, with 0 examples.

Both hold out ``round(val_fraction * n)`` of the n examples, at least one when ``val_fraction > 0``.
``max_test`` takes a seeded stratified subset of the test set. Each draw has its own random stream derived from
``split_seed``, so e.g. ``max_test`` does not move the validation split. Examples keep their original order.

Last, a *transfer set* (Hinton et al. 2015, section 3: what a distilled student is trained on) may cut the training
split, and only it: ``"all"`` keeps it; ``"omit:C"`` removes every example of class C; ``"fraction:P"`` keeps a
seeded stratified fraction P of it (0 < P <= 1, at least one example per class present). The validation and test
splits stay whole, so the omitted class is still evaluated and a bias for it can be chosen on validation. The cut
depends on ``split_seed`` and the labels only: a method and its paired scratch student get the same examples.
"""

from __future__ import annotations

import numpy as np

VALIDATIONS = ("stratified", "keras_last", "none")
SPLITS = ("train", "val", "test")
# One random stream per draw. "fixed_test" is the official test split of a dataset that has none (digits): its
# seed is the dataset's own, never split_seed, so the test split does not move with the validation split.
_STREAM = {"fixed_test": 0, "train_subset": 1, "val": 2, "test_subset": 3, "transfer": 4}
ALL = "all"  # the default transfer set: the whole training split


def rng(seed: int, stream: str) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, _STREAM[stream]]))


def stratified_pick(y: np.ndarray, n: int, generator: np.random.Generator) -> np.ndarray:
    """Sorted indices of n examples, each class getting its proportional share (largest remainders first)."""
    classes, counts = np.unique(y, return_counts=True)
    take, rem = np.divmod(counts * n, len(y))  # exact integer arithmetic
    extra = n - int(take.sum())
    take[np.lexsort((classes, -rem))[:extra]] += 1  # ties go to the smaller class label
    picked = [generator.permutation(np.flatnonzero(y == c))[:k] for c, k in zip(classes, take, strict=True)]
    return np.sort(np.concatenate(picked))


def fixed_test_split(y: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, test indices), both sorted: a stratified ``test_fraction`` drawn with the fixed ``seed``,
    for a dataset that ships no official split."""
    test = stratified_pick(y, round(test_fraction * len(y)), rng(seed, "fixed_test"))
    return np.setdiff1d(np.arange(len(y)), test), test


def validation_size(n: int, val_fraction: float) -> int:
    """How many of n training examples are held out: at least one whenever a fraction is asked for."""
    return max(1, round(val_fraction * n)) if val_fraction > 0 else 0


def parse_transfer(text: str) -> tuple[str, float | int | None]:
    """``"all"`` -> ("all", None); ``"omit:3"`` -> ("omit", 3); ``"fraction:0.05"`` -> ("fraction", 0.05).
    ValueError (one line) for anything else."""
    kind, sep, value = str(text).partition(":")
    if kind == ALL and not sep:
        return ALL, None
    try:
        if kind == "omit" and sep:
            label = int(value)
            if label >= 0:
                return "omit", label
        if kind == "fraction" and sep:
            fraction = float(value)
            if 0 < fraction <= 1:
                return "fraction", fraction
    except ValueError:
        pass
    raise ValueError(f"transfer set {text!r} is not one of all, omit:<class index >= 0>, fraction:<p in (0, 1]>")


def omitted_class(transfer: str) -> int | None:
    """The class a transfer set omits, or None."""
    kind, value = parse_transfer(transfer)
    return value if kind == "omit" else None


def transfer_index(y: np.ndarray, transfer: str, split_seed: int) -> np.ndarray:
    """Sorted positions of the training examples the transfer set keeps (see the module docstring)."""
    kind, value = parse_transfer(transfer)
    if kind == "omit":
        if value not in set(np.unique(y).tolist()):
            raise ValueError(f"transfer set {transfer!r}: the training split has no class {value}")
        return np.flatnonzero(y != value)
    if kind == "fraction":
        classes = len(np.unique(y))
        return stratified_pick(y, max(classes, round(value * len(y))), rng(split_seed, "transfer"))
    return np.arange(len(y))


def make_splits(x_tr, y_tr, x_te, y_te, *, val_fraction: float, split_seed: int, max_train: int | None,
                max_test: int | None, validation: str = "stratified",
                transfer: str = ALL) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{"train", "val", "test"} -> (x, y), drawn as the module docstring says."""
    if max_train is not None and max_train < len(y_tr):
        keep = stratified_pick(y_tr, max_train, rng(split_seed, "train_subset"))
        x_tr, y_tr = x_tr[keep], y_tr[keep]
    if max_test is not None and max_test < len(y_te):
        keep = stratified_pick(y_te, max_test, rng(split_seed, "test_subset"))
        x_te, y_te = x_te[keep], y_te[keep]
    n = len(y_tr)
    if validation == "stratified":
        val = stratified_pick(y_tr, validation_size(n, val_fraction), rng(split_seed, "val"))
        train = np.setdiff1d(np.arange(n), val)
    elif validation == "keras_last":
        cut = n - validation_size(n, val_fraction)
        train, val = np.arange(cut), np.arange(cut, n)
    elif validation == "none":
        train, val = np.arange(n), np.arange(0)
    else:
        raise ValueError(f"unknown validation {validation!r}; use one of {', '.join(VALIDATIONS)}")
    if transfer != ALL:
        train = train[transfer_index(y_tr[train], transfer, split_seed)]
    return {"train": (x_tr[train], y_tr[train]), "val": (x_tr[val], y_tr[val]), "test": (x_te, y_te)}
