"""The view analysis sees: obfuscation undone, with a map back to the original characters.

Recognizers run on a normalized copy of each text, and what they find is masked in the original. The copy:

* is NFKC-normalized character by character (fullwidth at-signs and digits (U+FF20, U+FF10-FF19), ligatures, superscripts become ASCII);
* drops invisible characters (zero-width space/joiners, word joiner, BOM, soft hyphen, bidi controls), which
  split a value for a regex but not for a reader;
* decodes JSON string escapes (``\\u0040``, ``\\n``, ``\\/``): string-encoded JSON such as tool-call ``arguments`` keeps
  them as six literal characters, which the upstream model reads as ``@``.

``starts[i]`` and ``ends[i]`` are where the original characters that produced view character ``i`` begin and
end, so a span ``[s, e)`` of the view covers the original ``[starts[s], ends[e - 1])``: every original character
that produced it, escapes and invisible characters inside it included.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

# Invisible: zero-width space/non-joiner/joiner, word joiner, invisible operators, BOM, soft hyphen, Mongolian
# vowel separator, bidi marks, embeddings, overrides and isolates.
INVISIBLE = frozenset(
    "\u200b\u200c\u200d\u2060\u2061\u2062\u2063\u2064\ufeff\u00ad\u180e"
    "\u200e\u200f\u061c\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)
_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})(?:\\u([dD][c-fC-F][0-9a-fA-F]{2}))?|\\[/nrt\"\\\\]")
_SIMPLE = {"/": "/", "n": "\n", "r": "\r", "t": "\t", '"': '"', "\\": "\\"}
# Only texts with one of these need the slow path; the rest (nearly all prompts) are their own view.
_NEEDS = re.compile(r"[^\x00-\x7f]|\\")


@dataclass(frozen=True, slots=True)
class View:
    text: str
    # None when the view is the original (identity map).
    starts: tuple[int, ...] | None = None
    ends: tuple[int, ...] | None = None

    def span(self, start: int, end: int) -> tuple[int, int]:
        """Original ``[start, end)`` of the view's non-empty ``[start, end)``."""
        if self.starts is None or self.ends is None:
            return start, end
        return self.starts[start], self.ends[end - 1]


def normalize(text: str) -> View:
    if not _NEEDS.search(text):
        return View(text, None)
    out: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "\\":
            m = _ESCAPE.match(text, i)
            if m is not None:
                decoded = _decode_escape(m)
                if decoded is not None:
                    for c in _fold(decoded):
                        out.append(c)
                        starts.append(i)
                        ends.append(m.end())
                    i = m.end()
                    continue
        if ch in INVISIBLE:
            i += 1
            continue
        for c in _fold(ch) if ord(ch) > 0x7F else ch:
            out.append(c)
            starts.append(i)
            ends.append(i + 1)
        i += 1
    return View("".join(out), tuple(starts), tuple(ends))


def _decode_escape(m: re.Match[str]) -> str | None:
    if m.group(1) is None:
        return _SIMPLE[m.group(0)[1]]
    code = int(m.group(1), 16)
    if m.group(2) is not None and 0xD800 <= code <= 0xDBFF:
        low = int(m.group(2), 16)
        return chr(0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00))
    if 0xD800 <= code <= 0xDFFF:
        return None  # a lone surrogate: not text
    return chr(code)


def _fold(s: str) -> str:
    out = []
    for ch in s:
        if ch in INVISIBLE:
            continue
        out.append(unicodedata.normalize("NFKC", ch) if ord(ch) > 0x7F else ch)
    return "".join(out)
