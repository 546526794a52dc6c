"""Split text into chunks for synthesis (pure).

Rules, in order of preference: end a chunk at a sentence end (. ! ? … and their CJK forms, or a blank
line), else at a clause mark (, ; : — and CJK forms), else between words. A single word longer than the
limit is the only thing ever cut inside (there is no other way to respect the limit). Each chunk is an
exact slice of the input (`text[start:end]`, no surrounding whitespace): joining the chunks' words gives
the input's words in order, nothing lost, nothing reordered.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

DEFAULT_MAX_CHARS = 200

_WORD = re.compile(r"\S+")
_CLOSERS = "\"'”’»)]}」』】"
_SENTENCE_END = re.compile(rf"(?:[.!?…。！？]+|\.\.\.)[{re.escape(_CLOSERS)}]*$")
_CLAUSE_END = re.compile(rf"[,;:，；：、—–][{re.escape(_CLOSERS)}]*$")
_BLANK_LINE = re.compile(r"\n[ \t\r\f\v]*\n")


@dataclass(frozen=True)
class Chunk:
    index: int
    text: str
    start: int
    end: int

    def to_dict(self) -> dict[str, object]:
        return {"index": self.index, "text": self.text, "start": self.start, "end": self.end}


@dataclass(frozen=True)
class _Word:
    start: int
    end: int
    strength: int  # 2: sentence ends after it, 1: clause ends after it, 0: plain word


def _words(text: str) -> list[_Word]:
    out: list[_Word] = []
    matches = list(_WORD.finditer(text))
    for i, m in enumerate(matches):
        token = m.group()
        gap = text[m.end():matches[i + 1].start()] if i + 1 < len(matches) else ""
        if _SENTENCE_END.search(token) or _BLANK_LINE.search(gap):
            strength = 2
        elif _CLAUSE_END.search(token):
            strength = 1
        else:
            strength = 0
        out.append(_Word(m.start(), m.end(), strength))
    return out


def _cut_long_word(word: _Word, max_chars: int) -> Iterator[tuple[int, int]]:
    for start in range(word.start, word.end, max_chars):
        yield start, min(start + max_chars, word.end)


def _split_run(words: list[_Word], max_chars: int, level: int) -> Iterator[tuple[int, int]]:
    """Spans covering `words` (one sentence or clause), each within max_chars, cut at the weakest level."""
    if words[-1].end - words[0].start <= max_chars:
        yield words[0].start, words[-1].end
        return
    if level < 0:  # plain words: greedy, a too-long word is cut
        yield from _pack([[w] for w in words], max_chars, level)
        return
    groups: list[list[_Word]] = [[]]
    for w in words:
        groups[-1].append(w)
        if w.strength >= level:
            groups.append([])
    groups = [g for g in groups if g]
    yield from _pack(groups, max_chars, level)


def _pack(groups: list[list[_Word]], max_chars: int, level: int) -> Iterator[tuple[int, int]]:
    """Greedy packing of word groups into spans; a group too long alone is split one level finer."""
    cur: tuple[int, int] | None = None
    for group in groups:
        g_start, g_end = group[0].start, group[-1].end
        if g_end - g_start > max_chars:
            if cur:
                yield cur
                cur = None
            if len(group) == 1 and level < 0:
                yield from _cut_long_word(group[0], max_chars)
            else:
                yield from _split_run(group, max_chars, level - 1)
            continue
        if cur is not None and g_end - cur[0] <= max_chars:
            cur = (cur[0], g_end)
        else:
            if cur:
                yield cur
            cur = (g_start, g_end)
    if cur:
        yield cur


def chunk_text(text: str, max_chars: int = DEFAULT_MAX_CHARS) -> list[Chunk]:
    """Chunks of at most `max_chars` characters, sentence-aware, in input order."""
    if max_chars < 1:
        raise ValueError("max_chars must be >= 1")
    words = _words(text)
    if not words:
        return []
    spans = _split_run(words, max_chars, 2)
    return [Chunk(i, text[s:e], s, e) for i, (s, e) in enumerate(spans)]
