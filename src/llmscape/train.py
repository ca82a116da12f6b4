"""Short training runs on the landscape loss: the one routine behind fine-tune directions and training dynamics.

Step t updates only the trained tensors theta (the rest of the model stays at theta*):

    g_t = grad_theta L_B(theta_t),   L_B = mean over the batch B of each sequence's mean token NLL

(the landscape's own loss, llmscape.loss, on a mini-batch), then

    SGD:    theta_{t+1} = theta_t - lr * g_t
    AdamW:  theta_{t+1} = theta_t - lr * (m_hat / (sqrt(v_hat) + eps) + weight_decay * theta_t)

with ``torch.optim``'s implementations. Batches walk through a seeded permutation of the
sequences, epoch after epoch, so a run is the same on any machine.

Every ``save_every`` steps (and at step 0 and the last step) the trained tensors are
written as ``step-<t>.safetensors`` into the run directory; beside them ``state.pt``
(optimizer state and step, for resuming) and ``history.json`` (the loss at every step).
The run is built in ``<out>.partial`` and renamed to ``<out>`` when finished, so a
directory that exists is complete; a rerun after a kill resumes from the partial
directory's last checkpoint. A non-finite loss stops the run at once: the saved steps
before it are kept, ``history.json`` says ``stopped: "non-finite loss at step t"``, and
the run still completes (a diverged run is a result, not a crash), with a warning.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from llmscape.data import EvalSet
from llmscape.errors import LlmscapeError
from llmscape.loss import shifted_targets

log = logging.getLogger("llmscape")
OPTIMIZERS = ("sgd", "adamw")


@dataclass(frozen=True)
class TrainSpec:
    steps: int
    lr: float
    optimizer: str = "adamw"
    batch_size: int = 8
    save_every: int = 1
    weight_decay: float = 0.0
    seed: int = 0

    def check(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise LlmscapeError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if not self.lr > 0:
            raise LlmscapeError(f"learning rate must be > 0, got {self.lr}")
        if self.steps < 1:
            raise LlmscapeError(f"steps must be >= 1, got {self.steps}")
        if not 1 <= self.save_every <= self.steps:
            raise LlmscapeError(f"save_every = {self.save_every} must be between 1 and steps = {self.steps}")

    def saved_steps(self) -> list[int]:
        """Steps whose tensors are saved: 0, every ``save_every``, and the last."""
        return sorted(set(range(0, self.steps + 1, self.save_every)) | {self.steps})


@dataclass
class Run:
    """A finished run directory, read back."""

    path: Path
    spec: TrainSpec
    targets: list[str]
    losses: list[float]  # the batch loss at steps 0 .. len-1 (before each update)
    saved: list[int]  # steps with a checkpoint
    stopped: str | None  # why the run ended early, or None

    def tensors(self, step: int) -> dict[str, torch.Tensor]:
        from safetensors.torch import load_file

        if step not in self.saved:
            raise LlmscapeError(f"{self.path} has no checkpoint of step {step}; saved: {self.saved}")
        return load_file(self.path / f"step-{step:06d}.safetensors")


def _batch_loss(model: torch.nn.Module, data: EvalSet, rows: np.ndarray) -> torch.Tensor:
    return _sequence_losses(model, data, rows).mean()


def mean_loss(model: torch.nn.Module, data: EvalSet, batch_size: int = 8) -> float:
    """The training loss over the whole set, without gradients: each sequence's mean next-token NLL,
    averaged over the sequences (what a step minimizes over its batch)."""
    with torch.no_grad():
        rows = np.array_split(np.arange(len(data)), max(1, math.ceil(len(data) / batch_size)))
        return float(torch.cat([_sequence_losses(model, data, r) for r in rows]).mean())


def _sequence_losses(model: torch.nn.Module, data: EvalSet, rows: np.ndarray) -> torch.Tensor:
    ids = data.input_ids[rows].to(model.device)
    mask = data.attention_mask[rows].to(model.device)
    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
    labels, label_mask = shifted_targets(ids, mask)
    # Vocabulary as the inner dimension: CPU cross_entropy over a [B, V, T] layout sums the
    # softmax along a strided axis and was off by ~1e-4 nats per token at a 49k vocabulary.
    nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), reduction="none")
    nll = nll.view(labels.shape)
    m = label_mask.to(nll.dtype)
    return (nll * m).sum(dim=1) / m.sum(dim=1)


def _batches(n: int, batch_size: int, seed: int):
    """Row indices of step t's batch, for t = 0, 1, ...: a seeded permutation, epoch after epoch."""
    rng = np.random.default_rng(seed)
    size = min(batch_size, n)
    while True:
        order = rng.permutation(n)
        for start in range(0, n - size + 1, size):
            yield order[start : start + size]


def _same_run(partial: Path, history: dict) -> bool:
    """Whether the partial run was started with the same spec, targets and identity."""
    try:
        previous = json.loads((partial / "history.json").read_text())
    except (OSError, ValueError):
        return False
    return all(previous.get(k) == history.get(k) for k in ("spec", "targets", "identity"))


def _save_json(path: Path, value: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value, indent=1))
    os.replace(tmp, path)


def train(
    model: torch.nn.Module,
    data: EvalSet,
    targets: list[str],
    spec: TrainSpec,
    out: str | Path,
    identity: str | None = None,
) -> Run:
    """Train ``targets`` of ``model`` (in place) and write the run directory ``out``.

    ``identity``: what else the run depends on (say, a hash of the model and the data), kept in
    ``history.json``; a partial run is resumed only when its spec, targets and identity all match,
    and is discarded with a warning otherwise."""
    from safetensors.torch import save_file

    spec.check()
    out = Path(out)
    partial = out.with_name(out.name + ".partial")
    params = dict(model.named_parameters())
    missing = [t for t in targets if t not in params]
    if missing or not targets:
        raise LlmscapeError(f"training targets not in the model: {missing[:5] or 'none given'}")
    model.requires_grad_(False)
    trained = [params[t] for t in targets]
    for p in trained:
        p.requires_grad_(True)
    opt_class = torch.optim.SGD if spec.optimizer == "sgd" else torch.optim.AdamW
    kwargs = {} if spec.optimizer == "sgd" else {"betas": (0.9, 0.999)}
    optimizer = opt_class(trained, lr=spec.lr, weight_decay=spec.weight_decay, **kwargs)
    history = {"spec": asdict(spec), "targets": targets, "losses": [], "saved": [], "stopped": None}
    if identity is not None:
        history["identity"] = identity
    start = 0
    if (partial / "state.pt").exists() and not _same_run(partial, history):
        log.warning("training: discarding %s, made for another spec, targets, model or data", partial)
        shutil.rmtree(partial)
    if (partial / "state.pt").exists():
        state = torch.load(partial / "state.pt", weights_only=False)
        from safetensors.torch import load_file

        with torch.no_grad():
            for name, t in load_file(partial / f"step-{state['step']:06d}.safetensors").items():
                params[name].copy_(t)
        optimizer.load_state_dict(state["optimizer"])
        history = json.loads((partial / "history.json").read_text())
        history["losses"] = history["losses"][: state["step"]]
        history["saved"] = [s for s in history["saved"] if s < state["step"]]  # the loop saves its step again
        start = state["step"]
        log.info("training: resuming %s at step %d", partial, start)
    elif partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True, exist_ok=True)
    batches = _batches(len(data), spec.batch_size, spec.seed)
    for _ in range(start):  # the batches already used, so a resumed run sees the same ones
        next(batches)
    # Eval mode throughout: no dropout, so a step is deterministic and its loss is the landscape's.
    try:
        for step in range(start, spec.steps + 1):
            if step in spec.saved_steps():
                tensors = {t: params[t].detach().cpu().contiguous() for t in targets}
                save_file(tensors, partial / f"step-{step:06d}.safetensors")
                history["saved"].append(step)
                torch.save({"step": step, "optimizer": optimizer.state_dict()}, partial / "state.pt")
                _save_json(partial / "history.json", history)
            if step == spec.steps:
                break
            optimizer.zero_grad(set_to_none=True)
            loss = _batch_loss(model, data, next(batches))
            value = float(loss.detach())
            if not math.isfinite(value):
                history["stopped"] = f"non-finite loss at step {step}"
                log.warning("training: %s; the steps saved before it are kept", history["stopped"])
                break
            history["losses"].append(value)
            loss.backward()
            optimizer.step()
            if step % max(1, spec.steps // 10) == 0:
                log.info("training: step %d/%d, loss %.4f", step, spec.steps, value)
    finally:
        model.requires_grad_(False)
    _save_json(partial / "history.json", history)
    (partial / "state.pt").unlink(missing_ok=True)
    if out.exists():
        shutil.rmtree(out)
    os.replace(partial, out)
    return load_run(out)


def load_run(path: str | Path) -> Run:
    path = Path(path)
    try:
        history = json.loads((path / "history.json").read_text())
    except (OSError, ValueError) as exc:
        raise LlmscapeError(f"{path} is not a finished training run: {exc}") from exc
    return Run(
        path, TrainSpec(**history["spec"]), history["targets"], history["losses"], history["saved"], history["stopped"]
    )
