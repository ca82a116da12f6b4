"""The loss definition, checked against transformers' own loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from llmscape.data import tokenize
from llmscape.engine.reference import ReferenceEngine
from llmscape.errors import LlmscapeError
from llmscape.loss import SequenceStats, metrics


def test_unperturbed_loss_equals_transformers_per_sequence(tiny, tiny_data):
    model, _ = tiny
    direction = {"model.layers.0.mlp.up_proj.weight": torch.zeros(64, 32)}
    stats = ReferenceEngine(model, tiny_data, [direction]).evaluate(np.zeros((1, 1)))
    per_seq = metrics(stats, tiny_data.n_tokens)["per_sequence_loss"][0]
    for i in range(len(tiny_data)):
        n = int(tiny_data.attention_mask[i].sum())
        ids = tiny_data.input_ids[i : i + 1, :n]
        with torch.no_grad():
            expected = model(input_ids=ids, labels=ids).loss.item()
        assert per_seq[i] == pytest.approx(expected, abs=1e-5)


def test_metric_definitions():
    stats = SequenceStats(nll_sum=np.array([[2.0, 9.0]]), correct=np.array([[1.0, 3.0]]))
    m = metrics(stats, np.array([2, 3]))
    assert m["per_sequence_loss"][0].tolist() == [1.0, 3.0]
    assert m["loss"][0] == 2.0  # mean of per-sequence means
    assert m["token_loss"][0] == pytest.approx(11 / 5)  # token-weighted
    assert m["accuracy"][0] == pytest.approx(4 / 5)


def test_short_prompt_is_a_clear_error(tiny):
    _, tokenizer = tiny
    with pytest.raises(LlmscapeError, match="at least 2"):
        tokenize(["x"], tokenizer)


def test_files_cut_into_windows(tiny):
    _, tokenizer = tiny
    data = tokenize(["abcdefghij"], tokenizer, seq_len=4)
    assert data.input_ids.shape == (3, 4)  # 4 + 4 + 2 tokens
    assert data.n_tokens.tolist() == [3, 3, 1]
    assert data.attention_mask[2].tolist() == [1, 1, 0, 0]
