"""The geometry section (issue #13) on tiny models: each part against an independent oracle.

- exact spectrum: the tiny Llama's exact Hessian eigenvalues against Lanczos top-3 (relative 1e-3)
  and against the Hessian formed from llmscape.curvature's HVPs; SLQ moments against the exact
  moments: each probe's quadrature equals v^T H^j v to 1e-8 relative (Gauss quadrature is exact
  for degree <= 2s - 1), and the probe average is within 4 standard errors of tr(H^j) / n;
- attention: weights equal the model's own ``output_attentions`` (eager), the scores' softmax too,
  GQA heads mapped h // (n_heads / n_kv_heads); effective rank and condition number on known matrices;
- gradients: norms equal autograd's through a plain transformers forward;
- extreme curves: centre = the loss, second difference = the stored curvature;
- sharpness labels by the stated rule on synthetic rows; config errors before any job.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from llmscape.curvature import HessianOperator, TargetLoss, compute_spectrum
from llmscape.curvature.density import rademacher
from llmscape.data import EvalSet
from llmscape.errors import LlmscapeError
from llmscape.geometry import attention, exact, extreme, gradients, settings, sharpness
from llmscape.loss import shifted_targets
from llmscape.targets import select
from llmscape.train import TrainSpec, train


def _random_data(vocab: int = 200) -> EvalSet:
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(3, vocab, (3, 10), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    ids[mask == 0] = 0
    return EvalSet(ids, mask, ["a", "b", "c"])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The tiny Llama trained (all parameters, llmscape.train) on a compacted vocabulary."""
    data, vocab = exact.compact_vocabulary(_random_data())
    spec = exact.TinySpec()
    model = exact.tiny_llama(len(vocab), spec)
    names = [n for n, _ in model.named_parameters()]
    run = train(model, data, names, TrainSpec(steps=30, lr=0.01, save_every=30), tmp_path_factory.mktemp("t") / "run")
    assert run.losses[-1] < 0.5 * run.losses[0]
    shapes = {n: tuple(p.shape) for n, p in model.named_parameters()}
    targets = select(shapes, [r"mlp\.down_proj"], "last", spec.layers)  # 512 parameters
    return model, data, targets


def test_compact_vocabulary_keeps_the_text():
    data = _random_data()
    small, ids = exact.compact_vocabulary(data)
    assert small.input_ids.max() < len(ids) and torch.equal(torch.from_numpy(ids)[small.input_ids], data.input_ids)


def test_exact_hessian_against_lanczos_and_hvps(trained, tmp_path):
    model, data, targets = trained
    h = exact.exact_hessian(model, data, targets)
    lam = np.linalg.eigh(h)[0]
    by_mag = lam[np.argsort(-np.abs(lam))]
    op = HessianOperator(TargetLoss(model, data, targets))
    cols = np.stack([op.matvec(torch.eye(op.n, dtype=torch.float64)[i]).numpy() for i in range(0, op.n, 37)])
    np.testing.assert_allclose(cols, h[::37], rtol=1e-6, atol=1e-7 * np.abs(h).max())  # two routes to H
    s = compute_spectrum(model, data, targets, k=3, tol=1e-3, max_iter=100, trace_probes=2, density_probes=4,
                         density_steps=8)  # fmt: skip
    np.testing.assert_allclose(s.eigenvalues, by_mag[:3], rtol=1e-3)
    assert abs(s.lambda_min - lam.min()) <= 1e-3 * abs(lam).max()
    # SLQ: per probe, the quadrature is exact for H^j (j <= 2 * 8 - 1) ...
    gen = torch.Generator().manual_seed(0)
    for p in range(4):
        v = rademacher(op.n, gen).numpy()
        v /= np.linalg.norm(v)
        nodes, w = np.nan_to_num(s.density.nodes[p]), s.density.weights[p]
        for j in exact.MOMENTS:
            want = v @ np.linalg.matrix_power(h, j) @ v
            assert abs((w * nodes**j).sum() - want) <= 1e-6 * abs(want)  # HVPs agree with H to ~1e-8
    # ... so the probe average differs from tr(H^j) / n only by sampling: within 4 standard errors
    m, se = exact.slq_moments(s.density.nodes, s.density.weights)
    assert np.all(np.abs(m - exact.exact_moments(lam)) <= 4 * se)
    # the file and the comparison table
    exact.save_exact(tmp_path / "e.h5", exact.ExactResult(targets, lam, [1.0, 0.5], np.arange(5), 0.1), s, {})
    e = exact.load_exact(tmp_path / "e.h5")
    assert e["attrs"]["n_params"] == 512 and np.array_equal(e["eigenvalues"], lam)
    rows = {r["quantity"]: r for r in exact.comparison_table(e, s)}
    assert set(rows) >= {"lambda_1", "lambda_3", "lambda_max", "lambda_min", "trace", "moment_1", "moment_4"}
    assert rows["trace"]["exact"] == pytest.approx(lam.sum()) and rows["lambda_1"]["rel_error"] < 1e-3


def test_attention_equals_the_models_own(tiny):
    model, tokenizer = tiny
    ids = tokenizer("the quick brown fox", return_tensors="pt")["input_ids"]
    layers = [0, 3]
    maps = attention.attention_maps(model, ids, layers)
    with torch.no_grad():
        own = model(input_ids=ids, output_attentions=True).attentions
    t = ids.shape[1]
    for i in layers:
        np.testing.assert_allclose(maps[i]["weights"], own[i][0].numpy(), atol=1e-6)
        s = maps[i]["scores"]
        assert np.isnan(s[:, np.triu_indices(t, 1)[0], np.triu_indices(t, 1)[1]]).all()  # the causal mask
        soft = torch.softmax(torch.from_numpy(np.nan_to_num(s, nan=-np.inf)), dim=-1).numpy()
        np.testing.assert_allclose(soft, own[i][0].numpy(), atol=1e-6)
        assert maps[i]["kv_head"].tolist() == [0, 0, 1, 1]  # 4 query heads share 2 kv heads


def test_scores_are_the_scaled_dot_products(tiny):
    """S[h] = q_h . k_kv(h) / sqrt(d) from the attention's own q/k (checked with a recorded pair)."""
    model, tokenizer = tiny
    ids = tokenizer("abcdef", return_tensors="pt")["input_ids"]
    with attention.recording(model, [1]) as seen, torch.no_grad():
        model(input_ids=ids)
    q, k = seen[1]["query"][0], seen[1]["key"][0]  # [heads, T, d], [kv, T, d]
    s = attention.scores_of(seen[1]["query"], seen[1]["key"], None, seen[1]["scaling"])[0]
    d = q.shape[-1]
    for h in range(4):
        torch.testing.assert_close(s[h], q[h] @ k[h // 2].T / d**0.5)


def test_head_spectra_effective_rank_and_condition(tiny):
    model, _ = tiny
    table = attention.head_spectra(model, [0])
    assert len(table) == 4 * 4 and set(table.matrix) == {"W_Q", "W_K", "W_V", "W_O"}
    q = model.model.layers[0].self_attn.q_proj.weight[8:16].double()
    row = table[(table["head"] == 1) & (table.matrix == "W_Q")].iloc[0]
    np.testing.assert_allclose(row.sigma_max, torch.linalg.svdvals(q)[0].item())
    assert attention.effective_rank(np.ones(5)) == pytest.approx(5)
    assert attention.effective_rank(np.array([3.0, 0, 0])) == pytest.approx(1)
    assert 1 <= table.erank.min() and (table.erank <= table["rank"] + 1e-9).all()
    assert (table.condition_number >= 1).all()
    assert [attention.kv_head(h, 9, 3) for h in range(9)] == [0, 0, 0, 1, 1, 1, 2, 2, 2]


def test_gradient_norms_equal_autograd(tiny, tiny_data):
    model, _ = tiny
    table = gradients.gradient_norms(model, tiny_data)
    m = copy.deepcopy(model).double()
    m.requires_grad_(True)
    ids, mask = tiny_data.input_ids, tiny_data.attention_mask
    labels, lm = shifted_targets(ids, mask)
    logits = m(input_ids=ids, attention_mask=mask).logits[:, :-1]
    nll = F.cross_entropy(logits.transpose(1, 2), labels, reduction="none")
    ((nll * lm).sum(1) / lm.sum(1)).mean().backward()
    want = {n: p.grad.norm().item() for n, p in m.named_parameters()}
    for r in table.itertuples():
        assert r.grad_norm == pytest.approx(want[r.tensor], rel=1e-4, abs=1e-9)
    layers = gradients.per_layer(table)
    l0 = table[table.layer == 0]
    assert layers[layers.layer == 0].grad_norm.item() == pytest.approx(np.sqrt((l0.grad_norm**2).sum()))
    assert set(layers[layers.part != "layer"].part) == {"model.embed_tokens.weight", "model.norm.weight",
                                                         "lm_head.weight"}  # fmt: skip


def test_extreme_curves_match_their_curvature(tiny, tiny_data):
    from llmscape.engine.fast import FastEngine

    model = copy.deepcopy(tiny[0]).double()
    names = ["model.layers.3.mlp.up_proj.weight"]
    s = compute_spectrum(model, tiny_data, names, k=2, trace_probes=2, density_probes=1, density_steps=4, vectors=True)
    assert set(s.vectors) == {"lambda_max", "lambda_min", "near_zero"}
    assert s.vectors["near_zero"][1]["residual"] >= 0 and abs(s.vectors["near_zero"][1]["rayleigh"]) < s.lambda_max
    shapes = {n: tuple(dict(model.named_parameters())[n].shape) for n in names}
    dirs = [extreme.split_flat(s.vectors[d][0], shapes) for d in extreme.DIRECTIONS]
    h = 0.1  # the engine accumulates in float32 (~1e-8 nats: 1e-6 in a second difference at this h)
    loss, centre = extreme.curves(FastEngine(model, tiny_data, dirs), tiny_data.n_tokens, np.array([-h, h]), 3)
    assert centre == pytest.approx(TargetLoss(model, tiny_data, names).value(), rel=1e-5)
    second = (loss[:, 0] + loss[:, 1] - 2 * centre) / h**2
    lam = np.array([s.vectors[d][1]["rayleigh"] for d in extreme.DIRECTIONS])
    np.testing.assert_allclose(second, lam, atol=0.01 * abs(lam).max())  # the quartic term: O(h^2)


def test_spectrum_file_keeps_the_vectors(tiny, tiny_data, tmp_path):
    from llmscape.curvature import load_spectrum, save_spectrum

    model, _ = tiny
    s = compute_spectrum(model, tiny_data, ["model.layers.3.mlp.up_proj.weight"], k=1, trace_probes=2,
                         density_probes=1, density_steps=4, vectors=True)  # fmt: skip
    save_spectrum(tmp_path / "s.h5", s)
    back, _ = load_spectrum(tmp_path / "s.h5")
    assert back.vectors["lambda_min"][0].dtype == np.float32 and back.vectors["lambda_max"][0].shape == (64 * 32,)
    assert back.vectors["near_zero"][1]["ritz_value"] == pytest.approx(s.vectors["near_zero"][1]["ritz_value"])


def test_the_sharpness_rule_on_synthetic_rows():
    rows = [
        {"group": "s", "entry": "a", "n_params": 10, "lambda_max": 10.0, "lambda_min": -0.1, "trace": 5.0},
        {"group": "s", "entry": "b", "n_params": 10, "lambda_max": 1.0, "lambda_min": -0.01, "trace": 1.0},
        {"group": "s", "entry": "c", "n_params": 10, "lambda_max": 2.0, "lambda_min": -0.5, "trace": 1.0},
        {"group": "s", "entry": "d", "n_params": 10, "lambda_max": 3.0, "lambda_min": -0.01, "trace": 1.0,
         "negative_mass": 0.4},
    ]  # fmt: skip
    t = sharpness.sharpness_table(rows, saddle_ratio=0.1, neg_mass=0.1).set_index("entry")
    # median lambda_max 2.5: a is sharp; b flat; c saddle by |lambda_min| >= 0.1 lambda_max; d saddle by its mass
    assert t.label.to_dict() == {"a": "sharp", "b": "flat", "c": "saddle", "d": "saddle"}
    assert t.loc["a", "ratio"] == pytest.approx(100) and t.loc["a", "trace_per_param"] == pytest.approx(0.5)
    nodes = np.array([[-1.0, 0.5, 2.0], [-2.0, -1.0, np.nan]])
    weights = np.array([[0.2, 0.3, 0.5], [0.4, 0.6, 0.0]])
    assert sharpness.negative_mass(nodes, weights) == pytest.approx((0.2 + 1.0) / 2)


def _config(**geometry) -> dict:
    study = {"tensors": ["x"], "layers": ["last"], "directions": {"r": {}}, "curvature": {"enabled": True}}
    return {"studies": {"seed": study}, "geometry": {"enabled": True, **geometry}}


def _section(config: dict) -> dict:
    """The section with the schema's defaults (the workflow's validate fills them)."""
    from snakemake.utils import validate
    from workflow_helpers import ROOT

    validate(config, str(ROOT / "workflow/schemas/config.schema.yaml"))
    return config


def test_config_problems_name_the_key():
    c = _section(_config())
    out = settings.problems(c)
    assert any("['curves']['study'] = 'seed': the curves need its spectrum vectors" in p for p in out)
    c = _section(_config(exact={"tensors": ["."], "layer": "all"}, curves={"enabled": False}))
    assert any("more than max_params = 4000" in p for p in settings.problems(c))
    c = _section(_config(exact={"tensors": ["mlp["]}, curves={"enabled": False}))
    assert any("not a regular expression" in p for p in settings.problems(c))
    c = _section(_config(exact={"model": {"heads": 3}}, curves={"enabled": False}))
    assert any("heads = 3 must divide hidden = 16" in p for p in settings.problems(c))
    c = _section(_config(curves={"study": "nope"}))
    assert any("'nope': no such study" in p for p in settings.problems(c))
    with pytest.raises(LlmscapeError, match="must divide"):
        exact.tiny_llama(5, exact.TinySpec(heads=3))


def _workflow_config(model_dir) -> dict:
    from workflow_helpers import tiny_config

    config = tiny_config(model_dir, shards=1, points=3)
    config["studies"]["layers"]["curvature"] |= {"vectors": True}
    config["geometry"] = {
        "enabled": True,
        "exact": {"train": {"steps": 20}, "tensors": [r"mlp\.down_proj"], "trace_probes": 4, "density_probes": 2,
                  "density_steps": 6},
        "curves": {"study": "layers", "points": 3},
        "attention": {"prompt": "hello world", "layers": ["first", -1]},
    }  # fmt: skip
    return config


def test_a_dry_run_plans_the_geometry_jobs_and_a_bad_section_stops_before_any(tmp_path, tiny_dir):
    import re

    from workflow_helpers import run_snakemake, write_config

    write_config(tmp_path, _workflow_config(tiny_dir))
    out = run_snakemake(tmp_path, "-n").stdout
    for rule in ("geometry_exact", "geometry_theta", "geometry_report"):
        assert re.search(rf"^{rule}\s+1", out, re.M), f"{rule} missing from the dry run"
    bad = _workflow_config(tiny_dir)
    bad["studies"]["layers"]["curvature"]["vectors"] = False
    write_config(tmp_path, bad)
    proc = run_snakemake(tmp_path, "-n", check=False)
    assert proc.returncode != 0 and "the curves need its spectrum vectors" in proc.stderr
    assert not (tmp_path / "results").exists()


def test_a_study_named_geometry_is_refused():
    c = _section(_config(curves={"enabled": False}))
    c["studies"]["Geometry"] = c["studies"]["seed"]
    assert any("study named 'Geometry': its files would collide with the geometry" in p for p in settings.problems(c))
