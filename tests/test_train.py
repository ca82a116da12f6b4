"""The one training routine: exact SGD steps, resume after a kill, a diverging run kept and flagged."""

from __future__ import annotations

import json

import pytest
import torch

from llmscape import train as T
from llmscape.errors import LlmscapeError
from llmscape.models import load_prepared

TARGET = "model.layers.3.mlp.up_proj.weight"


def fresh(tiny_dir):
    return load_prepared(tiny_dir)[0]


def test_sgd_steps_match_a_hand_written_update(tiny_dir, tiny_data, tmp_path):
    spec = T.TrainSpec(steps=2, lr=0.5, optimizer="sgd", batch_size=8, save_every=1)
    run = T.train(fresh(tiny_dir), tiny_data, [TARGET], spec, tmp_path / "run")
    oracle = fresh(tiny_dir)
    w = dict(oracle.named_parameters())[TARGET]
    for step in range(2):
        w.requires_grad_(True)
        losses = []
        for i in range(len(tiny_data)):  # each sequence's mean NLL from transformers' own loss
            n = int(tiny_data.attention_mask[i].sum())
            ids = tiny_data.input_ids[i : i + 1, :n]
            losses.append(oracle(input_ids=ids, labels=ids).loss)
        loss = torch.stack(losses).mean()
        assert run.losses[step] == pytest.approx(loss.item(), abs=1e-5)
        (grad,) = torch.autograd.grad(loss, w)
        with torch.no_grad():
            w -= 0.5 * grad
        assert torch.allclose(run.tensors(step + 1)[TARGET], w.detach(), atol=1e-6)
    assert run.saved == [0, 1, 2] and run.stopped is None
    assert torch.equal(run.tensors(0)[TARGET], dict(fresh(tiny_dir).named_parameters())[TARGET].detach())


def test_the_whole_sets_loss_is_transformers_own_in_any_batch_size(tiny_dir, tiny_data):
    model = fresh(tiny_dir)
    want = []
    for i in range(len(tiny_data)):
        n = int(tiny_data.attention_mask[i].sum())
        ids = tiny_data.input_ids[i : i + 1, :n]
        want.append(float(model(input_ids=ids, labels=ids).loss))
    for batch_size in (1, 2, 8):
        assert T.mean_loss(model, tiny_data, batch_size) == pytest.approx(sum(want) / len(want), abs=1e-5)


def test_a_killed_run_resumes_to_the_same_result(tiny_dir, tiny_data, tmp_path, monkeypatch):
    spec = T.TrainSpec(steps=4, lr=1e-2, optimizer="adamw", batch_size=2, save_every=2)
    whole = T.train(fresh(tiny_dir), tiny_data, [TARGET], spec, tmp_path / "whole")
    calls = {"n": 0}
    real = T._batch_loss

    def dies_at_step_3(model, data, rows):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(model, data, rows)

    monkeypatch.setattr(T, "_batch_loss", dies_at_step_3)
    with pytest.raises(KeyboardInterrupt):
        T.train(fresh(tiny_dir), tiny_data, [TARGET], spec, tmp_path / "cut")
    assert not (tmp_path / "cut").exists() and (tmp_path / "cut.partial/step-000002.safetensors").exists()
    monkeypatch.setattr(T, "_batch_loss", real)
    resumed = T.train(fresh(tiny_dir), tiny_data, [TARGET], spec, tmp_path / "cut")
    assert resumed.losses == whole.losses and resumed.saved == [0, 2, 4]
    assert torch.equal(resumed.tensors(4)[TARGET], whole.tensors(4)[TARGET])


def test_a_diverging_run_stops_keeps_its_steps_and_says_so(tiny_dir, tiny_data, tmp_path, monkeypatch):
    real = T._batch_loss
    calls = {"n": 0}

    def nan_at_step_2(model, data, rows):
        calls["n"] += 1
        loss = real(model, data, rows)
        return loss * float("nan") if calls["n"] == 3 else loss

    monkeypatch.setattr(T, "_batch_loss", nan_at_step_2)
    run = T.train(fresh(tiny_dir), tiny_data, [TARGET], T.TrainSpec(steps=5, lr=1e-3), tmp_path / "nan")
    assert run.stopped == "non-finite loss at step 2" and run.saved == [0, 1, 2] and len(run.losses) == 2
    assert json.loads((tmp_path / "nan/history.json").read_text())["stopped"] == run.stopped


@pytest.mark.parametrize(
    "spec, message",
    [
        (T.TrainSpec(steps=3, lr=0.0), "learning rate must be > 0"),
        (T.TrainSpec(steps=3, lr=0.1, save_every=5), "save_every = 5 must be between 1 and steps = 3"),
        (T.TrainSpec(steps=3, lr=0.1, optimizer="lbfgs"), "optimizer must be one of"),
    ],
)
def test_bad_training_specs_are_refused(spec, message):
    with pytest.raises(LlmscapeError, match=message):
        spec.check()
