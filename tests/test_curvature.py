"""Curvature: HVPs, eigensolvers, trace and density checked against the exact Hessian of a tiny model.

The reference loss here is written independently of ``llmscape.curvature``: the model's
own forward (``functional_call`` with the target swapped in), full logits and
``F.cross_entropy`` in float64, per-sequence mean then mean over sequences, exactly as
``llmscape.loss`` defines the landscape.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from llmscape import curvature as C
from llmscape.data import EvalSet
from llmscape.directions import normalize
from llmscape.errors import LlmscapeError
from llmscape.loss import shifted_targets

TARGET = "model.layers.1.self_attn.v_proj.weight"  # [8, 16]: 128 parameters, well separated top eigenvalues


def _tiny_model(dtype=torch.float64):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=40, hidden_size=16, intermediate_size=32, num_hidden_layers=3, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=64, tie_word_embeddings=False, initializer_range=0.3,
        attn_implementation="eager",
    )
    model = LlamaForCausalLM(config).to(dtype).eval()
    model.requires_grad_(False)
    return model


def _tiny_data() -> EvalSet:
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(1, 40, (3, 9), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0  # right padding, as data.tokenize makes it
    mask[2, 4:] = 0
    ids[mask == 0] = 0
    return EvalSet(ids, mask, ["a", "b", "c"])


def _reference_loss(model, data, name):
    ids, mask = data.input_ids, data.attention_mask
    shape = dict(model.named_parameters())[name].shape

    def loss(flat):
        out = torch.func.functional_call(model, {name: flat.reshape(shape)}, (ids,), {"attention_mask": mask})
        labels, label_mask = shifted_targets(ids, mask)
        nll = F.cross_entropy(out.logits[:, :-1].double().transpose(1, 2), labels, reduction="none")
        return ((nll * label_mask).sum(1) / label_mask.sum(1)).mean()

    return loss


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny problems: thread hand-offs cost more than the math (10x on a busy 2-core machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def problem():
    """Model, data, exact Hessian H of the target, and its eigendecomposition by |lambda|."""
    model, data = _tiny_model(), _tiny_data()
    flat = dict(model.named_parameters())[TARGET].detach().reshape(-1).clone()
    ref = _reference_loss(model, data, TARGET)
    hessian = torch.autograd.functional.hessian(ref, flat, vectorize=True).detach()
    values, vectors = np.linalg.eigh(hessian.numpy())
    order = np.argsort(-np.abs(values))
    return {
        "model": model, "data": data, "H": hessian, "flat": flat, "ref": ref,
        "values": values[order], "vectors": vectors[:, order],
    }


def _operator(problem, **kwargs):
    return C.HessianOperator(C.TargetLoss(problem["model"], problem["data"], [TARGET], **kwargs))


def _check_top3(pairs, problem):
    exact = problem["values"][:3]
    np.testing.assert_allclose(pairs.eigenvalues, exact, rtol=1e-3)
    for i in range(3):
        cos = abs(float(pairs.eigenvectors[i] @ torch.from_numpy(problem["vectors"][:, i])))
        assert cos >= 0.999, (i, cos)
    assert pairs.converged.all()
    assert np.all(pairs.residuals <= pairs.tol * np.abs(pairs.eigenvalues))
    assert pairs.n_hvp > 0 and len(pairs.history) > 0


def test_exact_problem_is_well_posed(problem):
    # the checks below need distinct top eigenvalues and a mixed-sign spectrum
    v = problem["values"]
    assert abs(v[1] / v[0]) < 0.9 and abs(v[2] / v[1]) < 0.9
    assert v.min() < 0 < v.max()


@pytest.mark.parametrize("prefix_reuse", [False, True])
@pytest.mark.parametrize("head", ["chunked", "logits"])
def test_value_gradient_and_hvp_match_exact(problem, prefix_reuse, head):
    model, data = problem["model"], problem["data"]
    loss = C.TargetLoss(model, data, [TARGET], prefix_reuse=prefix_reuse, head=head, vocab_chunk=7)
    assert (loss.prefix is not None) == prefix_reuse  # the target sits in layer 1: layer 0 is reused
    op = C.HessianOperator(loss)
    ref, flat = problem["ref"], problem["flat"]
    assert loss.value() == pytest.approx(float(ref(flat)), rel=1e-12)
    grad = op.to_flat(loss.gradient())
    torch.testing.assert_close(grad, torch.func.grad(ref)(flat.clone()), rtol=1e-10, atol=1e-12)
    v = torch.randn(op.n, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    # eager attention takes its softmax in float32, so second derivatives agree to ~1e-7, not 1e-15
    torch.testing.assert_close(op.matvec(v), problem["H"] @ v, rtol=1e-5, atol=1e-6)


def test_prefix_reuse_hvp_equals_full_model_hvp(problem):
    full, reused = _operator(problem, prefix_reuse=False), _operator(problem, prefix_reuse=True)
    assert full.loss.prefix is None and reused.loss.prefix is not None and reused.loss.prefix.start == 1
    v = torch.randn(full.n, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    torch.testing.assert_close(reused.matvec(v), full.matvec(v), rtol=1e-9, atol=1e-12)


def test_hvp_on_head_weight_uses_second_order_chunked_head(problem):
    # lm_head as target: the double backward goes through the chunked head's W branch
    model, data, name = problem["model"], problem["data"], "lm_head.weight"
    flat = model.lm_head.weight.detach().reshape(-1).clone()
    v = torch.randn(flat.numel(), generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    _, expected = torch.autograd.functional.hvp(_reference_loss(model, data, name), flat, v)
    op = C.HessianOperator(C.TargetLoss(model, data, [name], vocab_chunk=6))
    assert op.loss.prefix is None
    torch.testing.assert_close(op.matvec(v), expected, rtol=1e-9, atol=1e-12)


def test_chunked_nll_second_derivatives_gradgradcheck():
    g = torch.Generator().manual_seed(6)
    h = torch.randn(5, 4, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(11, 4, generator=g, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 3, 10, 7, 3])
    scale = torch.tensor([0.3, 1.0, 2.0, 0.5, 1.5], dtype=torch.float64)

    def f(h, w):
        return C.chunked_token_nll(h, w, labels, chunk=4) * scale

    expected = F.cross_entropy(h @ w.T, labels, reduction="none") * scale
    torch.testing.assert_close(f(h, w), expected)
    assert torch.autograd.gradcheck(f, (h, w))
    assert torch.autograd.gradgradcheck(f, (h, w))


def test_lanczos_top3_matches_exact(problem):
    _check_top3(C.Lanczos(tol=1e-6, max_iter=100, seed=0).eigenpairs(_operator(problem), 3), problem)


def test_power_iteration_top3_matches_exact(problem):
    _check_top3(C.PowerIteration(tol=1e-5, max_iter=500, seed=0).eigenpairs(_operator(problem), 3), problem)


def test_lanczos_algebraic_ends_on_explicit_matrix():
    values = np.array([5.0, -7.0, 3.0, -1.0, 0.5, 2.0])
    q, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((6, 6)))
    op = C.MatrixOperator(q @ np.diag(values) @ q.T)
    assert C.Lanczos(tol=1e-8, which="magnitude").eigenpairs(op, 2).eigenvalues == pytest.approx([-7.0, 5.0])
    assert C.Lanczos(tol=1e-8, which="largest").eigenpairs(op, 2).eigenvalues == pytest.approx([5.0, 3.0])
    low = C.Lanczos(tol=1e-8, which="smallest").eigenpairs(op, 1)
    assert low.eigenvalues == pytest.approx([-7.0]) and low.converged.all()
    with pytest.raises(LlmscapeError):
        C.eigensolver("power", which="smallest")
    # a rank-1 matrix: Lanczos breaks down after one step and restarts to find a second pair
    u = q[:, 0]
    pairs = C.Lanczos(tol=1e-8).eigenpairs(C.MatrixOperator(4.0 * np.outer(u, u)), 2)
    assert pairs.eigenvalues[0] == pytest.approx(4.0) and abs(pairs.eigenvalues[1]) < 1e-10


def test_more_eigenpairs_than_parameters_is_an_error(problem):
    op = _operator(problem)
    for solver in (C.Lanczos(), C.PowerIteration()):
        with pytest.raises(LlmscapeError, match="at most 128"):
            solver.eigenpairs(op, op.n + 1)
    assert op.n_hvp == 0  # refused before any work


def test_non_convergence_is_reported_not_raised(problem):
    op = _operator(problem)
    for solver in (C.Lanczos(tol=1e-8, max_iter=4), C.PowerIteration(tol=1e-8, max_iter=2)):
        pairs = solver.eigenpairs(op, 3)
        assert not pairs.converged.all()
        assert np.all(np.isfinite(pairs.residuals)) and np.all(pairs.residuals > 0)
    # a Krylov space smaller than k: the pairs it cannot hold come back NaN, not converged
    short = C.Lanczos(max_iter=2).eigenpairs(op, 3)
    assert np.isnan(short.eigenvalues[2]) and not short.converged[2] and short.converged.sum() == 0


def test_hutchinson_trace_within_three_standard_errors(problem):
    est = C.HutchinsonTrace(n_probes=40, seed=0).estimate(_operator(problem))
    exact = float(torch.trace(problem["H"]))
    assert est.se > 0 and len(est.samples) == 40
    assert abs(est.trace - exact) <= 3 * est.se, (est.trace, exact, est.se)


def test_slq_density_integrates_to_one_and_has_mean_trace_over_n(problem):
    op = _operator(problem)
    density = C.SpectralDensity(n_probes=3, n_steps=op.n, seed=0).estimate(op)
    assert density.integral() == pytest.approx(1.0, abs=1e-6)
    assert density.mean() == pytest.approx(density.quadrature_mean(), rel=1e-6)
    # SLQ and Hutchinson with one seed draw the same Rademacher probes: the density's mean is
    # exactly the Hutchinson estimate of tr(H) / n from those probes
    hutchinson = C.HutchinsonTrace(n_probes=3, seed=0).estimate(op)
    assert density.mean() == pytest.approx(hutchinson.trace / op.n, rel=0.01)
    assert density.quadrature_mean() == pytest.approx(hutchinson.trace / op.n, rel=1e-6)
    # (so its error against the exact tr(H) / n is Hutchinson's, tested above; 1% of the exact value
    # would need ~1e5 probes here: the trace is small beside the Hessian's off-diagonal mass)
    assert density.nodes.shape == density.weights.shape == (3, op.n)
    np.testing.assert_allclose(density.weights.sum(axis=1), 1.0, rtol=1e-10)
    # with a full Krylov space the nodes are the exact eigenvalues
    np.testing.assert_allclose(np.sort(density.nodes[0]), np.sort(problem["values"]), rtol=1e-6, atol=1e-6)


def test_hessian_directions_are_top_eigenvectors(problem, tmp_path):
    from llmscape.directions import load_directions, save_directions

    model = problem["model"]
    hd = C.hessian_directions(model, problem["data"], [TARGET], n_axes=2, seed=0, tol=1e-6)
    assert len(hd.directions) == 2 and hd.converged.all()
    np.testing.assert_allclose(hd.eigenvalues, problem["values"][:2], rtol=1e-3)
    weights = {TARGET: dict(model.named_parameters())[TARGET].detach().float()}
    for i, d in enumerate(hd.directions):
        assert set(d) == {TARGET} and d[TARGET].shape == weights[TARGET].shape and d[TARGET].dtype == torch.float32
        cos = abs(float(d[TARGET].double().reshape(-1) @ torch.from_numpy(problem["vectors"][:, i])))
        assert cos >= 0.999
        n = normalize(d, weights, "filter")
        torch.testing.assert_close(n[TARGET].norm(dim=1), weights[TARGET].norm(dim=1))
    save_directions(tmp_path / "h.h5", hd.directions, hd.recipe(), extra=hd.extra())
    back, attrs = load_directions(tmp_path / "h.h5")
    assert attrs["recipe"]["method"] == "hessian" and attrs["recipe"]["eigenvalues"] == pytest.approx(hd.eigenvalues)


def test_weight_spectra_from_model_and_dict():
    model = _tiny_model(torch.float32)
    spectra = C.weight_spectra(model)
    assert len(spectra) == 3 * 7
    name = "model.layers.2.mlp.down_proj.weight"
    w = dict(model.named_parameters())[name].detach().double().numpy()
    np.testing.assert_allclose(spectra[name], np.linalg.svd(w, compute_uv=False), rtol=1e-10)
    assert C.condition_number(spectra[name]) == pytest.approx(spectra[name][0] / spectra[name][-1])
    assert set(C.weight_spectra({name: torch.from_numpy(w)})) == {name}
    table = C.weight_spectra_table(spectra)
    assert len(table) == 21 and set(table["matrix"]) == {m for m in C.WEIGHT_MATRICES}
    with pytest.raises(LlmscapeError):
        C.weight_spectra({"model.norm.weight": torch.ones(4)})


def test_spectrum_file_roundtrip_and_table(problem, tmp_path):
    model, data = problem["model"], problem["data"]
    paths = []
    for target in (TARGET, "model.layers.2.self_attn.k_proj.weight"):
        spec = C.compute_spectrum(
            model, data, [target], k=2, tol=1e-6, trace_probes=4, density_probes=2, density_steps=10,
        )
        path = tmp_path / f"{target}.h5"
        C.save_spectrum(path, spec, provenance={"study": "s", "model": "tiny"})
        paths.append(path)
    spec = C.compute_spectrum(model, data, [TARGET], k=2, tol=1e-6, trace_probes=4, density_probes=2, density_steps=10)
    back, prov = C.load_spectrum(paths[0])
    assert prov == {"study": "s", "model": "tiny"}
    assert back.targets == [TARGET] and back.n_params == 128
    np.testing.assert_allclose(back.eigenvalues, problem["values"][:2], rtol=1e-3)
    assert back.lambda_min == pytest.approx(problem["values"].min(), rel=1e-3)  # among the top-2 here
    assert back.lambda_max == pytest.approx(problem["values"].max(), rel=1e-3)  # needed its own Lanczos run
    assert back.trace.trace == pytest.approx(spec.trace.trace) and back.trace.se == pytest.approx(spec.trace.se)
    np.testing.assert_array_equal(back.density.density, spec.density.density)
    assert set(back.weight_singular_values) == {TARGET}
    table = C.spectra_table(paths)
    assert list(table["target"]) == [TARGET, "model.layers.2.self_attn.k_proj.weight"]
    columns = {"lambda_1", "lambda_2", "lambda_max", "lambda_min", "lambda_ratio", "trace", "trace_se", "n_params"}
    assert columns <= set(table.columns) and len(table) == 2
    assert table["lambda_ratio"].iloc[0] == pytest.approx(back.lambda_max / abs(back.lambda_min))
    with pytest.raises(LlmscapeError):
        C.load_spectrum(tmp_path / "missing.h5")


def test_bad_targets_are_errors(problem):
    with pytest.raises(LlmscapeError, match="not in the model"):
        C.TargetLoss(problem["model"], problem["data"], ["model.layers.9.nope"])
    with pytest.raises(LlmscapeError):
        C.TargetLoss(problem["model"], problem["data"], [])
