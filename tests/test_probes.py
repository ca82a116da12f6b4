"""Capability probes: file errors named by line, shared-context rows, scores equal to a plain forward per choice."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from llmscape import probes as P
from llmscape.errors import LlmscapeError
from llmscape.loss import SequenceStats

ITEMS = [
    {"context": "ab", "choices": [" c", " d", " e"], "answer": 0},  # single-token choices: one shared row
    {"context": "hello ", "choices": ["world", "word", "xyz"], "answer": 1},  # shared leading tokens
    {"context": "1+1=", "choices": ["2", "3"], "answer": 0},
    {"context": "the cat", "choices": [" sat", " ran away", " is"], "answer": 2, "meta": {"note": "kept"}},
]


def write(tmp_path, items, name="set.jsonl") -> P.ProbeSpec:
    path = tmp_path / name
    path.write_text("\n".join(i if isinstance(i, str) else json.dumps(i) for i in items) + "\n")
    return P.ProbeSpec(name.split(".")[0], path, chat=False)


def oracle(model, tokenizer, item: dict, chat: bool = False) -> list[float]:
    """Each choice's summed log-probability by a plain transformers forward over context + choice
    (lm-eval's encoding: trailing context whitespace moves into the choice)."""
    context, out = item["context"], []
    special = not chat
    if chat:
        context = tokenizer.apply_chat_template(
            [{"role": "user", "content": context}], tokenize=False, add_generation_prompt=True
        )
    for choice in item["choices"]:
        ctx, cont = context, choice
        if not chat:
            ctx = context.rstrip()
            cont = context[len(ctx) :] + choice
        ctx_ids = tokenizer(ctx, add_special_tokens=special)["input_ids"]
        whole = tokenizer(ctx + cont, add_special_tokens=special)["input_ids"]
        ids = torch.tensor([whole])
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=ids).logits[0].double(), dim=-1)
        out.append(sum(float(logp[t - 1, whole[t]]) for t in range(len(ctx_ids), len(whole))))
    return out


def oracle_scores(model, tokenizer, items, chat=False) -> dict:
    lls = [oracle(model, tokenizer, it, chat) for it in items]
    acc = np.mean([int(np.argmax(ll)) == it["answer"] for ll, it in zip(lls, items, strict=True)])
    norm = np.mean(
        [
            int(np.argmax(np.array(ll) / [len(c) for c in it["choices"]])) == it["answer"]
            for ll, it in zip(lls, items, strict=True)
        ]
    )
    logprob = np.mean([ll[it["answer"]] for ll, it in zip(lls, items, strict=True)])
    return {"accuracy": acc, "accuracy_norm": norm, "logprob": logprob, "ll": lls}


def test_scores_equal_a_plain_forward_per_choice(tiny, tmp_path):
    model, tokenizer = tiny
    rows = P.encode(write(tmp_path, ITEMS), tokenizer)
    # shared contexts: item 0's three single-token choices share one row; 4 items, 11 choices, fewer rows
    assert rows.rows.targets.n_columns == 11 and len(rows.rows) < 11
    nll, _ = P.column_nll(model, rows.rows)
    got = rows.score(nll.numpy()[None])
    want = oracle_scores(model, tokenizer, ITEMS)
    ll = rows.log_likelihoods(nll.numpy()[None])[0]
    for i, item_ll in enumerate(want["ll"]):
        np.testing.assert_allclose(ll[i, : len(item_ll)], item_ll, atol=1e-5)  # float32 forwards
    for key in P.METRICS:
        assert got[key][0] == pytest.approx(want[key], abs=1e-5), key
    assert rows.chance == pytest.approx(np.mean([1 / 3, 1 / 3, 1 / 2, 1 / 3]))


def test_chat_template_items_score_as_a_plain_forward(tiny, tmp_path):
    model, tokenizer = tiny
    tokenizer.chat_template = "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}<assistant>"
    try:
        spec = write(tmp_path, ITEMS[:2])
        rows = P.encode(P.ProbeSpec("chat", spec.path, chat=True), tokenizer)
        nll, _ = P.column_nll(model, rows.rows)
        want = oracle_scores(model, tokenizer, ITEMS[:2], chat=True)
        assert rows.score(nll.numpy()[None])["logprob"][0] == pytest.approx(want["logprob"], abs=1e-5)
        assert rows.rows.texts[0].replace(" ", "").startswith("<user>ab<assistant>")
    finally:
        tokenizer.chat_template = None


def test_file_errors_name_file_and_line(tmp_path):
    spec = write(
        tmp_path,
        [
            ITEMS[0],
            "{not json",
            {"context": "x", "choices": ["a", "b"], "answer": 2},
            {"context": "x", "choices": ["a"], "answer": 0},
            {"context": "x", "choices": ["a", "b"], "anwser": 0},
            "",
            {"context": "x", "choices": ["a", "a"], "answer": 0},
        ],
    )
    with pytest.raises(LlmscapeError) as err:
        P.read_items(spec.path)
    text = str(err.value)
    for line, words in [
        (2, "not a JSON object"),
        (3, "answer 2 is out of range for 2 choices"),
        (4, "choices must be a list of at least 2"),
    ]:
        assert f"{spec.path}:{line}: {words}" in text
    assert f"{spec.path}:5: unknown key(s) ['anwser']" in text and f"{spec.path}:7: choices repeat" in text
    assert f"{spec.path}:1" not in text


def test_choices_that_tokenize_identically_are_refused(tiny, tmp_path):
    _, tokenizer = tiny  # characters outside the tiny vocabulary all become <unk>
    spec = write(tmp_path, [ITEMS[0], {"context": "ab", "choices": [" \u00e9", " \u00fc"], "answer": 0}])
    with pytest.raises(
        LlmscapeError, match=r"set.jsonl:2: choices 0 \(' \u00e9'\) and 1 \(' \u00fc'\) tokenize identically"
    ):
        P.encode(spec, tokenizer)


def test_probe_file_round_trip_and_evaluation_split(tiny, tiny_data, tmp_path):
    model, tokenizer = tiny
    rows = P.encode(write(tmp_path, ITEMS), tokenizer, max_items=3)
    assert rows.n_items == 3 and rows.attrs["n_items_in_file"] == 4
    P.save_probe_rows(tmp_path / "p.h5", rows, {"model_sha256": "x"})
    back = P.load_probe_rows(tmp_path / "p.h5")
    assert torch.equal(back.rows.input_ids, rows.rows.input_ids) and back.choices == rows.choices
    ev = P.Evaluation(tiny_data, [back])
    nll, correct = P.column_nll(model, ev.evalset)
    stats = SequenceStats(nll.numpy()[None], correct.numpy()[None])
    m = ev.metrics(stats)
    alone_nll, alone_ok = P.column_nll(model, tiny_data)
    from llmscape.loss import metrics

    plain = metrics(SequenceStats(alone_nll.numpy()[None], alone_ok.numpy()[None]), tiny_data.n_tokens)
    assert m["loss"][0] == pytest.approx(plain["loss"][0], abs=1e-12)  # probes leave the loss alone
    probe_nll, _ = P.column_nll(model, back.rows)
    assert m["set/accuracy"][0] == back.score(probe_nll.numpy()[None])["accuracy"][0]
    assert sorted(ev.names) == sorted(f"set/{k}" for k in P.METRICS)


def test_builtin_sets_are_valid_and_large_enough():
    for name, spec in P.probe_specs({}).items():
        items = P.read_items(spec.path)
        assert len(items) >= 40, name
        answers = np.bincount([it.answer for it in items])
        assert (answers > 0).sum() >= 2, f"{name}: answers all at one position"
    assert P.probe_specs({})["refusal"].chat and not P.probe_specs({})["capitals"].chat


@pytest.mark.parametrize("kind", ["reference", "fast"])
@pytest.mark.parametrize("layer", ["last", "all"])
def test_engines_score_capabilities_as_a_plain_forward_per_choice(tiny_dir, tiny, tiny_data, tmp_path, kind, layer):
    """Every grid point: the engines' capability metrics (computed with the loss in one pass) equal the
    oracle on a model whose weights are theta* + a d."""
    import copy

    from llmscape.directions import random_directions
    from llmscape.engine import build_engine
    from llmscape.loss import metrics
    from llmscape.models import read_tensors, tensor_shapes
    from llmscape.targets import select

    model, tokenizer = tiny
    rows = P.encode(write(tmp_path, ITEMS), tokenizer)
    ev = P.Evaluation(tiny_data, [rows])
    names = select(tensor_shapes(tiny_dir), ["proj"], layer, 4)
    (d,) = random_directions(read_tensors(tiny_dir, names), 1, seed=3, norm="filter")
    engine = build_engine({"kind": kind}, tiny_dir, ev.evalset, [d])
    coeffs = np.array([[0.0], [0.3], [-0.6]])
    stats = engine.evaluate(coeffs)
    got = ev.metrics(stats)
    alone = metrics(build_engine({"kind": kind}, tiny_dir, tiny_data, [d]).evaluate(coeffs), tiny_data.n_tokens)
    np.testing.assert_allclose(got["loss"], alone["loss"], atol=1e-6)  # the probes leave the loss alone
    for p, (a,) in enumerate(coeffs):
        moved = copy.deepcopy(model)
        params = dict(moved.named_parameters())
        with torch.no_grad():
            for n in names:
                params[n].add_(a * d[n])
        want = oracle_scores(moved, tokenizer, ITEMS)
        ll = rows.log_likelihoods(stats.nll_sum[p : p + 1, ev.probe_columns[0]])[0]
        for i, item_ll in enumerate(want["ll"]):
            np.testing.assert_allclose(ll[i, : len(item_ll)], item_ll, atol=1e-4)
        for key in P.METRICS:
            assert got[f"set/{key}"][p] == pytest.approx(want[key], abs=1e-4), (key, a)
