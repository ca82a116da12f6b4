"""compute_spectrum, the spectrum file and the curvature table."""

from __future__ import annotations

import numpy as np
import pytest
from curvature_helpers import TARGET, exact_problem

from llmscape.curvature import compute_spectrum, load_spectrum, save_spectrum, spectra_table
from llmscape.errors import LlmscapeError


@pytest.fixture(scope="module")
def problem():
    return exact_problem()


def test_spectrum_file_roundtrip_and_table(problem, tmp_path):
    model, data = problem["model"], problem["data"]
    paths = []
    for target in (TARGET, "model.layers.2.self_attn.k_proj.weight"):
        spec = compute_spectrum(
            model, data, [target], k=2, tol=1e-6, trace_probes=4, density_probes=2, density_steps=10
        )
        path = tmp_path / f"{target}.h5"
        save_spectrum(path, spec, provenance={"study": "s", "model": "tiny"})
        paths.append(path)
    spec = compute_spectrum(model, data, [TARGET], k=2, tol=1e-6, trace_probes=4, density_probes=2, density_steps=10)
    back, prov = load_spectrum(paths[0])
    assert prov == {"study": "s", "model": "tiny"}
    assert back.targets == [TARGET] and back.n_params == 128
    np.testing.assert_allclose(back.eigenvalues, problem["values"][:2], rtol=1e-3)
    assert back.lambda_min == pytest.approx(problem["values"].min(), rel=1e-3)  # among the top-2 here
    assert back.lambda_max == pytest.approx(problem["values"].max(), rel=1e-3)  # needed its own Lanczos run
    assert back.trace.trace == pytest.approx(spec.trace.trace) and back.trace.se == pytest.approx(spec.trace.se)
    np.testing.assert_array_equal(back.density.density, spec.density.density)
    assert set(back.weight_singular_values) == {TARGET}
    table = spectra_table(paths)
    assert list(table["target"]) == [TARGET, "model.layers.2.self_attn.k_proj.weight"]
    columns = {"lambda_1", "lambda_2", "lambda_max", "lambda_min", "lambda_ratio", "trace", "trace_se", "n_params"}
    assert columns <= set(table.columns) and len(table) == 2
    assert table["lambda_ratio"].iloc[0] == pytest.approx(back.lambda_max / abs(back.lambda_min))
    with pytest.raises(LlmscapeError):
        load_spectrum(tmp_path / "missing.h5")
