"""Evaluation sets: windows from every text file, a warning for texts shorter than a window, chat prompts."""

import logging

import pytest
from snakemake.utils import validate
from workflow_helpers import ROOT

from llmscape.config import check
from llmscape.data import load_eval_set, texts_for, texts_of, tokenize
from llmscape.errors import LlmscapeError


def windows(data) -> list[str]:
    """The decoded windows (the tiny tokenizer's decoder puts a space between characters)."""
    return [t.replace(" ", "") for t in data.texts]


def test_max_sequences_takes_windows_from_every_file_in_turn(tiny, tmp_path):
    _, tokenizer = tiny  # one token per character
    files = [tmp_path / "a.txt", tmp_path / "b.txt"]
    files[0].write_text("aaaabbbbcccc")
    files[1].write_text("xxxxyyyy")
    texts = texts_of({"kind": "files", "files": [str(f) for f in files]})
    data = tokenize(texts, tokenizer, seq_len=4, max_sequences=3)
    assert windows(data) == ["aaaa", "xxxx", "bbbb"]
    assert windows(tokenize(texts, tokenizer, seq_len=4)) == ["aaaa", "xxxx", "bbbb", "yyyy", "cccc"]


def test_prompts_keep_their_order_and_labels_under_max_sequences(tiny):
    _, tokenizer = tiny
    data = tokenize(["first one", "second", "third"], tokenizer, max_sequences=2)
    assert data.texts == ["first one", "second"] and len(data) == 2
    assert data.attention_mask.sum(dim=1).tolist() == [9, 6]


def test_a_text_shorter_than_seq_len_is_one_window_with_a_warning(tiny, caplog):
    _, tokenizer = tiny
    with caplog.at_level(logging.WARNING, logger="llmscape"):
        data = tokenize(["abcdefghij", "xyz"], tokenizer, seq_len=8)
    assert windows(data) == ["abcdefgh", "xyz", "ij"]
    assert "text 1 has 3 tokens, fewer than seq_len = 8" in caplog.text


CHAT = "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}{% if add_generation_prompt %}<bot>{% endif %}"  # noqa: E501


def test_chat_prompts_are_the_chat_templates_tokens(tmp_path):
    from conftest import make_tiny_llama
    from transformers import AutoTokenizer

    from llmscape.models import prepare_model
    from llmscape.steps import prepare_data

    src = make_tiny_llama(tmp_path / "src")
    tokenizer = AutoTokenizer.from_pretrained(src)
    tokenizer.chat_template = CHAT
    tokenizer.save_pretrained(src)
    prepare_model(str(src), tmp_path / "model")
    prompts = ["hello", "what is a loss?"]
    prepare_data(tmp_path / "model", {"kind": "prompts", "prompts": prompts, "chat": True}, tmp_path / "d.h5")
    data = load_eval_set(tmp_path / "d.h5")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "model")
    for i, prompt in enumerate(prompts):  # transformers' own tokenization of the conversation
        conversation = [{"role": "user", "content": prompt}]
        want = tokenizer.apply_chat_template(conversation, add_generation_prompt=True)["input_ids"]
        assert data.input_ids[i, : int(data.attention_mask[i].sum())].tolist() == list(want)
    assert windows(data)[1] == "<user>whatisaloss?<bot>"


def test_chat_needs_a_template_and_prompts(tiny, tmp_path):
    _, tokenizer = tiny
    with pytest.raises(LlmscapeError, match="need a chat template; this model's tokenizer has none"):
        texts_for({"kind": "prompts", "prompts": ["hi there"], "chat": True}, tokenizer)
    assert texts_for({"kind": "prompts", "prompts": ["hi there"]}, tokenizer) == (["hi there"], False)
    text = tmp_path / "a.txt"
    text.write_text("some text")
    config = {"studies": {"s": {"tensors": ["mlp"], "directions": {"r": {}}}}, "data": {"kind": "files"}}
    config["data"] |= {"files": [str(text)], "chat": True}
    validate(config, str(ROOT / "workflow/schemas/config.schema.yaml"))
    with pytest.raises(LlmscapeError, match=r"config\['data'\]\['chat'\] = True: the chat template applies to kind"):
        check(config, cuda_available=False, memory_bytes=2**40)
