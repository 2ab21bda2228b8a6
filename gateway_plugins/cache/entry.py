"""A cache entry's bytes: one JSON line of facts, then the answer's body exactly as the client got it, with the
request's PII originals turned back into its placeholders.

Working on the body's bytes, not on LiteLLM's response objects, is what makes one code path serve every endpoint
and both shapes (JSON and SSE streams) in the format the client asked for.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import orjson

from gateway_plugins.pii.restore import Restorer

VERSION = 1


@dataclass(frozen=True, slots=True)
class Entry:
    content_type: str
    cost_usd: float
    served_model: str | None
    body: bytes

    @property
    def streamed(self) -> bool:
        return self.content_type.startswith("text/event-stream")


def encode(entry: Entry) -> bytes:
    head = {"v": VERSION, "ct": entry.content_type, "usd": entry.cost_usd, "model": entry.served_model}
    return orjson.dumps(head) + b"\n" + entry.body


def decode(raw: bytes) -> Entry | None:
    """None for anything this version cannot read (an older layout is simply a miss)."""
    head, sep, body = raw.partition(b"\n")
    if not sep:
        return None
    try:
        meta = orjson.loads(head)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(meta, dict) or meta.get("v") != VERSION:
        return None
    return Entry(str(meta.get("ct") or "application/json"), float(meta.get("usd") or 0.0), meta.get("model"), body)


def _json_forms(value: str) -> set[str]:
    """How ``value`` can appear inside a JSON string of the answer (raw UTF-8 or ASCII-escaped)."""
    return {value, json.dumps(value, ensure_ascii=False)[1:-1], json.dumps(value)[1:-1]} - {""}


def remask(body: bytes, originals: dict[str, str]) -> bytes | None:
    """``body`` with this request's originals replaced by their placeholders, or None if an original is still in
    it afterwards (it could not be removed, so the answer must not be stored)."""
    if not originals:
        return body
    text = body.decode("utf-8", errors="replace")
    pairs = sorted(
        ((form, token) for token, value in originals.items() for form in _json_forms(value)), key=lambda p: -len(p[0])
    )
    for form, token in pairs:
        text = text.replace(form, token)
    if any(form in text for form, _ in pairs):
        return None
    return text.encode()


def restore(body: bytes, originals: dict[str, str] | None) -> bytes:
    """The stored body with placeholders replaced by the current request's own originals (JSON-escaped)."""
    if not originals:
        return body
    return Restorer(originals).json.replace(body.decode("utf-8")).encode()


def sse_events(body: bytes) -> list[bytes]:
    """A stored stream cut back into its events, so a hit is replayed as a stream."""
    parts = body.split(b"\n\n")
    events = [p + b"\n\n" for p in parts[:-1]]
    if parts[-1]:
        events.append(parts[-1])
    return events
