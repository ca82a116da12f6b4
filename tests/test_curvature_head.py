"""The chunked vocabulary head: first and second derivatives against plain logits."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from llmscape.curvature.head import chunked_token_nll


def test_chunked_nll_second_derivatives_gradgradcheck():
    g = torch.Generator().manual_seed(6)
    h = torch.randn(5, 4, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(11, 4, generator=g, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 3, 10, 7, 3])
    scale = torch.tensor([0.3, 1.0, 2.0, 0.5, 1.5], dtype=torch.float64)

    def f(h, w):
        return chunked_token_nll(h, w, labels, chunk=4) * scale

    expected = F.cross_entropy(h @ w.T, labels, reduction="none") * scale
    torch.testing.assert_close(f(h, w), expected)
    assert torch.autograd.gradcheck(f, (h, w))
    assert torch.autograd.gradgradcheck(f, (h, w))
