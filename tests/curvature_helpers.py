"""A tiny float64 Llama and its exact Hessian, the ground truth of the curvature tests (``exact_hessian``: any family).

The reference loss here is written independently of ``llmscape.curvature``: the model's
own forward (``functional_call`` with the target swapped in), full logits and
``F.cross_entropy`` in float64, per-sequence mean then mean over sequences, exactly as
``llmscape.loss`` defines the landscape.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F

from llmscape.curvature import HessianOperator, TargetLoss
from llmscape.data import EvalSet
from llmscape.loss import shifted_targets

TARGET = "model.layers.1.self_attn.v_proj.weight"  # [8, 16]: 128 parameters, well separated top eigenvalues


def tiny_model(dtype=torch.float64):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=40,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        tie_word_embeddings=False,
        initializer_range=0.3,
        attn_implementation="eager",
    )
    model = LlamaForCausalLM(config).to(dtype).eval()
    model.requires_grad_(False)
    return model


def tiny_data() -> EvalSet:
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(1, 40, (3, 9), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0  # right padding, as data.tokenize makes it
    mask[2, 4:] = 0
    ids[mask == 0] = 0
    return EvalSet(ids, mask, ["a", "b", "c"])


def reference_loss(model, data, name):
    ids, mask = data.input_ids, data.attention_mask
    shape = dict(model.named_parameters())[name].shape

    def loss(flat):
        out = torch.func.functional_call(model, {name: flat.reshape(shape)}, (ids,), {"attention_mask": mask})
        labels, label_mask = shifted_targets(ids, mask)
        nll = F.cross_entropy(out.logits[:, :-1].double().transpose(1, 2), labels, reduction="none")
        return ((nll * label_mask).sum(1) / label_mask.sum(1)).mean()

    return loss


def exact_hessian(model, data, name) -> dict:
    """The exact Hessian H of the landscape loss w.r.t. one tensor of any causal LM, and its eigenpairs by |lambda|.

    Keys: H, flat (the tensor, flattened), ref (the loss as a function of flat), values, vectors.
    """
    flat = dict(model.named_parameters())[name].detach().reshape(-1).clone()
    ref = reference_loss(model, data, name)
    hessian = torch.autograd.functional.hessian(ref, flat, vectorize=True).detach()
    values, vectors = np.linalg.eigh(hessian.numpy())
    order = np.argsort(-np.abs(values))
    return {"H": hessian, "flat": flat, "ref": ref, "values": values[order], "vectors": vectors[:, order]}


@functools.cache
def exact_problem() -> dict:
    """Model, data, exact Hessian H of the target, and its eigendecomposition by |lambda|.

    Built once per session and shared by the test modules; nothing here is modified by them.
    """
    model, data = tiny_model(), tiny_data()
    return {"model": model, "data": data, **exact_hessian(model, data, TARGET)}


def operator(problem, **kwargs) -> HessianOperator:
    return HessianOperator(TargetLoss(problem["model"], problem["data"], [TARGET], **kwargs))
