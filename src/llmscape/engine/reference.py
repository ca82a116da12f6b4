"""The reference engine: one full forward pass per grid point, nothing clever.

It is the ground truth every fast path is tested and benchmarked against, so it
stays as plain as possible. The only care taken is in writing the weights: the live
tensor is set to theta* + sum_k c_k d_k computed from untouched originals, never by
adding and subtracting steps (which drifts, badly in bf16), and the originals are
written back bitwise when the engine is closed.
"""

from __future__ import annotations

import numpy as np
import torch

from llmscape.data import EvalSet
from llmscape.directions import Direction
from llmscape.engine import OPTION_DEFAULTS
from llmscape.loss import SequenceStats


class PerturbedWeights:
    """Writes theta* + sum_k c_k d_k into a model's target tensors, restoring theta* on close."""

    def __init__(self, model: torch.nn.Module, directions: list[Direction]):
        params = dict(model.named_parameters())
        self.names = list(directions[0])
        self.live = {n: params[n] for n in self.names}
        self.origin = {n: p.detach().clone() for n, p in self.live.items()}
        self.directions = [{n: d[n].to(p.device, torch.float32) for n, p in self.live.items()} for d in directions]

    @torch.no_grad()
    def set(self, coeffs) -> None:
        for n, p in self.live.items():
            w = self.origin[n].float()
            for c, d in zip(coeffs, self.directions, strict=True):
                w = torch.add(w, d[n], alpha=float(c))
            p.copy_(w)

    @torch.no_grad()
    def restore(self) -> None:
        for n, p in self.live.items():
            p.copy_(self.origin[n])


class ReferenceEngine:
    name = "reference"

    def __init__(
        self,
        model: torch.nn.Module,
        data: EvalSet,
        directions: list[Direction],
        batch_size: int = OPTION_DEFAULTS["batch_size"],
    ):
        self.model = model
        self.device = next(model.parameters()).device
        self.data = data
        self.batch_size = batch_size
        self.perturbed = PerturbedWeights(model, directions)
        self.block_size = 1

    @torch.no_grad()
    def _stats_at_current_weights(self) -> tuple[np.ndarray, np.ndarray]:
        """Summed NLL and argmax-correct count per output column: the model's full logits, the
        evaluation set's targets (every next token by default, llmscape.data.Targets) picked out
        and scored in float64."""
        targets = self.data.predictions()
        nll = torch.zeros(targets.n_columns, dtype=torch.float64)
        correct = torch.zeros(targets.n_columns, dtype=torch.float64)
        for start in range(0, len(self.data), self.batch_size):
            rows = np.arange(start, min(start + self.batch_size, len(self.data)))
            ids = self.data.input_ids[rows].to(self.device)
            mask = self.data.attention_mask[rows].to(self.device)
            logits = self.model(input_ids=ids, attention_mask=mask).logits
            local, pos, label, column = (torch.as_tensor(x) for x in targets.of_rows(rows))
            picked = logits[local.to(self.device), pos.to(self.device)].double().cpu()
            token_nll = torch.logsumexp(picked, dim=1) - picked.gather(1, label.unsqueeze(1)).squeeze(1)
            nll.index_add_(0, column, token_nll)
            correct.index_add_(0, column, (picked.argmax(dim=1) == label).double())
        return nll.numpy(), correct.numpy()

    def set_directions(self, directions: list[Direction]) -> None:
        """Evaluate along other directions from now on (theta* is restored after every evaluate)."""
        self.perturbed = PerturbedWeights(self.model, directions)

    def describe(self) -> dict:
        return {
            "name": self.name,
            "batch_size": self.batch_size,
            "device": str(self.device),
            "dtype": str(next(self.model.parameters()).dtype).removeprefix("torch."),
        }

    def evaluate(self, coeffs: np.ndarray) -> SequenceStats:
        """Statistics at each point of ``coeffs`` [P, n_axes]; weights restored afterwards."""
        nll, correct = [], []
        try:
            for point in np.atleast_2d(coeffs):
                self.perturbed.set(point)
                s, c = self._stats_at_current_weights()
                nll.append(s)
                correct.append(c)
        finally:
            self.perturbed.restore()
        return SequenceStats(np.stack(nll), np.stack(correct))
