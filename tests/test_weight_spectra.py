"""Singular values and condition numbers of the attention/MLP weight matrices."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from curvature_helpers import tiny_model

from llmscape.errors import LlmscapeError
from llmscape.weight_spectra import WEIGHT_MATRICES, condition_number, weight_spectra, weight_spectra_table


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
