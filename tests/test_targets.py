"""Target resolution: symbolic layer positions and patterns."""

from __future__ import annotations

import pytest

from llmscape.errors import LlmscapeError
from llmscape.targets import layer_index, resolve_layer, select

SHAPES = {f"model.layers.{i}.{t}.weight": (8, 4) for i in range(30) for t in ("mlp.up_proj", "self_attn.q_proj")}
SHAPES |= {f"model.layers.{i}.input_layernorm.weight": (4,) for i in range(30)}
SHAPES |= {"model.embed_tokens.weight": (10, 4), "model.norm.weight": (4,)}


@pytest.mark.parametrize(
    "pos, n, idx",
    [
        ("first", 30, 0),
        ("middle", 30, 15),
        ("last", 30, 29),
        ("-1", 4, 3),
        (2, 4, 2),
        ("middle", 4, 2),
        ("all", 4, None),
    ],
)
def test_positions(pos, n, idx):
    assert resolve_layer(pos, n) == idx


def test_select_per_layer_and_all():
    assert select(SHAPES, [r"mlp\.up_proj"], "last", 30) == ["model.layers.29.mlp.up_proj.weight"]
    assert len(select(SHAPES, ["proj"], "all", 30)) == 60
    assert "model.embed_tokens.weight" in select(SHAPES, ["embed"], "all", 30)
    assert len(select(SHAPES, ["norm"], "all", 30, include_1d=True)) == 31  # 30 layer norms + the final norm


def test_1d_tensors_only_when_asked():
    with pytest.raises(LlmscapeError):
        select(SHAPES, ["layernorm"], 3, 30)
    assert select(SHAPES, ["layernorm"], 3, 30, include_1d=True) == ["model.layers.3.input_layernorm.weight"]


def test_errors_name_pattern_and_examples():
    with pytest.raises(
        LlmscapeError, match=r"match no tensor in layer 'first'.*valid names look like: model\.layers\.0"
    ):
        select(SHAPES, [r"mlp\.down"], "first", 30)
    with pytest.raises(LlmscapeError, match="out of range"):
        resolve_layer(30, 30)
    with pytest.raises(LlmscapeError, match="first/middle/last"):
        resolve_layer("top", 30)


def test_layer_index():
    assert layer_index("model.layers.12.mlp.up_proj.weight") == 12
    assert layer_index("lm_head.weight") is None


GPT2 = {f"transformer.h.{i}.{t}.weight": (4, 12) for i in range(3) for t in ("attn.c_attn", "mlp.c_fc")}
GPT2 |= {"transformer.wte.weight": (10, 4), "transformer.wpe.weight": (8, 4), "transformer.ln_f.weight": (4,)}


def test_layer_prefix_found_from_names_of_any_family():
    assert select(GPT2, [r"attn\.c_attn"], "last", 3) == ["transformer.h.2.attn.c_attn.weight"]
    assert layer_index("transformer.h.1.mlp.c_fc.weight", "transformer.h") == 1
    assert layer_index("transformer.wte.weight", "transformer.h") is None
    assert layer_index("model.decoder.layers.7.fc1.weight") == 7  # without a prefix: the first number
    experts = {f"model.layers.{i}.mlp.experts.{e}.w1.weight": (4, 4) for i in range(2) for e in range(2)}
    assert select(experts, ["w1"], 1, 2) == [f"model.layers.1.mlp.experts.{e}.w1.weight" for e in range(2)]
    with pytest.raises(LlmscapeError, match="cannot tell where the 5 decoder layers are"):
        select(GPT2, ["c_fc"], "first", 5)
