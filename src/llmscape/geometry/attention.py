"""Attention geometry for one prompt: score and weight matrices per head, and the heads' weight spectra.

For decoder layer l and query head h, with q_t, k_s in R^d the rotated query and key vectors
the model's own attention computes (after its q/k projections and rotary embedding), scaling
c (1 / sqrt(d) in Llama; the module's ``scaling``) and the additive causal mask M (0 where
s <= t, the dtype's most negative value elsewhere):

    S_h[t, s] = c q_t^h . k_s^{kv(h)} + M[t, s]      (pre-softmax scores),
    A_h = softmax_s(S_h)                             (attention weights; rows sum to 1),

with grouped-query attention's sharing kv(h) = floor(h / (n_heads / n_kv_heads)): query head h
reads key/value head kv(h) (transformers' ``repeat_kv``). A model with attention logit
softcapping (Gemma2) gets S = cap tanh(S / cap) before the mask, as its eager attention does.
The vectors are not recomputed: while the model runs its own eager forward once, the
family's ``eager_attention_forward`` (looked up where the attention class is defined) is
wrapped to record query, key, mask and scaling of the chosen layers, so S is what the
model itself feeds its softmax; the weights returned by that call are checked against
softmax(S). Masked entries of S are stored as NaN.

Weight spectra per head, from the attention module's ``q_proj``, ``k_proj``, ``v_proj`` and
``o_proj`` (Llama-layout names; a fused qkv has no per-head split here and is skipped with
the reason): W_Q^h = rows h d .. (h+1) d - 1 of q_proj [d, H], W_K^j, W_V^j likewise for
key/value head j, W_O^h = columns h d .. (h+1) d - 1 of o_proj [H, d]. For singular values
sigma_1 >= ... >= sigma_r > 0 of each,

    p_i = sigma_i / sum_j sigma_j,   erank = exp(-sum_i p_i log p_i)   (Roy & Vetterli 2007),
    kappa = sigma_1 / sigma_r                                          (condition number),

erank in [1, r]: 1 for a rank-1 matrix, r when all singular values are equal. K and V rows
are reported once per key/value head and mapped to the query heads that share them.

Attention file (kind ``attention``): ``tokens`` [T] (decoded token strings), ``input_ids`` [T];
per chosen layer ``layer_<i>/weights`` [heads, T, T] float32, ``layer_<i>/scores`` [heads, T, T]
float32 (NaN where masked), ``layer_<i>/kv_head`` [heads] int64; root attrs ``layers``
(the distinct indices), ``positions`` (as configured, in file-name form: first, middle, m1, ...) and
``position_layers`` (the index of each), ``prompt``, ``n_heads``, ``n_kv_heads``, ``provenance``.
"""

from __future__ import annotations

import math
import sys
from contextlib import contextmanager
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import torch

from llmscape import h5io
from llmscape.architecture import discover
from llmscape.errors import LlmscapeError
from llmscape.weight_spectra import condition_number

PROJECTIONS = {"W_Q": "q_proj", "W_K": "k_proj", "W_V": "v_proj", "W_O": "o_proj"}


def kv_head(h: int, n_heads: int, n_kv_heads: int) -> int:
    """The key/value head query head ``h`` reads under grouped-query attention."""
    return h // (n_heads // n_kv_heads)


def attention_module(layer: torch.nn.Module) -> torch.nn.Module:
    """The self-attention of a decoder layer: its submodule with a ``layer_idx`` and ``head_dim``."""
    for _, m in layer.named_modules():
        if hasattr(m, "head_dim") and hasattr(m, "layer_idx"):
            return m
    raise LlmscapeError(f"no self-attention module (with layer_idx and head_dim) in {type(layer).__name__}")


def effective_rank(singular_values: np.ndarray) -> float:
    s = np.asarray(singular_values, dtype=np.float64)
    s = s[s > 0]
    p = s / s.sum()
    return float(math.exp(-(p * np.log(p)).sum()))


def scores_of(query, key, mask, scaling: float, softcap: float | None = None) -> torch.Tensor:
    """S [B, heads, T, S] from the attention's own query [B, heads, T, d], key [B, kv_heads, S, d] and mask."""
    groups = query.shape[1] // key.shape[1]
    k = key.repeat_interleave(groups, dim=1)  # query head h reads kv head h // groups
    s = torch.matmul(query, k.transpose(2, 3)) * scaling
    if softcap is not None:
        s = torch.tanh(s / softcap) * softcap
    if mask is not None:
        s = s + mask[:, :, :, : k.shape[-2]]
    return s


@contextmanager
def recording(model: torch.nn.Module, layers: list[int]):
    """While active, each chosen layer's attention call leaves (query, key, mask, scaling, softcap, weights)
    in the yielded dict under its layer index (the family's eager attention function, wrapped)."""
    arch = discover(model, verify=False)
    modules = {id(attention_module(arch.layers[i])): i for i in layers}
    cls = type(attention_module(arch.layers[layers[0]]))
    where = sys.modules[cls.__module__]
    original = getattr(where, "eager_attention_forward", None)
    if original is None:
        raise LlmscapeError(
            f"attention geometry needs {cls.__name__}'s eager_attention_forward (transformers' attention "
            f"interface); {cls.__module__} has none"
        )
    if getattr(model.config, "_attn_implementation", "eager") != "eager":
        raise LlmscapeError(
            "attention geometry runs the eager attention: load the model with attn_implementation='eager'"
        )
    seen: dict[int, dict] = {}

    def wrapper(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
        out, weights = original(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, **kwargs)
        if id(module) in modules:
            seen[modules[id(module)]] = {
                "query": query.detach(), "key": key.detach(),
                "mask": None if attention_mask is None else attention_mask.detach(),
                "scaling": scaling, "softcap": kwargs.get("softcap"), "weights": weights.detach(),
            }  # fmt: skip
        return out, weights

    where.eager_attention_forward = wrapper
    try:
        yield seen
    finally:
        where.eager_attention_forward = original


@torch.no_grad()
def attention_maps(model: torch.nn.Module, input_ids: torch.Tensor, layers: list[int]) -> dict[int, dict]:
    """Per chosen layer: ``scores`` and ``weights`` [heads, T, T] (float64, NaN where masked) and ``kv_head``
    [heads], for one prompt ``input_ids`` [1, T]; the weights are checked against the model's own."""
    with recording(model, layers) as seen:
        model(input_ids=input_ids, use_cache=False)
    out = {}
    for i in layers:
        r = seen[i]
        s = scores_of(r["query"], r["key"], r["mask"], r["scaling"], r["softcap"]).double()[0]
        w = torch.softmax(s, dim=-1)
        own = r["weights"].double()[0]
        if not torch.allclose(w, own, atol=1e-5, rtol=1e-4):
            raise LlmscapeError(f"layer {i}: softmax of the recorded scores differs from the model's own weights")
        t = s.shape[-1]
        masked = torch.ones(t, t, dtype=torch.bool).triu(1) if r["mask"] is None else r["mask"][0, 0, :, :t] < -1e30
        n_heads, n_kv = r["query"].shape[1], r["key"].shape[1]
        out[i] = {
            "scores": s.masked_fill(masked, float("nan")).numpy(),
            "weights": own.numpy(),
            "kv_head": np.array([kv_head(h, n_heads, n_kv) for h in range(n_heads)]),
            "n_kv_heads": n_kv,
        }
    return out


def head_spectra(model: torch.nn.Module, layers: list[int]) -> pd.DataFrame:
    """One row per (layer, query head, matrix): kv_head, rank, sigma_max, sigma_min, erank, condition_number
    (K and V: the key/value head's matrices, repeated for every query head sharing them)."""
    arch = discover(model, verify=False)
    rows = []
    for i in layers:
        attn = attention_module(arch.layers[i])
        d = attn.head_dim
        mats = {k: getattr(attn, v, None) for k, v in PROJECTIONS.items()}
        if any(m is None or not hasattr(m, "weight") for m in mats.values()):
            raise LlmscapeError(
                f"layer {i}: {type(attn).__name__} has no separate {', '.join(PROJECTIONS.values())} "
                "(a fused qkv): per-head weight spectra need them"
            )
        n_heads = mats["W_Q"].weight.shape[0] // d
        n_kv = mats["W_K"].weight.shape[0] // d
        for h in range(n_heads):
            j = kv_head(h, n_heads, n_kv)
            blocks = {
                "W_Q": mats["W_Q"].weight[h * d : (h + 1) * d],
                "W_K": mats["W_K"].weight[j * d : (j + 1) * d],
                "W_V": mats["W_V"].weight[j * d : (j + 1) * d],
                "W_O": mats["W_O"].weight[:, h * d : (h + 1) * d],
            }
            for name, w in blocks.items():
                s = torch.linalg.svdvals(w.detach().double()).numpy()
                rows.append({"layer": i, "head": h, "kv_head": j, "matrix": name, "rank": len(s),
                             "sigma_max": float(s[0]), "sigma_min": float(s[-1]), "erank": effective_rank(s),
                             "condition_number": condition_number(s)})  # fmt: skip
    return pd.DataFrame(rows)


def save_attention(path: str | Path, maps: dict[int, dict], tokens: list[str], input_ids, attrs: dict) -> None:
    with h5io.write(path, "attention") as f:
        f.create_dataset("tokens", data=np.array(tokens, dtype=h5py.string_dtype()))
        f.create_dataset("input_ids", data=np.asarray(input_ids, dtype=np.int64))
        for i, m in maps.items():
            f.create_dataset(f"layer_{i}/weights", data=m["weights"].astype(np.float32))
            f.create_dataset(f"layer_{i}/scores", data=m["scores"].astype(np.float32))
            f.create_dataset(f"layer_{i}/kv_head", data=m["kv_head"].astype(np.int64))
        first = next(iter(maps.values()))
        h5io.set_attrs(
            f,
            attrs
            | {"layers": list(maps), "n_heads": int(first["weights"].shape[0]), "n_kv_heads": int(first["n_kv_heads"])},
        )


def load_attention(path: str | Path) -> dict:
    with h5io.read(path, "attention") as f:
        a = h5io.get_attrs(f)
        return {
            "tokens": [t.decode() if isinstance(t, bytes) else t for t in f["tokens"][...]],
            "layers": {i: {k: f[f"layer_{i}/{k}"][...] for k in ("weights", "scores", "kv_head")} for i in a["layers"]},
            "attrs": a,
        }
