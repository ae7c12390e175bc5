"""The input views of the two MLPs, B and C: registry PCA views (``benchmark.data.views``), so each MLP's scratch
student reads exactly the same features."""

from __future__ import annotations

import math

PCA_SEED_B, PCA_SEED_C = 42, 123  # the notebook's PCA(random_state=...) for B and for C


def mlp_views(cfg) -> dict[str, str]:
    """B's and C's input views: PCA of the top / bottom half of the input (``part=I/2``, the default ``halves``), or
    of every pixel with the notebook's two seeds (``as_published``); with the notebook's scaler, val/test
    standardised by their own statistics."""
    views = {}
    for part, (role, seed) in enumerate((("B", PCA_SEED_B), ("C", PCA_SEED_C))):
        view = f"pca:{cfg.pca_components}:seed={seed}"
        if cfg.views == "halves":
            view += f":part={part}/2"
        if cfg.scaler == "as_published":
            view += ":scaler=split"
        views[role] = view
    return views


def view_features(data, cfg) -> int:
    """How many input features each MLP's PCA is fitted on (with ``halves``: the smaller half)."""
    features = math.prod(data.input_shape)
    if cfg.views == "halves":
        rows = data.input_shape[1]
        features = features // rows * (rows // 2)
    return features


def view_rank(data, cfg) -> int:
    """The most principal components both MLPs' views have: the smaller numerical rank of their training inputs
    (``Dataset.pca_rank``; digits' bottom half has two constant pixels: rank 30 of 32)."""
    parts = [(0, 2), (1, 2)] if cfg.views == "halves" else [None]
    return min(data.pca_rank(part) for part in parts)
