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
