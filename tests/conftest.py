"""Shared fixtures: a tiny random Llama saved as a local safetensors directory."""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from llmscape.data import tokenize

# Tiny models: a second thread only adds synchronization (tests ran 7x slower with two on a busy
# 2-core machine); subprocesses started by tests set their own.
torch.set_num_threads(1)
# Converted models are cached per test session (and per process tree: snakemake subprocesses
# inherit it), never in the user's ~/.cache.
os.environ["LLMSCAPE_MODEL_CACHE"] = tempfile.mkdtemp(prefix="llmscape-model-cache-")


def make_tiny_llama(path, seed: int = 0, n_layers: int = 4, hidden: int = 32, vocab: int = 96):
    """A random Llama small enough for exact checks, saved with a working tokenizer."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=n_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)
    chars = [chr(c) for c in range(32, 32 + vocab - 2)]
    vocab_map = {"<pad>": 0, "<unk>": 1, **{c: i + 2 for i, c in enumerate(chars)}}
    tok = Tokenizer(models.WordLevel(vocab_map, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>")
    model.save_pretrained(path, safe_serialization=True)
    fast.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    return make_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny(tiny_dir):
    from llmscape.models import load_prepared

    return load_prepared(tiny_dir)


@pytest.fixture
def tiny_data(tiny):
    _, tokenizer = tiny
    return tokenize(["hello world, this is a test", "short one", "loss landscapes of llms!"], tokenizer)


@dataclass
class TinyRun:
    workdir: Path  # holds config.yaml and results/tiny/
    config: dict
    seconds: float  # wall time of the run


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, tiny_dir) -> TinyRun:
    """One full run of the tiny workflow config (workflow_helpers.tiny_config), shared by the end-to-end,
    browser and reproducibility tests: it is the slowest thing in the suite."""
    from workflow_helpers import run_snakemake, tiny_config, write_config

    workdir = tmp_path_factory.mktemp("tiny-run")
    config = tiny_config(tiny_dir, shards=2, points=5)
    write_config(workdir, config)
    t0 = time.monotonic()
    run_snakemake(workdir, "--cores", "2")
    return TinyRun(workdir, config, time.monotonic() - t0)
