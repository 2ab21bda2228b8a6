"""Restore for the event-shaped APIs: OpenAI's Responses API and Anthropic's Messages API.

Whole answers are walked (every string leaf: text, tool-call arguments, echoed instructions). Streams
are restored per event: text and argument deltas go through the same hold-back as chat (only a tail
that could still become a token waits for the next delta of the same block), and before the event that
closes a block (``*.done`` / ``content_block_stop``) the held tail is sent as one more delta, so the
client's accumulated text is complete before the block ends.

LiteLLM 1.103.7 hands the proxy's streaming hook Responses events as pydantic objects and Anthropic
events as SSE bytes (one or more whole events per chunk; a partial event is kept until it completes).
"""

from __future__ import annotations

import copy
import json
from typing import Any

from gateway_plugins.pii.restore import Restorer, _get, _set

# Strings that hold JSON (tool-call arguments): originals go in JSON-escaped.
_JSON_FIELDS = frozenset({"arguments", "partial_json"})
# Blocks the upstream signed: a client sends them back byte-exact and the upstream checks the signature, so
# they keep the placeholders the model saw (their deltas, ``thinking_delta``, pass untouched too).
SIGNED_KINDS = frozenset({"thinking", "redacted_thinking"})


def _kind(obj: Any) -> str:
    value = _get(obj, "type")
    return str(getattr(value, "value", value) or "")


def restore_deep(restorer: Restorer, obj: Any, as_json: Restorer | None = None, _field: str = "") -> Any:
    """Replace tokens in every string leaf of ``obj`` (dicts, lists, pydantic objects) in place; returns a
    replaced value for a string argument."""
    as_json = as_json or restorer.json
    if isinstance(obj, str):
        return (as_json if _field in _JSON_FIELDS else restorer).replace(obj)
    if _kind(obj) in SIGNED_KINDS:
        return obj
    if isinstance(obj, dict):
        items = list(obj.items())
    elif isinstance(obj, list):
        items = list(enumerate(obj))
    elif hasattr(obj, "__dict__") and not isinstance(obj, type):
        items = list(vars(obj).items()) + list((getattr(obj, "__pydantic_extra__", None) or {}).items())
    else:
        return obj
    for key, value in items:
        if isinstance(value, str):
            new = restore_deep(restorer, value, as_json, key if isinstance(key, str) else _field)
            if new != value:
                if isinstance(obj, (dict, list)):
                    obj[key] = new
                else:
                    setattr(obj, key, new)
        elif value is not None and not isinstance(value, (int, float, bool)):
            restore_deep(restorer, value, as_json, key if isinstance(key, str) else _field)
    return obj


class _Held:
    """Held-back tails per block, each remembered with the delta event that can carry it later."""

    def __init__(self, restorer: Restorer) -> None:
        self.r = restorer
        self.j = restorer.json
        self.pending: dict[tuple, str] = {}
        self.templates: dict[tuple, Any] = {}

    def feed(self, key: tuple, text: str, *, as_json: bool) -> str:
        buf = self.pending.pop(key, "") + text
        cut = self.r.split_tail(buf)
        if cut < len(buf):
            self.pending[key] = buf[cut:]
        return (self.j if as_json else self.r).replace(buf[:cut])

    def take(self, key: tuple, *, as_json: bool) -> str:
        return (self.j if as_json else self.r).replace(self.pending.pop(key, ""))


class ResponsesStreamRestorer:
    """Responses API events (``response.output_text.delta`` ... ``response.completed``)."""

    def __init__(self, restorer: Restorer) -> None:
        self.held = _Held(restorer)

    @staticmethod
    def _key(event: Any, kind: str) -> tuple:
        base = kind.rsplit(".", 1)[0]
        return (base, _get(event, "output_index") or 0, _get(event, "content_index") or 0)

    def process(self, event: Any) -> list[Any]:
        kind = _kind(event)
        if kind.endswith(".delta") and isinstance(_get(event, "delta"), str):
            key = self._key(event, kind)
            self.held.templates[key] = event
            _set(event, "delta", self.held.feed(key, _get(event, "delta"), as_json="arguments" in kind))
            return [event]
        out = []
        if kind.endswith(".done"):
            out += self._flush(self._key(event, kind))
        if kind == "response.completed" or kind in ("response.failed", "response.incomplete"):
            for key in list(self.held.pending):
                out += self._flush(key)
        restore_deep(self.held.r, event, self.held.j)
        out.append(event)
        return out

    def _flush(self, key: tuple) -> list[Any]:
        if key not in self.held.pending:
            return []
        rest = self.held.take(key, as_json="arguments" in key[0])
        extra = copy.deepcopy(self.held.templates[key])
        _set(extra, "delta", rest)
        return [extra]

    def finish(self) -> list[Any]:
        out = []
        for key in list(self.held.pending):
            out += self._flush(key)
        return out


def _sse(kind: str, data: dict) -> bytes:
    return f"event: {kind}\ndata: {json.dumps(data)}\n\n".encode()


class AnthropicStreamRestorer:
    """Anthropic Messages SSE (``content_block_delta`` with ``text_delta`` / ``input_json_delta``)."""

    _DELTA_FIELDS = {"text_delta": "text", "input_json_delta": "partial_json"}

    def __init__(self, restorer: Restorer) -> None:
        self.held = _Held(restorer)
        self.partial = b""

    def process(self, chunk: Any) -> list[Any]:
        if isinstance(chunk, str):
            chunk = chunk.encode()
        if not isinstance(chunk, (bytes, bytearray)):
            return [chunk]
        data = self.partial + bytes(chunk)
        complete, sep, rest = data.rpartition(b"\n\n")
        self.partial = rest
        if not sep:
            return []
        out = b"".join(self._event(raw + b"\n\n") for raw in complete.split(b"\n\n"))
        return [out] if out else []

    def _event(self, raw: bytes) -> bytes:
        payload = None
        for line in raw.split(b"\n"):
            if line.startswith(b"data:"):
                try:
                    payload = json.loads(line[5:].strip())
                except ValueError:
                    return raw
        if not isinstance(payload, dict):
            return raw
        kind = payload.get("type")
        if kind == "content_block_delta":
            delta = payload.get("delta") or {}
            field = self._DELTA_FIELDS.get(delta.get("type"))
            if field is None or not isinstance(delta.get(field), str):
                return raw
            key = (payload.get("index") or 0, field)
            self.held.templates[key] = payload
            delta[field] = self.held.feed(key, delta[field], as_json=field == "partial_json")
            return _sse(kind, payload)
        if kind == "content_block_stop":
            return self._flush(payload.get("index") or 0) + raw
        if kind in ("message_delta", "message_stop"):
            return self._flush(None) + raw
        if kind in ("message_start", "content_block_start"):
            before = json.dumps(payload)
            restore_deep(self.held.r, payload, self.held.j)
            return raw if json.dumps(payload) == before else _sse(kind, payload)
        return raw

    def _flush(self, index: int | None) -> bytes:
        out = b""
        for key in [k for k in self.held.pending if index is None or k[0] == index]:
            rest = self.held.take(key, as_json=key[1] == "partial_json")
            event = copy.deepcopy(self.held.templates[key])
            event["delta"][key[1]] = rest
            out += _sse("content_block_delta", event)
        return out

    def finish(self) -> list[Any]:
        out = self._flush(None) + self.partial
        self.partial = b""
        return [out] if out else []
