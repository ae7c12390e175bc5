"""Views: what a model reads of a dataset's examples. Every view is float32, (N, *shape), fitted on train only.

- ``image``: the examples with their channel axis, pixels divided by the dataset's ``pixel_max`` (255 or 16;
  a float signal such as mnist1d's is used as is);
- ``flat``: the image view as (N, D) vectors;
- ``pca:K``: the flat view projected on its first K principal components, then standardised (StandardScaler);
  ``pca:K:seed=S`` uses sklearn's randomized solver seeded with S, so the seed changes the projection;
- ``...:part=I/N`` (after the seed, if any): the PCA reads only the I-th of N contiguous parts of each example
  along its first spatial axis (rows I*H//N .. (I+1)*H//N - 1 of a (C, H, W) image, every channel and column;
  positions along L of a (C, L) signal), I in 0..N-1;
- ``...:scaler=split`` (last): each split standardised with its own statistics instead of the training split's,
  as a notebook that calls ``StandardScaler().fit_transform`` on its test set does; train is unchanged.

The PCA and the (default) scaler are fitted on the train split only. K is at most the numerical rank of the
centred training input (:func:`numerical_rank`; :class:`benchmark.data.Dataset` caps a larger K at it): beyond
it a component is rounding noise, and the scaler would blow it up to unit variance on train and to an SD of
1e4-1e5 on test (digits' full image: 3 constant pixels, rank 61 of 64; its bottom half: rank 30 of 32).
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass

import numpy as np

VALID_VIEWS = "'image', 'flat', 'pca:K' or 'pca:K:seed=S', optionally followed by ':part=I/N', then ':scaler=split'"
_PCA_SPEC = re.compile(r"pca:(\d+)(?::seed=(\d+))?(?::part=(\d+)/(\d+))?(?::(scaler=split))?")


@dataclass(frozen=True)
class PCAView:
    k: int  # components, 1..min(features read, training examples), capped at the rank by the Dataset
    seed: int | None  # None: PCA(random_state=0) (exact solver for small inputs); S: randomized solver, seed S
    part: tuple[int, int] | None  # (I, N): the I-th of N parts along the first spatial axis; None: everything
    split_scaler: bool  # standardise each split by its own statistics (the notebook defect) instead of train's

    @property
    def fit(self) -> tuple:
        """What the fitted PCA and training-split scaler depend on (shared by both scalers)."""
        return self.k, self.seed, self.part


def part_bounds(length: int, part: tuple[int, int]) -> tuple[int, int]:
    """[start, stop) of part I of N along an axis of ``length``; parts differ by at most one when N does not
    divide the length."""
    i, n = part
    return i * length // n, (i + 1) * length // n


def features(input_shape: tuple[int, ...], part: tuple[int, int] | None) -> int:
    """How many numbers of one example a view reads."""
    if part is None:
        return math.prod(input_shape)
    start, stop = part_bounds(input_shape[1], part)
    return input_shape[0] * (stop - start) * math.prod(input_shape[2:])


def parse(spec: str, input_shape: tuple[int, ...], n_train: int, dataset: str):
    """``("image",)``, ``("flat",)`` or a :class:`PCAView`; ValueError (one line, the valid range) otherwise."""
    if spec in ("image", "flat"):
        return (spec,)
    m = _PCA_SPEC.fullmatch(spec) if isinstance(spec, str) else None
    if m is None:
        raise ValueError(f"unknown view {spec!r}; valid views: {VALID_VIEWS}")
    part = None
    if m[3] is not None:
        i, n, length = int(m[3]), int(m[4]), input_shape[1]
        if not 1 <= n <= length or not 0 <= i < n:
            raise ValueError(f"view {spec!r}: part=I/N needs 1 <= N <= {length} (the first spatial axis of {dataset}'s "
                             f"{'x'.join(map(str, input_shape))} examples) and I in 0..N-1")
        part = (i, n)
    k, n_features = int(m[1]), features(input_shape, part)
    if not 1 <= k <= min(n_features, n_train):
        raise ValueError(f"view {spec!r}: K must be 1..{min(n_features, n_train)} for {dataset} "
                         f"({n_features} features, {n_train} training examples)")
    return PCAView(k, None if m[2] is None else int(m[2]), part, m[5] is not None)


def numerical_rank(x: np.ndarray) -> int:
    """Rank of the centred (N, D) matrix ``x`` as ``numpy.linalg.matrix_rank`` computes it, in ``x``'s own dtype
    (float32: the matrix sklearn's PCA factorises): the singular values above S_max · max(N, D) · ε.

    That tolerance is the size of the rounding error of a computed SVD (its backward error is of order
    max(N, D) · ε · ‖x‖₂), so a singular value below it cannot be told from 0 and its direction is noise. On the
    datasets here the choice hardly matters: digits' spectrum drops from 1.7e-3 · S_max to 1.6e-17 · S_max at its
    rank (constant pixels), and where it decays smoothly (mnist_5k: rank 631 in float32, 647 in float64) the rank
    is far above any K in use.
    """
    centred = x - x.mean(axis=0, dtype=x.dtype)
    return int(np.linalg.matrix_rank(centred))


def capped(view: PCAView, rank: int, spec: str) -> PCAView:
    """``view`` with K at most ``rank``; ValueError when the training input is constant (rank 0)."""
    if rank < 1:
        raise ValueError(f"view {spec!r}: the training input it reads is constant, it has no principal component")
    return view if view.k <= rank else dataclasses.replace(view, k=rank)


def shape(key, input_shape: tuple[int, ...]) -> tuple[int, ...]:
    if isinstance(key, PCAView):
        return (key.k,)
    return input_shape if key == ("image",) else (math.prod(input_shape),)


def select(image: np.ndarray, part: tuple[int, int] | None) -> np.ndarray:
    """The (N, D) numbers a PCA view reads from an image view (N, C, first axis, ...)."""
    if part is not None:
        start, stop = part_bounds(image.shape[2], part)
        image = image[:, :, start:stop]
    return image.reshape(len(image), math.prod(image.shape[1:]))  # not -1: a split may have 0 examples


def fit_pca(train: np.ndarray, view: PCAView):
    """PCA(K) and a StandardScaler of its output, both fitted on the training split's (N, D) input."""
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    if view.seed is None:
        pca = PCA(n_components=view.k, random_state=0)
    else:  # randomized solver, so the seed actually changes the projection
        pca = PCA(n_components=view.k, svd_solver="randomized", random_state=view.seed)
    z = pca.fit_transform(train)
    return pca, StandardScaler().fit(z)


def project(x: np.ndarray, pca, scaler, own_scaler: bool) -> np.ndarray:
    """float32 (N, K): ``x`` through the PCA, standardised by the training split's scaler, or (``own_scaler``)
    by a scaler fitted on ``x`` itself."""
    if len(x) == 0:  # an empty split (validation "none"): sklearn refuses 0 samples
        return np.zeros((0, pca.n_components_), np.float32)
    z = pca.transform(x)
    if own_scaler:
        from sklearn.preprocessing import StandardScaler

        return np.ascontiguousarray(StandardScaler().fit_transform(z), np.float32)
    return np.ascontiguousarray(scaler.transform(z), np.float32)
