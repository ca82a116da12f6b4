"""Evaluation sets: text in, right-padded token ids and masks out, stored once in HDF5.

BOS handling: we call the tokenizer with ``add_special_tokens=True`` and nothing
else, so each sequence starts exactly as the model's own tokenizer starts it (a BOS
token when its config adds one; SmolLM2's does not). The stored ``bos_token_id`` and
``starts_with_bos`` attributes record what happened, and every engine reads the same
stored ids.

What an evaluation set predicts is its ``Targets``: by default every next token of every
sequence, summed per sequence (column = row). A set may instead name its predictions
explicitly, as (row, position, label, column) quadruples: position ``pos`` of ``row``
predicts ``label`` and the NLL is summed into output column ``column``. Capability probes
(llmscape.probes) use this: a row holds a shared context once, and each answer choice's
tokens are targets at their positions, summed into one column per choice, so that column's
NLL is minus the choice's log-likelihood. Every engine reports statistics per column.
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
class Targets:
    """Which position of which row predicts which token, and the output column its NLL is summed into."""

    row: np.ndarray  # [M] int64: row of the evaluation set
    pos: np.ndarray  # [M] int64: the position whose output predicts ``label`` (< the row's length)
    label: np.ndarray  # [M] int64: the predicted token id
    column: np.ndarray  # [M] int64: output column, 0 .. n_columns - 1
    n_columns: int

    def of_rows(self, rows: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The targets of some rows: (index of the row within ``rows``, pos, label, column), in ``rows`` order."""
        rows = np.asarray(rows.cpu() if isinstance(rows, torch.Tensor) else rows, dtype=np.int64)
        where = np.full(int(max(rows.max(initial=-1), self.row.max(initial=-1))) + 1, -1, dtype=np.int64)
        where[rows] = np.arange(len(rows))
        local = where[self.row]
        keep = np.flatnonzero(local >= 0)
        keep = keep[np.argsort(local[keep], kind="stable")]
        return local[keep], self.pos[keep], self.label[keep], self.column[keep]

    def counts(self) -> np.ndarray:
        """Targets per column."""
        return np.bincount(self.column, minlength=self.n_columns).astype(np.int64)


def next_token_targets(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> Targets:
    """Every next token of every row (a position predicts when it and the next token are real), column = row."""
    real = attention_mask.bool()
    pred = real[:, 1:] & real[:, :-1]
    row, pos = (t.numpy().astype(np.int64) for t in pred.nonzero(as_tuple=True))
    label = input_ids[:, 1:][pred].numpy().astype(np.int64)
    return Targets(row, pos, label, row.copy(), int(input_ids.shape[0]))


@dataclass
class EvalSet:
    input_ids: torch.Tensor  # [N, T] int64, right-padded
    attention_mask: torch.Tensor  # [N, T] int64, 1 = real token
    texts: list[str]
    targets: Targets | None = None  # None: every next token, one column per row (next_token_targets)

    def predictions(self) -> Targets:
        """What this set predicts (module docstring): its explicit targets, else every next token."""
        if self.targets is not None:
            return self.targets
        return next_token_targets(self.input_ids, self.attention_mask)

    @property
    def n_columns(self) -> int:
        return len(self) if self.targets is None else self.targets.n_columns

    @property
    def n_tokens(self) -> np.ndarray:
        """Predicted tokens per output column (per sequence by default: its length - 1)."""
        if self.targets is None:
            return (self.attention_mask.sum(dim=1) - 1).numpy().astype(np.int64)
        return self.targets.counts()

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


def texts_for(data_config: dict, tokenizer) -> tuple[list[str], bool]:
    """The config's texts as the model reads them, and whether they went through the chat template: with
    ``chat`` (instruct models, kind prompts) each prompt is the user turn of a one-turn conversation."""
    texts = texts_of(data_config)
    if not data_config.get("chat"):
        return texts, False
    return [chat_context(tokenizer, t) for t in texts], True


def chat_context(tokenizer, user: str) -> str:
    """A one-turn conversation with ``user``'s message under the model's chat template, ready for the reply."""
    if not getattr(tokenizer, "chat_template", None):
        raise LlmscapeError("data.chat and chat probe sets need a chat template; this model's tokenizer has none")
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": user}], tokenize=False, add_generation_prompt=True
    )


def tokenize(
    texts: list[str],
    tokenizer,
    seq_len: int | None = None,
    max_sequences: int | None = None,
    templated: bool = False,
) -> EvalSet:
    """Tokenize texts into an EvalSet.

    ``templated`` texts went through the chat template (``chat_context``), which writes the model's
    special tokens itself: they are tokenized without adding them again.

    Without ``seq_len`` each text is one sequence (prompts). With ``seq_len`` each
    text is tokenized whole and cut into consecutive windows of ``seq_len`` tokens
    (a short tail of fewer than 2 tokens is dropped: it predicts nothing). Windows are
    taken from the texts in turn (first window of each text, then the second, ...), so
    ``max_sequences`` draws on every text rather than exhausting the first one. A text
    shorter than ``seq_len`` is one window of its length, with a warning.
    """
    per_text: list[list[list[int]]] = []
    for i, text in enumerate(texts):
        ids = tokenizer(text, add_special_tokens=not templated)["input_ids"]
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
