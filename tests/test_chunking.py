from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.chunking import chunk_text

WORDS = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Zs", "Zl", "Zp", "Cc")), min_size=1, max_size=30)
SEPARATORS = st.sampled_from([" ", "  ", "\n", "\n\n", ". ", "! ", "? ", ", ", "; ", "。", " — ", "\t"])
TEXTS = st.lists(st.tuples(WORDS, SEPARATORS), max_size=60).map(lambda parts: "".join(w + s for w, s in parts))


@settings(max_examples=300, deadline=None)
@given(text=TEXTS, max_chars=st.integers(min_value=1, max_value=120))
def test_no_text_lost_or_reordered_and_limits_respected(text: str, max_chars: int) -> None:
    chunks = chunk_text(text, max_chars)
    assert [c.index for c in chunks] == list(range(len(chunks)))
    # exact slices of the input, in order, not overlapping, within the limit
    previous_end = 0
    for c in chunks:
        assert text[c.start:c.end] == c.text
        assert c.start >= previous_end
        assert 1 <= len(c.text) <= max_chars
        assert c.text == c.text.strip()
        assert text[previous_end:c.start].strip() == ""  # only whitespace between chunks
        previous_end = c.end
    assert text[previous_end:].strip() == ""
    assert "".join(text.split()) == "".join("".join(c.text.split()) for c in chunks)


@settings(max_examples=200, deadline=None)
@given(text=TEXTS, max_chars=st.integers(min_value=1, max_value=120))
def test_words_are_cut_only_when_longer_than_the_limit(text: str, max_chars: int) -> None:
    chunks = chunk_text(text, max_chars)
    boundaries = {c.start for c in chunks} | {c.end for c in chunks}
    for word in re.finditer(r"\S+", text):
        inside = [b for b in boundaries if word.start() < b < word.end()]
        if inside:
            assert word.end() - word.start() > max_chars


def test_prefers_sentence_ends_over_clauses_over_words() -> None:
    text = "The first sentence is here. The second one follows, with a clause; and then more words come."
    assert [c.text for c in chunk_text(text, 40)] == [
        "The first sentence is here.", "The second one follows, with a clause;", "and then more words come."]
    assert [c.text for c in chunk_text(text, 30)] == [
        "The first sentence is here.", "The second one follows,", "with a clause;", "and then more words come."]


def test_sentences_are_packed_up_to_the_limit() -> None:
    assert [c.text for c in chunk_text("One. Two. Three. Four.", 10)] == ["One. Two.", "Three.", "Four."]


def test_cjk_sentence_marks_and_blank_lines_end_sentences() -> None:
    text = "你好。 世界！\n\nNext paragraph here"
    assert [c.text for c in chunk_text(text, 9)] == ["你好。 世界！", "Next", "paragraph", "here"]


def test_a_word_longer_than_the_limit_is_the_only_cut() -> None:
    assert [c.text for c in chunk_text("ab Supercalifragilistic cd", 8)] == ["ab", "Supercal", "ifragili", "stic",
                                                                              "cd"]


def test_empty_and_whitespace_give_no_chunks() -> None:
    assert chunk_text("") == []
    assert chunk_text(" \n\t ") == []


def test_limit_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_chars"):
        chunk_text("x", 0)
