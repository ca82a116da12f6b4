"""Every decoder-only family transformers loads: landscapes, Hessians, weight spectra, targets.

One tiny random model per family (2 layers, hidden 32, vocabulary 96, the conftest's
char-level tokenizer), built once per module. The oracle of a landscape is a plain
transformers forward with the weights written as theta* + a d + b e
(``torch.func.functional_call``) and the model's own ``labels=`` loss per unpadded
sequence; the oracle of curvature is the exact Hessian (tests/curvature_helpers.py).
Families differ where it matters: GPT-2 (Conv1D weights, fused qkv, learned positions,
``transformer.h``), GPT-NeoX (``gpt_neox.layers``, fused qkv), OPT (``model.decoder.layers``,
learned positions, project_in/out), Phi (partial rotary, head bias), Gemma2 (scaled
embedding, sliding-window layers, final logit softcapping), Qwen2 (a sliding-window layer),
Mistral (sliding window), Cohere (logit_scale: a logit transform llmscape does not know, so
the engines fall back to the model's own logits). BERT as a LM head model is refused.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_tiny_llama
from curvature_helpers import exact_hessian

from llmscape.architecture import discover, layer_prefix, layout_of_dir
from llmscape.curvature import HessianOperator, Lanczos, TargetLoss
from llmscape.data import tokenize
from llmscape.directions import random_directions
from llmscape.engine.fast import FastEngine
from llmscape.engine.reference import ReferenceEngine
from llmscape.errors import LlmscapeError
from llmscape.loss import metrics
from llmscape.models import load_prepared, n_layers, prepare_model, read_tensors, tensor_shapes
from llmscape.targets import select
from llmscape.weight_spectra import layer_matrices, weight_spectra, weight_spectra_table

TEXTS = ["hello world, this is a test", "short one", "loss landscapes!"]  # 27, 9, 16 tokens: padded
POINTS = np.array([[0.0, 0.0], [0.6, -0.4], [-1.0, 0.8]])
TOL = 1e-4


def _configs() -> dict:
    import transformers as T

    tokens = {"vocab_size": 96, "pad_token_id": 0, "bos_token_id": None, "eos_token_id": None}
    common = {**tokens, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4}
    rope = {**common, "intermediate_size": 64, "max_position_embeddings": 128}
    return {
        "llama": lambda: T.LlamaConfig(**rope, num_key_value_heads=2, tie_word_embeddings=False),
        "qwen2": lambda: T.Qwen2Config(
            **rope, num_key_value_heads=2, use_sliding_window=True, sliding_window=4, max_window_layers=1
        ),
        "qwen3": lambda: T.Qwen3Config(**rope, num_key_value_heads=2, head_dim=8, tie_word_embeddings=False),
        "mistral": lambda: T.MistralConfig(**rope, num_key_value_heads=2, sliding_window=4),
        # hidden 16: OLMo's norms have no weights, the smallest target is a 16 x 16 matrix (exact Hessian cost)
        "olmo": lambda: T.OlmoConfig(**(rope | {"hidden_size": 16, "num_attention_heads": 2})),
        "gemma2": lambda: T.Gemma2Config(
            **rope, num_key_value_heads=2, head_dim=8, sliding_window=4, final_logit_softcapping=2.0
        ),
        "phi": lambda: T.PhiConfig(**rope, partial_rotary_factor=0.5),
        "opt": lambda: T.OPTConfig(
            **common, ffn_dim=64, max_position_embeddings=128, word_embed_proj_dim=16, init_std=0.2
        ),
        "gpt2": lambda: T.GPT2Config(**tokens, n_embd=32, n_layer=2, n_head=4, n_positions=128),
        "gpt_neox": lambda: T.GPTNeoXConfig(**rope, rotary_pct=0.5),
        "cohere": lambda: T.CohereConfig(**rope, num_key_value_heads=2, logit_scale=0.5),
    }


FAMILIES = list(_configs())


def save_with_tokenizer(model, path: Path) -> Path:
    """``model`` saved at ``path`` with the conftest's char-level tokenizer (as a hub download would be)."""
    make_tiny_llama(path, n_layers=2)  # for its tokenizer; the weights are replaced below
    for f in path.glob("*.safetensors"):
        f.unlink()
    model.save_pretrained(path, safe_serialization=True)
    return path


def build(family: str, path: Path) -> Path:
    """A tiny random model of ``family`` saved at ``path`` with the conftest's char-level tokenizer."""
    from transformers import AutoModelForCausalLM

    config = _configs()[family]()
    config.initializer_range = 0.2  # large enough that the landscape is far from uniform logits
    torch.manual_seed(0)
    return save_with_tokenizer(AutoModelForCausalLM.from_config(config), path)


@dataclass
class Family:
    name: str
    path: Path
    model: torch.nn.Module
    data: object


@pytest.fixture(scope="module", params=FAMILIES)
def fam(request, tmp_path_factory) -> Family:
    source = build(request.param, tmp_path_factory.mktemp(request.param) / "source")
    path = source.parent / "prepared"
    prepare_model(str(source), path)  # as the workflow does: the model's own parameter names
    model, tok = load_prepared(path)
    return Family(request.param, path, model, tokenize(TEXTS, tok))


def oracle(model, data, directions, points) -> np.ndarray:
    """Per point and sequence: the model's own ``labels=`` loss on the unpadded sequence at theta* + sum c d."""
    params = dict(model.named_parameters())
    out = []
    for coeffs in points:
        tensors = {}
        for name in directions[0]:
            w = params[name].detach().double()
            for c, d in zip(coeffs, directions, strict=True):
                w = w + float(c) * d[name].double()
            tensors[name] = w.to(params[name].dtype)
        row = []
        for ids, mask in zip(data.input_ids, data.attention_mask, strict=True):
            seq = ids[: int(mask.sum())].unsqueeze(0)
            with torch.no_grad():
                row.append(
                    float(torch.func.functional_call(model, tensors, (), {"input_ids": seq, "labels": seq}).loss)
                )
        out.append(row)
    return np.array(out)


def _directions(fam: Family, names: list[str], seed: int = 0):
    return random_directions(read_tensors(fam.path, names), 2, seed, "filter", layout_of_dir(fam.path).transposed)


def _losses(engine, data) -> np.ndarray:
    return metrics(engine.evaluate(POINTS), data.n_tokens)["per_sequence_loss"]


@pytest.mark.parametrize("layer", ["first", "last"])
def test_layer_landscape_matches_transformers(fam, layer):
    # every 2-D weight of the layer: attention (fused qkv in GPT-2 / NeoX, Conv1D in GPT-2) and MLP
    names = select(tensor_shapes(fam.path), ["."], layer, n_layers(fam.path))
    dirs = _directions(fam, names)
    want = oracle(fam.model, fam.data, dirs, POINTS)
    assert np.ptp(want[:, 0]) > 1e-2  # the points differ: the check has teeth
    ref = _losses(ReferenceEngine(fam.model, fam.data, dirs), fam.data)
    fast = FastEngine(fam.model, fam.data, dirs, max_block=2, head_chunk=40)  # blocks of 2 and 1, 3 chunks
    np.testing.assert_allclose(ref, want, atol=TOL, rtol=0)
    np.testing.assert_allclose(_losses(fast, fam.data), want, atol=TOL, rtol=0)
    scratch = FastEngine(fam.model, fam.data, dirs, linear_mode="materialize")  # per-point weights, Conv1D too
    np.testing.assert_allclose(_losses(scratch, fam.data), want, atol=TOL, rtol=0)
    d = fast.describe()
    # prefix reuse everywhere, but for the head transform llmscape does not know (Cohere's logit_scale)
    assert d["path"] == ("logits" if fam.name == "cohere" else "layers")
    if d["path"] == "layers":
        assert d["start_layer"] == (0 if layer == "first" else 1)


def test_whole_model_landscape_matches_transformers(fam):
    # every tensor, 1-D included: embedding (tied head where tied), position embeddings, norms, biases, head
    names = select(tensor_shapes(fam.path), ["."], "all", n_layers(fam.path), include_1d=True)
    dirs = _directions(fam, names, seed=1)
    for d in dirs:  # the landscape of a whole model at scale 1 is all noise: keep it near theta*
        for n in d:
            d[n] *= 0.2
    want = oracle(fam.model, fam.data, dirs, POINTS)
    np.testing.assert_allclose(_losses(ReferenceEngine(fam.model, fam.data, dirs), fam.data), want, atol=TOL, rtol=0)
    fast = FastEngine(fam.model, fam.data, dirs, max_block=2)
    np.testing.assert_allclose(_losses(fast, fam.data), want, atol=TOL, rtol=0)
    # learned position embeddings (GPT-2 wpe, OPT embed_positions, OPT project_in) run per point
    outside = {"gpt2": "pointwise", "opt": "pointwise", "cohere": "logits"}
    assert fast.describe()["path"] == outside.get(fam.name, "layers")


def test_embedding_and_head_landscape(fam):
    model = fam.model
    params = {id(p): n for n, p in model.named_parameters()}
    names = [params[id(model.get_input_embeddings().weight)]]
    head = model.get_output_embeddings()
    names += [params[id(p)] for p in head.parameters() if id(p) in params and params[id(p)] not in names]
    dirs = _directions(fam, names, seed=2)
    want = oracle(model, fam.data, dirs, POINTS)
    fast = FastEngine(model, fam.data, dirs, max_block=3, head_chunk=50)
    np.testing.assert_allclose(_losses(fast, fam.data), want, atol=TOL, rtol=0)
    # an embedding that is not the input of layer 0 (GPT-2, OPT add positions) runs the base model per block
    expected = {"gpt2": "base", "opt": "base", "cohere": "logits"}
    assert fast.describe()["path"] == expected.get(fam.name, "layers")


def _small_target(model, layer: int) -> str:
    """The smallest tensor of a decoder layer (a norm weight or a bias; OLMo's norms have none: a matrix)."""
    prefix = discover(model, verify=False).layout.prefix + f".{layer}."
    return min((p.numel(), n) for n, p in model.named_parameters() if n.startswith(prefix))[1]


def test_hessian_matches_exact(fam):
    model = copy.deepcopy(fam.model).double()
    # padding (3) shorter than the sliding windows (4): in float64, transformers' mask leaves a padded
    # position that sees no key at all with NaN attention weights (float32 does not overflow there)
    _, tok = load_prepared(fam.path)
    data = tokenize(["hello world!", "short one", "landscape"], tok)
    targets = [_small_target(model, 1)]
    if fam.name == "phi":  # a head bias: the chunked head's extra column
        targets = ["lm_head.bias"]
    exact = exact_hessian(model, data, targets[0])
    loss = TargetLoss(model, data, targets, vocab_chunk=40)
    assert (loss.prefix is not None) == (fam.name not in ("phi", "cohere"))  # layer 1 target: layer 0 reused
    assert loss.head_mode == {"gemma2": "softcap", "cohere": "model"}.get(fam.name, "chunked")
    assert loss.value() == pytest.approx(float(exact["ref"](exact["flat"])), rel=1e-9)
    op = HessianOperator(loss)
    v = torch.randn(op.n, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    torch.testing.assert_close(op.matvec(v), exact["H"] @ v, rtol=1e-5, atol=1e-7)
    top = Lanczos(tol=1e-8, max_iter=op.n, seed=0).eigenpairs(op, 1).eigenvalues[0]
    assert top == pytest.approx(exact["values"][0], rel=1e-4)


def test_weight_spectra_and_target_selection(fam):
    shapes = tensor_shapes(fam.path)
    # prepared under the model's own names (transformers 5 would write GPT-NeoX's lm_head as embed_out)
    assert set(shapes) == {name for name, _ in fam.model.named_parameters()}
    n = n_layers(fam.path)
    assert n == 2
    layout = layout_of_dir(fam.path)
    assert layer_prefix(shapes, n) == layout.prefix
    assert bool(layout.transposed) == (fam.name == "gpt2")  # Conv1D weights
    spectra = weight_spectra(fam.model)
    assert set(spectra) == set(layer_matrices(shapes, layout.prefix)) and len(spectra) >= 4
    table = weight_spectra_table(spectra, layout.prefix)
    assert sorted(set(table["layer"])) == [0, 1] and table["matrix"].notna().all()
    last = select(shapes, ["."], "last", n)
    assert last and all(name.startswith(f"{layout.prefix}.1.") for name in last)


def test_streaming_takes_llama_layout_families_only(tmp_path):
    path = build("qwen3", tmp_path / "qwen3")
    model, tok = load_prepared(path)
    data = tokenize(TEXTS, tok)
    names = select(tensor_shapes(path), ["mlp"], "last", 2)
    dirs = random_directions(read_tensors(path, names), 2, 0, "filter")
    want = _losses(ReferenceEngine(model, data, dirs), data)
    got = _losses(FastEngine(path, data, dirs, stream=True, memory_mb=64), data)
    np.testing.assert_allclose(got, want, atol=TOL, rtol=0)
    gpt2 = build("gpt2", tmp_path / "gpt2")
    gpt2_dirs = random_directions(read_tensors(gpt2, ["transformer.h.1.attn.c_attn.weight"]), 1, 0, "filter")
    with pytest.raises(LlmscapeError, match="stream: true .*'gpt2' is not one of the Llama-layout families"):
        FastEngine(gpt2, data, gpt2_dirs, stream=True)
    qwen2 = build("qwen2", tmp_path / "qwen2")  # a sliding window of 4 over sequences of 22 tokens
    qwen2_dirs = random_directions(read_tensors(qwen2, ["model.layers.1.mlp.up_proj.weight"]), 1, 0, "filter")
    with pytest.raises(LlmscapeError, match=r"sliding-window attention \(window 4\)"):
        FastEngine(qwen2, data, qwen2_dirs, stream=True)


def test_encoder_is_refused(tmp_path):
    from transformers import BertConfig, BertLMHeadModel

    config = BertConfig(vocab_size=96, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
    torch.manual_seed(0)
    path = save_with_tokenizer(BertLMHeadModel(config), tmp_path / "bert")
    with pytest.raises(LlmscapeError, match=r"BertLMHeadModel .*'bert'.* is not a causal language model"):
        load_prepared(path)
    with pytest.raises(LlmscapeError, match="not a causal language model"):
        prepare_model(str(path), tmp_path / "prepared")
    assert not (tmp_path / "prepared" / "manifest.json").exists()
