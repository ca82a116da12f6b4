"""The fast engine agrees with the reference engine (loss grid within 1e-4, float32)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from llmscape.data import tokenize
from llmscape.directions import random_directions
from llmscape.engine import ENGINES, JOB_DEFAULTS, Engine, build_engine, split_section
from llmscape.engine.fast import FastEngine
from llmscape.engine.reference import ReferenceEngine
from llmscape.errors import LlmscapeError
from llmscape.loss import metrics
from llmscape.models import load_prepared, tensor_shapes
from llmscape.targets import select

TOL = 1e-4
N_LAYERS = 4


def _grid(n_axes: int, n: int = 3) -> np.ndarray:
    g = np.linspace(-1.0, 1.0, n)
    return np.array(np.meshgrid(*[g] * n_axes, indexing="ij")).reshape(n_axes, -1).T


def _dirs(model, names, n_axes=2, seed=0):
    params = dict(model.named_parameters())
    return random_directions({n: params[n].detach().clone() for n in names}, n_axes, seed, "filter")


def _names(tiny_dir, patterns, layer, include_1d=False):
    return select(tensor_shapes(tiny_dir), patterns, layer, N_LAYERS, include_1d=include_1d)


def _check(model, data, dirs, engine, n_axes=2):
    pts = _grid(n_axes)
    ref = metrics(ReferenceEngine(model, data, dirs).evaluate(pts), data.n_tokens)
    got = metrics(engine.evaluate(pts), data.n_tokens)
    assert np.abs(ref["loss"] - got["loss"]).max() <= TOL
    assert np.abs(ref["token_loss"] - got["token_loss"]).max() <= TOL
    assert np.abs(ref["per_sequence_loss"] - got["per_sequence_loss"]).max() <= TOL
    assert np.abs(ref["accuracy"] - got["accuracy"]).max() <= 1e-9
    return engine


@pytest.mark.parametrize(
    ("patterns", "layer", "start"),
    [(["mlp.up_proj"], "last", 3), (["mlp.up_proj"], "first", 0), (["self_attn.q_proj", "mlp.down_proj"], 2, 2)],
)
def test_single_layer_targets(tiny, tiny_dir, tiny_data, patterns, layer, start):
    model, _ = tiny
    dirs = _dirs(model, _names(tiny_dir, patterns, layer))
    engine = _check(model, tiny_data, dirs, FastEngine(model, tiny_data, dirs))
    assert engine.start_layer == start  # prefix reuse: layers before the target run once


def test_batched_blocks_and_chunked_head(tiny, tiny_dir, tiny_data):
    model, _ = tiny
    dirs = _dirs(model, _names(tiny_dir, ["mlp.up_proj"], "last"))
    engine = FastEngine(model, tiny_data, dirs, max_block=5, head_chunk=7)  # 9 points: blocks of 5 and 4
    assert engine.block_size == 5 and engine.head_chunk < model.config.vocab_size
    _check(model, tiny_data, dirs, engine)


def test_whole_model_and_non_linear_targets(tiny, tiny_dir, tiny_data):
    model, _ = tiny
    # every tensor: all linears, the embedding, the head, every RMSNorm weight (fallback)
    names = _names(tiny_dir, ["."], "all", include_1d=True)
    dirs = _dirs(model, names)
    engine = _check(model, tiny_data, dirs, FastEngine(model, tiny_data, dirs, head_chunk=40))
    d = engine.describe()
    assert d["perturbs_embedding"] and d["perturbs_head"] and d["fallback_modules"] == 2 * N_LAYERS + 1


def test_tied_embeddings(tmp_path):
    from conftest import make_tiny_llama

    path = make_tiny_llama(tmp_path / "tied", seed=1, n_layers=2)
    # tie the head to the embedding the way SmolLM2 does
    from transformers import AutoModelForCausalLM

    m = AutoModelForCausalLM.from_pretrained(path)
    m.config.tie_word_embeddings = True
    m.tie_weights()
    m.save_pretrained(path, safe_serialization=True)
    model, tok = load_prepared(path)
    assert model.lm_head.weight is model.model.embed_tokens.weight
    data = tokenize(["tied heads", "and embeddings!"], tok)
    names = select(tensor_shapes(path), ["embed_tokens", "mlp"], "all", 2)
    dirs = _dirs(model, names)
    engine = _check(model, data, dirs, FastEngine(model, data, dirs, head_chunk=33))
    assert engine.describe()["perturbs_head"]
    _check(model, data, dirs, FastEngine(path, data, dirs, stream=True, memory_mb=64, head_chunk=50))


def test_one_direction(tiny, tiny_dir, tiny_data):
    model, _ = tiny
    dirs = _dirs(model, _names(tiny_dir, ["mlp", "self_attn"], "all"), n_axes=1)
    _check(model, tiny_data, dirs, FastEngine(model, tiny_data, dirs), n_axes=1)


def test_unequal_lengths_and_sequence_batches(tiny, tiny_dir):
    model, tok = tiny
    data = tokenize(["a much longer sequence than the others here", "ab", "mid-length one", "x y"], tok)
    assert data.attention_mask.sum(1).min() < data.attention_mask.shape[1]  # padded
    dirs = _dirs(model, _names(tiny_dir, ["."], "all"))
    _check(model, data, dirs, FastEngine(model, data, dirs, seq_batch=3))  # batches of 3 and 1 sequences


def test_streaming_matches(tiny, tiny_dir, tiny_data):
    model, _ = tiny
    for patterns, layer in ((["mlp.up_proj"], "last"), (["."], "all")):
        dirs = _dirs(model, _names(tiny_dir, patterns, layer, include_1d=True))
        engine = FastEngine(tiny_dir, tiny_data, dirs, stream=True, memory_mb=64, head_chunk=30)
        _check(model, tiny_data, dirs, engine)
        d = engine.describe()
        assert d["stream"] and d["offload"] == "disk"
        # nothing but the small final norm stays loaded between blocks
        assert all(p.device.type == "meta" for p in engine.model.model.layers.parameters())
        assert engine.model.model.embed_tokens.weight.device.type == "meta"


def test_build_engine_fast(tiny_dir, tiny_data, tiny):
    model, _ = tiny
    assert "fast" in ENGINES
    dirs = _dirs(model, _names(tiny_dir, ["mlp.up_proj"], "middle"))
    section = {
        "kind": "fast",
        "memory_mb": 256,
        "max_block": 8,
        "threads": torch.get_num_threads(),
        "checkpoint_s": 30,
        "batch_size": 8,
    }  # a config's engine section: job keys and both kinds' options
    spec, job = split_section(section)
    assert job == {"threads": torch.get_num_threads(), "checkpoint_s": 30}
    engine = build_engine(spec, tiny_dir, tiny_data, dirs)  # the reference's batch_size is ignored
    assert engine.name == "fast" and engine.block_size == 8
    assert engine.describe()["memory_mb"] == 256
    _check(model, tiny_data, dirs, engine)
    with pytest.raises(LlmscapeError, match="unknown engine option"):
        build_engine({"kind": "fast", "memroy_mb": 1}, tiny_dir, tiny_data, dirs)
    with pytest.raises(LlmscapeError, match=r"\['threads'\] are for the job"):
        build_engine({"kind": "fast", "threads": 1}, tiny_dir, tiny_data, dirs)
    with pytest.raises(LlmscapeError, match="unknown fast engine option"):  # torch threads are the job's
        FastEngine(model, tiny_data, dirs, threads=1)
    assert split_section(None) == ({}, JOB_DEFAULTS)


def test_engines_satisfy_the_protocol(tiny, tiny_dir, tiny_data):
    model, _ = tiny
    dirs = _dirs(model, _names(tiny_dir, ["mlp.up_proj"], "last"))
    built = build_engine({"kind": "reference", "batch_size": 2, "memory_mb": 64}, tiny_dir, tiny_data, dirs)
    assert built.name == "reference" and built.describe()["batch_size"] == 2  # memory_mb: the fast engine's
    for engine in (ReferenceEngine(model, tiny_data, dirs), FastEngine(model, tiny_data, dirs), built):
        assert isinstance(engine, Engine)
        assert engine.describe()["name"] == engine.name and engine.block_size >= 1
    assert not isinstance(object(), Engine)


def test_weights_bitwise_restored(tiny, tiny_dir, tiny_data):
    model, _ = tiny
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    dirs = _dirs(model, _names(tiny_dir, ["."], "all", include_1d=True))
    FastEngine(model, tiny_data, dirs, max_block=3).evaluate(_grid(2, 3))
    for n, p in model.named_parameters():
        assert torch.equal(p, before[n]), n
    # no hook or forward override left behind
    assert all(not m._forward_hooks and "forward" not in m.__dict__ for m in model.modules())


def test_memory_budget_too_small(tiny_dir, tiny_data, tiny):
    model, _ = tiny
    dirs = _dirs(model, _names(tiny_dir, ["mlp.up_proj"], "last"))
    with pytest.raises(LlmscapeError, match=r"decoder layer \d+ needs [0-9.]+ MB"):
        FastEngine(tiny_dir, tiny_data, dirs, stream=True, memory_mb=0.01)


def test_oom_retries_with_half_block(tiny, tiny_dir, tiny_data, monkeypatch):
    model, _ = tiny
    dirs = _dirs(model, _names(tiny_dir, ["mlp.up_proj"], "last"))
    engine = FastEngine(model, tiny_data, dirs, max_block=16)
    real = engine._run_block
    sizes = []

    def flaky(coeffs):
        sizes.append(len(coeffs))
        if len(coeffs) > 4:
            raise torch.OutOfMemoryError("simulated: CUDA out of memory")
        return real(coeffs)

    monkeypatch.setattr(engine, "_run_block", flaky)
    _check(model, tiny_data, dirs, engine)
    assert sizes[:2] == [9, 4] and engine.describe()["block_size_now"] == 4

    def broken(coeffs):
        raise RuntimeError("not a memory problem")

    monkeypatch.setattr(engine, "_run_block", broken)
    with pytest.raises(RuntimeError, match="not a memory problem"):
        engine.evaluate(_grid(2, 2))


def test_materialized_linear_mode(tiny, tiny_dir, tiny_data):
    model, _ = tiny
    dirs = _dirs(model, _names(tiny_dir, ["mlp", "self_attn.o_proj"], "all"))
    engine = FastEngine(model, tiny_data, dirs, linear_mode="materialize", max_block=4)
    assert engine.describe()["linear_mode"] == "materialize" and engine.describe()["linear_hooks"] == 0
    _check(model, tiny_data, dirs, engine)
    auto = FastEngine(model, tiny_data, dirs, materialize_rows=1)
    assert auto.describe()["linear_mode"] == "materialize"


def test_bfloat16_runs_close_to_reference(tiny_dir, tiny_data):
    model, _ = load_prepared(tiny_dir, "bfloat16")
    dirs = _dirs(model, _names(tiny_dir, ["."], "all"))
    pts = _grid(2, 2)
    ref = metrics(ReferenceEngine(model, tiny_data, dirs).evaluate(pts), tiny_data.n_tokens)["loss"]
    got = metrics(FastEngine(model, tiny_data, dirs).evaluate(pts), tiny_data.n_tokens)["loss"]
    assert np.abs(ref - got).max() < 0.05  # bf16: both round differently, neither is exact
