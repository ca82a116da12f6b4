"""The exact Hessian of a tiny trained model beside the estimators used for the big one.

The model: a Llama-architecture causal LM (GQA: ``kv_heads`` key/value heads shared by
``heads`` query heads) over a compact vocabulary: the evaluation set's distinct token ids
u_0 < u_1 < ... < u_{V-1} become 0 .. V-1 (``compact_vocabulary``), so the text stays the
default one and the model stays tiny. It is initialized from ``seed`` and trained on all its
parameters by ``llmscape.train`` (the project's one training routine) for ``steps`` steps.

Then, for the target tensors theta (regular expressions within one layer, as a study's) of
n <= ``max_params`` parameters, with L the landscape loss of ``llmscape.loss`` (per-sequence
mean next-token NLL, then the mean over sequences):

    H = d^2 L / d theta^2         formed whole by ``torch.func.hessian`` (forward over
                                  reverse, float64) of L written with
                                  ``torch.func.functional_call`` and full logits: independent
                                  of llmscape.curvature's chunked head and HVPs,
    H = U diag(lambda) U^T        by ``numpy.linalg.eigh`` (float64).

Beside it, the estimates ``llmscape.curvature.compute_spectrum`` makes for the big model, on
the same tiny model: Lanczos top-k (by |lambda|), lambda_min, Hutchinson tr(H) +- SE and the
SLQ density. The moments compared (``moments``):

    exact    m_j = 1/n sum_i lambda_i^j                       = tr(H^j) / n
    SLQ      m_j ~ 1/P sum_p sum_l w_pl theta_pl^j            (j = 1 .. 4)

Gauss quadrature with s Lanczos steps is exact for polynomials of degree <= 2s - 1, so for
j <= 2s - 1 the SLQ moment equals the probe average 1/P sum_p v_p^T H^j v_p exactly (in exact
arithmetic); what remains is the probes' sampling error, whose standard error the file
stores (``slq_moment_se``: the standard deviation over probes / sqrt(P)).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from llmscape import h5io
from llmscape.data import EvalSet
from llmscape.errors import LlmscapeError
from llmscape.loss import shifted_targets

log = logging.getLogger("llmscape")
MOMENTS = (1, 2, 3, 4)


@dataclass(frozen=True)
class TinySpec:
    """The tiny Llama's shape (``geometry.exact.model`` in the config)."""

    layers: int = 2
    hidden: int = 16
    heads: int = 4
    kv_heads: int = 2
    intermediate: int = 32
    seed: int = 0


def compact_vocabulary(data: EvalSet) -> tuple[EvalSet, np.ndarray]:
    """The set with its distinct token ids renumbered 0 .. V-1 (in increasing order), and those ids."""
    ids = np.unique(data.input_ids.numpy())
    remap = torch.from_numpy(np.searchsorted(ids, data.input_ids.numpy()))
    return EvalSet(remap, data.attention_mask.clone(), list(data.texts)), ids


def tiny_llama(vocab: int, spec: TinySpec) -> torch.nn.Module:
    """A seeded, randomly initialized Llama (float64, eager attention, no tied embeddings)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    if spec.heads % spec.kv_heads or spec.hidden % spec.heads:
        raise LlmscapeError(
            f"tiny model: heads = {spec.heads} must divide hidden = {spec.hidden} and be a multiple of "
            f"kv_heads = {spec.kv_heads}"
        )
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=spec.hidden,
        intermediate_size=spec.intermediate,
        num_hidden_layers=spec.layers,
        num_attention_heads=spec.heads,
        num_key_value_heads=spec.kv_heads,
        max_position_embeddings=256,
        tie_word_embeddings=False,
        attn_implementation="eager",
    )
    with torch.random.fork_rng():  # the caller's global generator is left as it was
        torch.manual_seed(spec.seed)
        model = LlamaForCausalLM(config)
    model = model.to(torch.float64).eval()
    model.requires_grad_(False)
    return model


def functional_loss(model: torch.nn.Module, data: EvalSet, names: list[str]):
    """L as a function of the targets flattened and concatenated (``names`` order), by the model's own forward."""
    params = dict(model.named_parameters())
    shapes = [params[n].shape for n in names]
    sizes = [math.prod(s) for s in shapes]
    ids, mask = data.input_ids, data.attention_mask
    labels, label_mask = shifted_targets(ids, mask)

    def loss(flat: torch.Tensor) -> torch.Tensor:
        parts = dict(zip(names, (p.reshape(s) for p, s in zip(flat.split(sizes), shapes, strict=True)), strict=True))
        logits = torch.func.functional_call(model, parts, (ids,), {"attention_mask": mask}).logits[:, :-1]
        nll = F.cross_entropy(logits.double().reshape(-1, logits.shape[-1]), labels.reshape(-1), reduction="none")
        m = label_mask.to(nll.dtype)
        return ((nll.view(labels.shape) * m).sum(1) / m.sum(1)).mean()

    flat = torch.cat([params[n].detach().reshape(-1).to(torch.float64) for n in names])
    return loss, flat


def exact_hessian(model: torch.nn.Module, data: EvalSet, names: list[str]) -> np.ndarray:
    """The n x n Hessian of L over ``names`` (float64, symmetrized: (H + H^T) / 2)."""
    loss, flat = functional_loss(model, data, names)
    h = torch.func.hessian(loss)(flat).detach().numpy()
    return (h + h.T) / 2


def slq_moments(nodes: np.ndarray, weights: np.ndarray, powers=MOMENTS) -> tuple[np.ndarray, np.ndarray]:
    """SLQ moments 1/P sum_p sum_l w_pl theta_pl^j and their standard errors over the P probes."""
    nodes = np.nan_to_num(nodes)
    per_probe = np.array([(weights * nodes**j).sum(axis=1) for j in powers])  # [J, P]
    p = per_probe.shape[1]
    se = per_probe.std(axis=1, ddof=1) / math.sqrt(p) if p > 1 else np.full(len(powers), np.nan)
    return per_probe.mean(axis=1), se


def exact_moments(eigenvalues: np.ndarray, powers=MOMENTS) -> np.ndarray:
    return np.array([np.mean(eigenvalues**j) for j in powers])


@dataclass
class ExactResult:
    """The exact spectrum of one target set of the tiny model, and what was trained."""

    targets: list[str]
    eigenvalues: np.ndarray  # ascending, float64
    train_losses: list[float]
    vocab_ids: np.ndarray
    seconds_hessian: float


def save_exact(path: str | Path, result: ExactResult, spectrum, attrs: dict) -> None:
    """The exact-spectrum file (layout in docs/results-format.md): exact eigenvalues, moments against SLQ's."""
    with h5io.write(path, "exact-spectrum") as f:
        f.create_dataset("eigenvalues", data=result.eigenvalues)
        f.create_dataset("train_losses", data=np.asarray(result.train_losses, dtype=np.float64))
        f.create_dataset("vocab_ids", data=result.vocab_ids.astype(np.int64))
        f.create_dataset("moment_powers", data=np.asarray(MOMENTS, dtype=np.int64))
        f.create_dataset("exact_moments", data=exact_moments(result.eigenvalues))
        if spectrum.density is not None:
            m, se = slq_moments(spectrum.density.nodes, spectrum.density.weights)
            f.create_dataset("slq_moments", data=m)
            f.create_dataset("slq_moment_se", data=se)
        h5io.set_attrs(
            f,
            attrs
            | {
                "targets": result.targets,
                "n_params": len(result.eigenvalues),
                "seconds_hessian": result.seconds_hessian,
            },
        )


def load_exact(path: str | Path) -> dict:
    """An exact-spectrum file as a dict of arrays plus ``attrs``."""
    with h5io.read(path, "exact-spectrum") as f:
        out = {name: f[name][...] for name in f}
        out["attrs"] = h5io.get_attrs(f)
    return out


def comparison_table(exact: dict, spectrum) -> list[dict]:
    """Rows (quantity, exact, estimate, abs_error, rel_error, estimate_se): what the estimators say
    against the exact spectrum (Lanczos top-k by |lambda|, lambda_max, lambda_min, trace, SLQ moments)."""
    lam = exact["eigenvalues"]
    by_mag = lam[np.argsort(-np.abs(lam), kind="stable")]
    rows = []

    def row(q, e, est, se=np.nan):
        err = float(est - e)
        rows.append({"quantity": q, "exact": float(e), "estimate": float(est), "abs_error": abs(err),
                     "rel_error": abs(err) / abs(e) if e else np.nan, "estimate_se": float(se)})  # fmt: skip

    for i, v in enumerate(spectrum.eigenvalues if spectrum.eigenvalues is not None else []):
        row(f"lambda_{i + 1}", by_mag[i], v)
    row("lambda_max", lam.max(), spectrum.lambda_max)
    row("lambda_min", lam.min(), spectrum.lambda_min)
    if spectrum.trace is not None:
        row("trace", lam.sum(), spectrum.trace.trace, spectrum.trace.se)
    if "slq_moments" in exact:
        for j, e, m, se in zip(exact["moment_powers"], exact["exact_moments"], exact["slq_moments"],
                               exact["slq_moment_se"], strict=True):  # fmt: skip
            row(f"moment_{j}", e, m, se)
    return rows
