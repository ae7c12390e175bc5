"""Tests of methods/attention_transfer: the attention map and the loss against their definitions in numpy (2-D maps,
1-D maps, p = 1 and 2, identical maps, an all-zero activation), the weighted attention term of both β scales
against the paper's norm form in numpy (8×8, 28×28 and 32×32 inputs, 1-D signals), pooling of a larger map, the
two networks' blocks having one spatial size on every input shape, the teacher's maps computed in chunks, and the
skip of a flat view."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from benchmark import nn as layers
from benchmark.data import load_dataset
from benchmark.engine import config as configuration
from benchmark.engine.discovery import discover

METHODS = discover()
INFO = METHODS["attention_transfer"]
at = sys.modules[INFO.cls.__module__]


def reference_map(activation, p):
    a = np.abs(np.asarray(activation, np.float64)) ** p
    q = a.sum(1).reshape(len(a), -1)
    return q / np.linalg.norm(q, axis=1, keepdims=True)


@pytest.mark.parametrize("shape", [(3, 4, 5, 5), (3, 6, 7)], ids=["2d", "1d"])
@pytest.mark.parametrize("p", [1.0, 2.0])
def test_the_map_and_the_loss_match_their_definitions(shape, p):
    rng = np.random.default_rng(0)
    student, teacher = rng.normal(size=shape), rng.normal(size=(shape[0], 9, *shape[2:]))
    ours = at.attention_map(torch.tensor(student, dtype=torch.float32), p).numpy()
    np.testing.assert_allclose(ours, reference_map(student, p), rtol=1e-5)
    expected = ((reference_map(student, p) - reference_map(teacher, p)) ** 2).mean()
    loss = at.attention_loss(torch.tensor(student, dtype=torch.float32),
                             at.attention_map(torch.tensor(teacher, dtype=torch.float32), p), p)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def reference_term(students, teachers, p, beta, input_positions, scale):
    """s · β/2 · Σ_j mean over examples of ‖Q_S,j − Q_T,j‖² / P_j, written with the norm of the difference per
    example (the paper's form) and each block's own count of positions P_j."""
    s = input_positions / 1024 if scale == "input_size" else 1.0
    total = 0.0
    for student, teacher in zip(students, teachers):
        diff = reference_map(student, p) - reference_map(teacher, p)
        total += (np.linalg.norm(diff, axis=1) ** 2).mean() / diff.shape[1]
    return s * beta / 2 * total


@pytest.mark.parametrize("input_size", [(8, 8), (28, 28), (32, 32), (40,)], ids=["8x8", "28x28", "32x32", "1d"])
@pytest.mark.parametrize("scale", ["input_size", "official"])
def test_the_weighted_attention_term_matches_the_norm_form(input_size, scale):
    rng = np.random.default_rng(len(input_size) + input_size[0])
    blocks = [input_size, tuple(n // 2 for n in input_size)]  # block1 at the input's size, block2 after a pooling
    students = [rng.normal(size=(4, 3, *size)) for size in blocks]
    teachers = [rng.normal(size=(4, 5, *size)) for size in blocks]
    cfg = at.Config(beta_scale=scale, beta=300.0)
    weight = at.attention_weight(cfg, input_size)
    term = weight * sum(at.attention_loss(torch.tensor(s, dtype=torch.float32),
                                          at.attention_map(torch.tensor(t, dtype=torch.float32), cfg.p), cfg.p)
                        for s, t in zip(students, teachers))
    expected = reference_term(students, teachers, cfg.p, cfg.beta, int(np.prod(input_size)), scale)
    assert term.item() == pytest.approx(expected, rel=1e-5)


def test_the_default_scale_is_the_official_code_on_32x32_inputs_and_a_sixteenth_on_8x8():
    official, ours = at.Config(beta_scale="official"), at.Config()
    assert ours.beta_scale == "input_size" and ours.beta == official.beta == 1000.0
    assert at.attention_weight(ours, (32, 32)) == at.attention_weight(official, (32, 32)) == 500.0
    assert at.attention_weight(ours, (8, 8)) * 16 == at.attention_weight(official, (8, 8)) == 500.0
    assert at.attention_weight(at.Config(beta=0.0), (8, 8)) == 0.0


def test_equal_maps_give_zero_and_a_zero_activation_a_zero_map():
    a = torch.rand(2, 3, 4, 4)
    assert at.attention_loss(a, at.attention_map(2 * a[:, [0, 1, 2, 0]], 2.0), 2.0).item() > 0  # channels differ
    assert at.attention_loss(a, at.attention_map(5 * a, 2.0), 2.0).item() == pytest.approx(0.0, abs=1e-12)
    zero = torch.zeros(2, 3, 4, 4, requires_grad=True)
    q = at.attention_map(zero, 2.0)
    assert not q.any()
    at.attention_loss(zero, at.attention_map(a, 2.0), 2.0).backward()
    assert torch.isfinite(zero.grad).all()


def test_a_larger_map_is_average_pooled_to_the_smaller_size():
    a = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).view(2, 1, 4, 4)
    pooled = at.matched(a, (2, 2)).numpy()
    expected = a.numpy().reshape(2, 1, 2, 2, 2, 2).mean(axis=(3, 5))
    np.testing.assert_allclose(pooled, expected)
    assert at.matched(a, (4, 4)) is a
    signal = torch.arange(8, dtype=torch.float32).view(1, 1, 8)
    np.testing.assert_allclose(at.matched(signal, (4,)).numpy(), [[[0.5, 2.5, 4.5, 6.5]]])


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (1, 40), (3, 32, 32)])
def test_teacher_and_student_blocks_have_the_same_spatial_size(shape):
    x = torch.rand(2, *shape)
    teacher, student = (layers.build(a, shape, 10) for a in ("at_teacher", "at_student"))
    sizes = [at.feature_sizes(m, x, ["block1", "block2"]) for m in (teacher, student)]
    assert sizes[0] == sizes[1] and sizes[0]["block1"] == tuple(shape[1:])
    assert student(x).shape == teacher(x).shape == (2, 10)


def test_the_teachers_maps_are_the_same_in_chunks():
    teacher = layers.build("at_teacher", (1, 8, 8), 10).eval()
    x = torch.rand(10, 1, 8, 8)
    sizes = {"block1": (8, 8), "block2": (2, 2)}
    whole, chunked = at.teacher_maps(teacher, x, sizes, 2.0, chunk=100), at.teacher_maps(teacher, x, sizes, 2.0, 3)
    for name in sizes:
        torch.testing.assert_close(whole[name], chunked[name])
    _, found = teacher.forward_features(x)
    torch.testing.assert_close(whole["block2"], at.attention_map(at.matched(found["block2"], (2, 2)), 2.0))


def test_a_flat_view_is_skipped_with_its_reason():
    data = load_dataset("digits")
    cfg = configuration.resolve(INFO.cls, "smoke", {"view": "flat"}, data=data)
    assert "spatial" in INFO.cls().skip(cfg, data)
    assert INFO.cls().skip(configuration.resolve(INFO.cls, "smoke", data=data), data) is None
