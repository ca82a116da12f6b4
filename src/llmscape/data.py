"""Evaluation sets: text in, right-padded token ids and masks out, stored once in HDF5.

BOS handling: we call the tokenizer with ``add_special_tokens=True`` and nothing
else, so each sequence starts exactly as the model's own tokenizer starts it (a BOS
token when its config adds one; SmolLM2's does not). The stored ``bos_token_id`` and
``starts_with_bos`` attributes record what happened, and every engine reads the same
stored ids.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch

from llmscape import h5io
from llmscape.errors import LlmscapeError

log = logging.getLogger("llmscape")

DEFAULT_PROMPTS = [
    "Explain recursion in simple terms.",
    "What is gradient descent?",
    "Describe how transformers work.",
]


@dataclass
class EvalSet:
    input_ids: torch.Tensor  # [N, T] int64, right-padded
    attention_mask: torch.Tensor  # [N, T] int64, 1 = real token
    texts: list[str]

    @property
    def n_tokens(self) -> np.ndarray:
        """Predicted tokens per sequence (length - 1)."""
        return (self.attention_mask.sum(dim=1) - 1).numpy().astype(np.int64)

    def __len__(self) -> int:
        return self.input_ids.shape[0]


def texts_of(data_config: dict) -> list[str]:
    """The raw texts of the config's ``data`` section: ``prompts`` (a list) or ``files`` (whole texts)."""
    kind = data_config.get("kind", "prompts")
    if kind == "prompts":
        texts = list(data_config.get("prompts") or DEFAULT_PROMPTS)
    elif kind == "files":
        texts = [Path(f).read_text(encoding="utf-8") for f in data_config["files"]]
    else:
        raise LlmscapeError(f"data.kind must be 'prompts' or 'files', got {kind!r}")
    if not texts:
        raise LlmscapeError("data: no texts given")
    return texts


def tokenize(texts: list[str], tokenizer, seq_len: int | None = None, max_sequences: int | None = None) -> EvalSet:
    """Tokenize texts into an EvalSet.

    Without ``seq_len`` each text is one sequence (prompts). With ``seq_len`` each
    text is tokenized whole and cut into consecutive windows of ``seq_len`` tokens
    (a short tail of fewer than 2 tokens is dropped: it predicts nothing). Windows are
    taken from the texts in turn (first window of each text, then the second, ...), so
    ``max_sequences`` draws on every text rather than exhausting the first one. A text
    shorter than ``seq_len`` is one window of its length, with a warning.
    """
    per_text: list[list[list[int]]] = []
    for i, text in enumerate(texts):
        ids = tokenizer(text, add_special_tokens=True)["input_ids"]
        if seq_len is None:
            if len(ids) < 2:
                raise LlmscapeError(f"prompt {text!r} tokenizes to {len(ids)} token(s); a loss needs at least 2")
            per_text.append([ids])
            continue
        if len(ids) < seq_len:
            log.warning(
                "data: text %d has %d tokens, fewer than seq_len = %d: one shorter window", i, len(ids), seq_len
            )
        windows = [ids[start : start + seq_len] for start in range(0, len(ids), seq_len)]
        per_text.append([w for w in windows if len(w) >= 2])
    pieces = [w for round_ in itertools.zip_longest(*per_text) for w in round_ if w is not None]
    if max_sequences is not None:
        pieces = pieces[:max_sequences]
    labels = list(texts)[: len(pieces)] if seq_len is None else [tokenizer.decode(p) for p in pieces]
    if not pieces:
        raise LlmscapeError("data: no sequence of at least 2 tokens could be cut from the texts")
    width = max(len(p) for p in pieces)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    input_ids = torch.full((len(pieces), width), pad, dtype=torch.long)
    mask = torch.zeros((len(pieces), width), dtype=torch.long)
    for i, p in enumerate(pieces):
        input_ids[i, : len(p)] = torch.tensor(p)
        mask[i, : len(p)] = 1
    return EvalSet(input_ids, mask, labels)


def save_eval_set(path: str | Path, data: EvalSet, attrs: dict) -> None:
    with h5io.write(path, "eval-set") as f:
        f.create_dataset("input_ids", data=data.input_ids.numpy())
        f.create_dataset("attention_mask", data=data.attention_mask.numpy())
        f.create_dataset("texts", data=np.array(data.texts, dtype=h5py.string_dtype()))
        h5io.set_attrs(f, attrs)


def load_eval_set(path: str | Path) -> EvalSet:
    with h5io.read(path, "eval-set") as f:
        return EvalSet(
            torch.from_numpy(f["input_ids"][...]),
            torch.from_numpy(f["attention_mask"][...]),
            [t.decode() if isinstance(t, bytes) else t for t in f["texts"][...]],
        )
