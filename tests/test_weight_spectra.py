"""Singular values and condition numbers of the attention/MLP weight matrices."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from curvature_helpers import tiny_model

from llmscape.errors import LlmscapeError
from llmscape.weight_spectra import (
    WEIGHT_MATRICES,
    condition_number,
    layer_matrices,
    weight_spectra,
    weight_spectra_table,
)


def test_weight_spectra_from_model_and_dict():
    model = tiny_model(torch.float32)
    spectra = weight_spectra(model)
    assert len(spectra) == 3 * 7
    name = "model.layers.2.mlp.down_proj.weight"
    w = dict(model.named_parameters())[name].detach().double().numpy()
    np.testing.assert_allclose(spectra[name], np.linalg.svd(w, compute_uv=False), rtol=1e-10)
    assert condition_number(spectra[name]) == pytest.approx(spectra[name][0] / spectra[name][-1])
    assert set(weight_spectra({name: torch.from_numpy(w)})) == {name}
    table = weight_spectra_table(spectra)
    assert len(table) == 21 and set(table["matrix"]) == {m for m in WEIGHT_MATRICES}
    with pytest.raises(LlmscapeError):
        weight_spectra({"model.norm.weight": torch.ones(4)})


def test_any_family_layer_matrices_and_never_the_embedding():
    g = torch.Generator().manual_seed(0)
    tensors = {
        "transformer.h.0.attn.c_attn.weight": torch.randn(8, 24, generator=g),  # Conv1D [in, out], fused qkv
        "transformer.h.1.mlp.c_fc.weight": torch.randn(8, 32, generator=g),
        "transformer.h.1.ln_1.weight": torch.ones(8),
        "transformer.wte.weight": torch.randn(10, 8, generator=g),
        "lm_head.weight": torch.randn(10, 8, generator=g),
    }
    shapes = {n: tuple(t.shape) for n, t in tensors.items()}
    assert layer_matrices(shapes, "transformer.h") == layer_matrices(shapes) == list(tensors)[:2]
    table = weight_spectra_table(weight_spectra(tensors), "transformer.h")
    assert table["matrix"].tolist() == ["attn.c_attn", "mlp.c_fc"] and table["layer"].tolist() == [0, 1]
    assert (table["rank"] == 8).all()  # orientation-free: min(in, out)
