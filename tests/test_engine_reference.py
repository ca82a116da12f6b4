"""The reference engine: exact restore and the perturbation it claims to apply."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from llmscape.directions import random_directions
from llmscape.engine.reference import ReferenceEngine
from llmscape.loss import metrics

TARGETS = ["model.layers.1.mlp.up_proj.weight", "model.layers.2.self_attn.q_proj.weight"]


@pytest.fixture
def setup(tiny, tiny_data):
    model, _ = tiny
    params = dict(model.named_parameters())
    weights = {n: params[n].detach().clone() for n in TARGETS}
    return model, tiny_data, weights, random_directions(weights, 2, seed=0, norm="filter")


def test_weights_bitwise_restored_after_a_landscape(setup):
    model, data, _, dirs = setup
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    ReferenceEngine(model, data, dirs).evaluate(np.random.default_rng(0).uniform(-3, 3, (7, 2)))
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())


def test_point_equals_model_with_perturbed_weights(setup):
    model, data, weights, dirs = setup
    a, b = 0.7, -0.4
    got = metrics(ReferenceEngine(model, data, dirs).evaluate(np.array([[a, b]])), data.n_tokens)
    params = dict(model.named_parameters())
    with torch.no_grad():
        for n in TARGETS:
            params[n].copy_(weights[n] + a * dirs[0][n] + b * dirs[1][n])
        losses = []
        for i in range(len(data)):
            ids = data.input_ids[i : i + 1, : int(data.attention_mask[i].sum())]
            losses.append(model(input_ids=ids, labels=ids).loss.item())
        for n in TARGETS:
            params[n].copy_(weights[n])
    assert got["per_sequence_loss"][0] == pytest.approx(losses, abs=1e-5)
    assert got["loss"][0] == pytest.approx(np.mean(losses), abs=1e-5)


def test_centre_is_the_unperturbed_loss_and_far_points_differ(setup):
    model, data, _, dirs = setup
    loss = metrics(ReferenceEngine(model, data, dirs).evaluate(np.array([[0, 0], [0, 0], [30, 30]])), data.n_tokens)[
        "loss"
    ]
    assert loss[0] == loss[1]
    assert abs(loss[2] - loss[0]) > 1e-3


def test_bf16_model_restores_exactly(tiny_dir, tiny_data):
    from llmscape.models import load_prepared

    model, _ = load_prepared(tiny_dir, dtype="bfloat16")
    params = dict(model.named_parameters())
    weights = {n: params[n].detach().float() for n in TARGETS}
    before = {n: params[n].detach().clone() for n in TARGETS}
    ReferenceEngine(model, tiny_data, random_directions(weights, 2, 0, "filter")).evaluate(
        np.linspace(-1, 1, 10).reshape(5, 2)
    )
    assert all(torch.equal(params[n], before[n]) for n in TARGETS)
