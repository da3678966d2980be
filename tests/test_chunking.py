"""Text chunking and crossfade: never drop characters, prefer sentence ends, join without clicks."""

from __future__ import annotations

import random
import re

import numpy as np
import pytest

from backend.engines.chunking import crossfade_join, split_text


def _nonspace(s: str) -> str:
    return re.sub(r"\s+", "", s)


def test_short_text_is_one_chunk() -> None:
    assert split_text("  Hello world.  ", 800) == ["Hello world."]
    assert split_text("   ", 800) == []


def test_splits_at_sentence_ends_not_abbreviations_or_decimals() -> None:
    text = "Dr. Smith paid $3.50 for it. He was happy! Was he? Yes."
    chunks = split_text(text, 30)
    assert chunks[0] == "Dr. Smith paid $3.50 for it."
    assert all(len(c) <= 30 for c in chunks)
    assert "".join(chunks).replace(" ", "") == text.replace(" ", "")


def test_plain_words_still_end_sentences() -> None:
    assert split_text("I said no. Then we left the room at once.", 12)[0] == "I said no."


def test_initials_and_eg_do_not_end_sentences() -> None:
    chunks = split_text("We met J. Doe, e.g. at the fair. Then we left for home.", 40)
    assert chunks[0] == "We met J. Doe, e.g. at the fair."


def test_cjk_sentence_punctuation() -> None:
    text = "今天天气很好。我们去公园吧！你觉得怎么样？好的。"
    assert split_text(text, 8) == ["今天天气很好。", "我们去公园吧！", "你觉得怎么样？", "好的。"]
    # greedy: as many whole sentences as fit
    assert split_text(text, 10) == ["今天天气很好。", "我们去公园吧！", "你觉得怎么样？好的。"]


def test_falls_back_to_clause_then_space_then_hard_cut() -> None:
    clause = split_text("alpha beta, gamma delta, epsilon zeta, eta theta", 26)
    assert clause[0] == "alpha beta, gamma delta,"
    spaces = split_text("one two three four five six seven", 10)
    assert all(len(c) <= 10 for c in spaces) and spaces[0] == "one two"
    hard = split_text("x" * 25, 10)
    assert hard == ["x" * 10, "x" * 10, "x" * 5]


@pytest.mark.parametrize("seed", range(5))
def test_random_text_never_loses_characters(seed: int) -> None:
    rng = random.Random(seed)
    words = [
        "Mr.",
        "3.14",
        "hello",
        "world.",
        "what?!",
        "量子。",
        "e.g.",
        "co-op,",
        "—",
        "x" * 30,
        "…",
    ]
    text = " ".join(rng.choice(words) for _ in range(600))
    for max_chars in (17, 80, 800):
        chunks = split_text(text, max_chars)
        assert all(0 < len(c) <= max_chars for c in chunks)
        assert _nonspace("".join(chunks)) == _nonspace(text)


def test_3000_characters_give_several_chunks_none_dropped() -> None:
    sentence = "The quick brown fox jumps over the lazy dog near the river bank. "
    text = (sentence * 50)[:3000]
    chunks = split_text(text, 800)
    assert len(chunks) >= 4
    assert all(c.endswith(".") for c in chunks[:-1])  # cut at sentence ends
    assert _nonspace("".join(chunks)) == _nonspace(text)


def test_crossfade_length_and_continuity() -> None:
    sr = 24000
    a = np.ones(sr, dtype=np.float32)
    b = -np.ones(sr, dtype=np.float32)
    out = crossfade_join([a, b], sr, crossfade_ms=50)
    n = int(0.05 * sr)
    assert out.shape == (2 * sr - n,)
    assert out.dtype == np.float32
    assert np.abs(np.diff(out)).max() < 0.01  # a linear ramp, no step
    assert out[0] == 1.0 and out[-1] == -1.0


def test_crossfade_edge_cases() -> None:
    sr = 1000
    assert crossfade_join([], sr).size == 0
    short = crossfade_join([np.ones(10), np.ones(10)], sr, crossfade_ms=50)
    assert short.size == 15  # overlap capped at half of a short chunk
    plain = crossfade_join([np.ones(100), np.zeros(100)], sr, crossfade_ms=0)
    assert plain.size == 200
