"""TargetLoss and HessianOperator: value, gradient and Hessian-vector products against the exact Hessian."""

from __future__ import annotations

import pytest
import torch
from curvature_helpers import TARGET, exact_problem, operator, reference_loss

from llmscape.curvature import HessianOperator, TargetLoss
from llmscape.errors import LlmscapeError


@pytest.fixture(scope="module")
def problem():
    return exact_problem()


@pytest.mark.parametrize("prefix_reuse", [False, True])
@pytest.mark.parametrize("vocab_chunk", [7, 64])  # uneven chunks of the 40-token vocabulary; all of it in one
def test_value_gradient_and_hvp_match_exact(problem, prefix_reuse, vocab_chunk):
    model, data = problem["model"], problem["data"]
    loss = TargetLoss(model, data, [TARGET], prefix_reuse=prefix_reuse, vocab_chunk=vocab_chunk)
    assert (loss.prefix is not None) == prefix_reuse  # the target sits in layer 1: layer 0 is reused
    op = HessianOperator(loss)
    ref, flat = problem["ref"], problem["flat"]
    assert loss.value() == pytest.approx(float(ref(flat)), rel=1e-12)
    grad = op.to_flat(loss.gradient())
    torch.testing.assert_close(grad, torch.func.grad(ref)(flat.clone()), rtol=1e-10, atol=1e-12)
    v = torch.randn(op.n, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    # eager attention takes its softmax in float32, so second derivatives agree to ~1e-7, not 1e-15
    torch.testing.assert_close(op.matvec(v), problem["H"] @ v, rtol=1e-5, atol=1e-6)


def test_prefix_reuse_hvp_equals_full_model_hvp(problem):
    full, reused = operator(problem, prefix_reuse=False), operator(problem, prefix_reuse=True)
    assert full.loss.prefix is None and reused.loss.prefix is not None and reused.loss.prefix.start == 1
    v = torch.randn(full.n, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    torch.testing.assert_close(reused.matvec(v), full.matvec(v), rtol=1e-9, atol=1e-12)


def test_hvp_on_head_weight_uses_second_order_chunked_head(problem):
    # lm_head as target: the double backward goes through the chunked head's W branch
    model, data, name = problem["model"], problem["data"], "lm_head.weight"
    flat = model.lm_head.weight.detach().reshape(-1).clone()
    v = torch.randn(flat.numel(), generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    _, expected = torch.autograd.functional.hvp(reference_loss(model, data, name), flat, v)
    op = HessianOperator(TargetLoss(model, data, [name], vocab_chunk=6))
    assert op.loss.prefix is None
    torch.testing.assert_close(op.matvec(v), expected, rtol=1e-9, atol=1e-12)


def test_bad_targets_are_errors(problem):
    with pytest.raises(LlmscapeError, match="not in the model"):
        TargetLoss(problem["model"], problem["data"], ["model.layers.9.nope"])
    with pytest.raises(LlmscapeError):
        TargetLoss(problem["model"], problem["data"], [])
