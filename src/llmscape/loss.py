"""The landscape loss: causal next-token cross-entropy, per sequence then averaged.

Engines reduce a forward pass to per-sequence sufficient statistics (summed token
NLL and the number of correct next-token guesses); every reported metric is derived
from those here, so all engines share one definition of "the loss".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass
class SequenceStats:
    """Per grid point and sequence: summed NLL and correct predictions ([P, N])."""

    nll_sum: np.ndarray
    correct: np.ndarray


def shifted_targets(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels for positions 0..T-2 (the next token) and a mask of predicted tokens.

    A position predicts a token only when both it and the next token are real
    (padding is on the right, so this is "next token is not padding").
    """
    labels = input_ids[:, 1:]
    mask = attention_mask[:, 1:].bool() & attention_mask[:, :-1].bool()
    return labels, mask


def token_nll_and_correct(
    logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed NLL and correct-guess counts per row, from logits [B, T-1, V].

    Computed in float64 whatever the model dtype: this is the reference definition, and
    a float32 log-softmax over a 49k-word vocabulary is off by ~1e-4 nats, as large as
    the differences near the minimum that a landscape is meant to show.
    """
    logits = logits.double()
    nll = F.cross_entropy(logits.transpose(1, 2), labels, reduction="none")
    correct = logits.argmax(dim=-1) == labels
    m = mask.to(nll.dtype)
    return (nll * m).sum(dim=1), (correct.to(nll.dtype) * m).sum(dim=1)


def metrics(stats: SequenceStats, n_tokens: np.ndarray) -> dict[str, np.ndarray]:
    """All stored metrics for each point, from per-sequence statistics.

    loss: mean over sequences of each sequence's mean token NLL (the landscape).
    token_loss: NLL averaged over all predicted tokens (long sequences weigh more).
    accuracy: fraction of predicted tokens guessed right (argmax).
    per_sequence_loss: [P, N] each sequence's mean token NLL.
    """
    n_tokens = np.asarray(n_tokens, dtype=np.float64)
    per_seq = stats.nll_sum / n_tokens
    return {
        "loss": per_seq.mean(axis=-1),
        "token_loss": stats.nll_sum.sum(axis=-1) / n_tokens.sum(),
        "accuracy": stats.correct.sum(axis=-1) / n_tokens.sum(),
        "per_sequence_loss": per_seq,
    }
