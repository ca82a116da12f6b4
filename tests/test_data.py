"""Evaluation sets from text files: windows from every file, a warning for texts shorter than a window."""

import logging

from llmscape.data import texts_of, tokenize


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
