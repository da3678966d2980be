"""Split long text into model-sized chunks and join the audio back with a short crossfade.

Why: Qwen3-TTS stops at ``max_new_tokens`` (2048 codec frames ≈ 170 s); a 5,000-character request sent in one
call is silently truncated (Voicebox fork). Splitting at sentence boundaries keeps prosody natural; the rules
fall back from sentence ends (aware of abbreviations, decimals and CJK punctuation) to clause boundaries, to
spaces, to a hard cut, and never drop a character — only whitespace at chunk edges is trimmed.
"""

from __future__ import annotations

import re

import numpy as np

#: lower-case abbreviations (without the final dot) after which a "." does not end a sentence
ABBREVIATIONS = frozenset(
    {
        "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "mt", "vs", "etc", "e.g", "i.e", "cf",
        "fig", "vol", "approx", "dept", "est", "inc", "ltd", "co", "corp", "jan", "feb",
        "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec", "u.s", "a.m", "p.m",
    }
)  # fmt: skip
_SENTENCE_END = re.compile(r"[.!?…]+[\"'”’)\]]*(?=\s|$)|[。！？]+[」』”’）]*")
_CLAUSE_END = re.compile(r"[;:,—–、，；：](?=\s|$)|[、，；：]")
_WORD_BEFORE = re.compile(r"([A-Za-z][A-Za-z.]*)$")


def _is_sentence_end(text: str, start: int, end: int) -> bool:
    """Whether the punctuation run ``text[start:end]`` really ends a sentence."""
    punct = text[start:end]
    if punct[0] != ".":
        return True
    if punct.startswith("..."):
        return True
    before = text[:start]
    if before and before[-1].isdigit() and end < len(text) and text[end : end + 1].isdigit():
        return False  # decimal (the lookahead requires a space, but keep it explicit)
    m = _WORD_BEFORE.search(before)
    if m:
        word = m.group(1).lower().rstrip(".")
        if word in ABBREVIATIONS:
            return False
        if len(word) == 1 and word.isalpha():
            return False  # an initial: "J. Smith"
    return True


def _boundaries(text: str, pattern: re.Pattern[str], sentence: bool) -> list[int]:
    out = []
    for m in pattern.finditer(text):
        if sentence and not _is_sentence_end(text, m.start(), m.end()):
            continue
        out.append(m.end())
    return out


def _cut_point(window: str, max_chars: int) -> int:
    """Where to cut ``window`` (len > max_chars): the last boundary ≤ max_chars of the best available kind."""
    for pattern, sentence in ((_SENTENCE_END, True), (_CLAUSE_END, False)):
        cuts = [c for c in _boundaries(window, pattern, sentence) if 0 < c <= max_chars]
        if cuts:
            return cuts[-1]
    space = window.rfind(" ", 1, max_chars + 1)
    if space > 0:
        return space
    ws = max((window.rfind(ch, 1, max_chars + 1) for ch in "\n\t"), default=-1)
    if ws > 0:
        return ws
    return max_chars  # hard cut: a single "word" longer than a chunk


def split_text(text: str, max_chars: int = 800) -> list[str]:
    """Split ``text`` into chunks of at most ``max_chars`` characters, preferring sentence boundaries.

    Returns ``[]`` for blank text. Concatenating the chunks reproduces every non-whitespace character of
    ``text`` in order.
    """
    if max_chars < 1:
        raise ValueError("max_chars must be at least 1")
    chunks: list[str] = []
    rest = text.strip()
    while rest:
        if len(rest) <= max_chars:
            chunks.append(rest)
            break
        # only look a little past the limit: enough for the lookahead after a cut, and linear overall
        cut = _cut_point(rest[: max_chars + 2], max_chars)
        piece = rest[:cut].strip()
        if piece:
            chunks.append(piece)
        rest = rest[cut:].lstrip()
    return chunks


class CrossfadeJoiner:
    """``crossfade_join`` one part at a time: ``push`` returns the samples that are final now.

    Why: a stream must send audio as each chunk is generated, yet be sample-identical to the joined output.
    Only the tail a later crossfade could still change is held back: at most ``crossfade_ms`` (and never more
    than half of the audio so far), exactly what ``crossfade_join`` would mix with the next part. The pieces
    ``push`` and ``finish`` return, concatenated, are ``crossfade_join(parts)`` sample for sample.
    """

    def __init__(self, sample_rate: int, crossfade_ms: float = 50) -> None:
        self.fade = max(0, int(sample_rate * crossfade_ms / 1000))
        self._held = np.zeros(0, dtype=np.float32)  # the tail not yet final
        self._total = 0  # samples of the joined output so far (sent + held)
        self._head: np.ndarray | None = None  # the start of a part arriving in pieces (``feed``)

    def push(self, part: np.ndarray | None) -> np.ndarray:
        """Add the next part; returns the samples that no later part can change any more."""
        if part is None:
            return np.zeros(0, dtype=np.float32)
        nxt = np.asarray(part, dtype=np.float32).reshape(-1)
        if not nxt.size:
            return np.zeros(0, dtype=np.float32)
        if self._total == 0:
            joined = nxt
        else:
            n = min(self.fade, self._total // 2, nxt.size // 2)
            if n <= 0:
                joined = np.concatenate([self._held, nxt])
            else:
                ramp = np.linspace(0.0, 1.0, n, endpoint=False, dtype=np.float32)
                mixed = self._held[-n:] * (1.0 - ramp) + nxt[:n] * ramp
                joined = np.concatenate([self._held[:-n], mixed, nxt[n:]])
        self._total += nxt.size - (self._held.size + nxt.size - joined.size)
        # the next crossfade mixes at most min(fade, total // 2) samples of the output's end
        keep = min(self.fade, self._total // 2, joined.size)
        ready, self._held = joined[: joined.size - keep], joined[joined.size - keep :]
        return ready.astype(np.float32, copy=False)

    def feed(self, samples: np.ndarray) -> np.ndarray:
        """Continue the current part with ``samples`` (a part that arrives in pieces); returns what is final.

        The crossfade at the part's start needs to know how many samples to mix, which depends on the part's
        length only while it is shorter than two fades: its start is held until it is longer than that (or
        ``close_part`` says it ended). ``feed`` + ``close_part`` give exactly what one ``push`` of the whole
        part gives.
        """
        nxt = np.asarray(samples, dtype=np.float32).reshape(-1)
        if self._head is not None:  # the part's start is still waiting for its crossfade
            self._head = np.concatenate([self._head, nxt])
            if self._head.size < 2 * self.fade:
                return np.zeros(0, dtype=np.float32)
            head, self._head = self._head, None
            return self.push(head)
        if not nxt.size:
            return np.zeros(0, dtype=np.float32)
        if self._total == 0:
            self._head = nxt
            return self.feed(np.zeros(0, dtype=np.float32))
        joined = np.concatenate([self._held, nxt])
        self._total += nxt.size
        keep = min(self.fade, self._total // 2, joined.size)
        ready, self._held = joined[: joined.size - keep], joined[joined.size - keep :]
        return ready.astype(np.float32, copy=False)

    def open_part(self) -> None:
        """A new part starts; its samples come through ``feed``."""
        self._head = np.zeros(0, dtype=np.float32)

    def close_part(self) -> np.ndarray:
        """The current part ended (a short part's start is joined now that its length is known)."""
        head, self._head = self._head, None
        return self.push(head) if head is not None else np.zeros(0, dtype=np.float32)

    def finish(self) -> np.ndarray:
        """The held tail: nothing follows it."""
        tail, self._held = self._held, np.zeros(0, dtype=np.float32)
        return tail.astype(np.float32, copy=False)


def crossfade_join(
    parts: list[np.ndarray], sample_rate: int, crossfade_ms: float = 50
) -> np.ndarray:
    """Concatenate audio chunks with a linear crossfade of ``crossfade_ms`` (shortened for short chunks).

    Why a crossfade: independently generated chunks start and end at arbitrary sample values; butt-joining them
    clicks. The overlap is capped at half of either neighbour so short chunks are never swallowed. Built on
    ``CrossfadeJoiner`` so a streamed join is the same join.
    """
    joiner = CrossfadeJoiner(sample_rate, crossfade_ms)
    pieces = [joiner.push(p) for p in parts]
    pieces.append(joiner.finish())
    return np.concatenate(pieces).astype(np.float32, copy=False)
