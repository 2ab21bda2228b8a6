"""Putting original values back in place of the request's tokens, whole responses and SSE streams.

A stream is never buffered to the end: only a chunk tail that could still become a token
(``<EMAIL_AD`` ...) is held back until the next delta of the same field says what it is.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any


def _get(obj: Any, name: str) -> Any:
    if isinstance(obj, dict):
        return obj.get(name)
    return getattr(obj, name, None)


def _set(obj: Any, name: str, value: Any) -> None:
    if isinstance(obj, dict):
        obj[name] = value
    else:
        setattr(obj, name, value)


class Restorer:
    def __init__(self, originals: dict[str, str]) -> None:
        self.originals = originals
        # Longest first so no token is cut short by another that is its prefix.
        self._pattern = re.compile("|".join(re.escape(t) for t in sorted(originals, key=len, reverse=True)))
        self._prefixes = {t[:i] for t in originals for i in range(1, len(t))}
        self._max = max(map(len, originals))
        self._json: Restorer | None = None

    @property
    def json(self) -> Restorer:
        """The same tokens, replaced by their originals as they must appear inside a JSON string (tool-call
        arguments): a quote or backslash in an original must not break the client's JSON."""
        if self._json is None:
            self._json = Restorer({token: json.dumps(value)[1:-1] for token, value in self.originals.items()})
        return self._json

    def replace(self, text: str) -> str:
        return self._pattern.sub(lambda m: self.originals[m.group(0)], text)

    def split_tail(self, text: str) -> int:
        """Index from which ``text`` may be the start of a token still arriving (len(text) if none)."""
        start = max(0, len(text) - self._max + 1)
        while True:
            i = text.find("<", start)
            if i < 0:
                return len(text)
            if text[i:] in self._prefixes:
                return i
            start = i + 1


def restore_message_fields(restorer: Restorer, holder: Any) -> None:
    """Restore ``content``/``text``, tool-call and legacy function-call arguments of a message-like object."""
    for name in ("content", "text"):
        value = _get(holder, name)
        if isinstance(value, str):
            _set(holder, name, restorer.replace(value))
    for call in _get(holder, "tool_calls") or ():
        fn = _get(call, "function")
        args = _get(fn, "arguments") if fn is not None else None
        if isinstance(args, str):
            _set(fn, "arguments", restorer.json.replace(args))
    legacy = _get(holder, "function_call")
    args = _get(legacy, "arguments") if legacy is not None else None
    if isinstance(args, str):
        _set(legacy, "arguments", restorer.json.replace(args))


def restore_whole(restorer: Restorer, response: Any) -> None:
    for choice in _get(response, "choices") or ():
        message = _get(choice, "message")
        if message is not None:
            restore_message_fields(restorer, message)
        if isinstance(_get(choice, "text"), str):
            restore_message_fields(restorer, choice)


class StreamRestorer:
    """Per-stream state: held-back tails per (choice, field) and per (choice, tool call)."""

    def __init__(self, restorer: Restorer) -> None:
        self.r = restorer
        self.pending: dict[tuple, str] = {}
        self.tool_templates: dict[tuple, Any] = {}
        self.last_chunk: Any = None

    def _restorer(self, key: tuple) -> Restorer:
        # Tool-call keys are (choice, "tool", index): their text is JSON.
        return self.r.json if key[1] == "tool" else self.r

    def _feed(self, key: tuple, text: str) -> str:
        buf = self.pending.pop(key, "") + text
        cut = self.r.split_tail(buf)
        if cut < len(buf):
            self.pending[key] = buf[cut:]
        return self._restorer(key).replace(buf[:cut])

    def _take(self, key: tuple) -> str:
        return self._restorer(key).replace(self.pending.pop(key, ""))

    def process(self, chunk: Any) -> Any:
        self.last_chunk = chunk
        for choice in _get(chunk, "choices") or ():
            idx = _get(choice, "index") or 0
            holder = _get(choice, "delta")
            if holder is None:
                holder = choice
            seen_tools = set()
            for name in ("content", "text"):
                value = _get(holder, name)
                if isinstance(value, str):
                    _set(holder, name, self._feed((idx, name), value))
            for call in _get(holder, "tool_calls") or ():
                tkey = (idx, "tool", _get(call, "index") or 0)
                seen_tools.add(tkey)
                self.tool_templates[tkey] = call
                fn = _get(call, "function")
                args = _get(fn, "arguments") if fn is not None else None
                if isinstance(args, str):
                    _set(fn, "arguments", self._feed(tkey, args))
            if _get(choice, "finish_reason"):
                self._flush_choice(idx, holder, seen_tools)
        return chunk

    def _flush_choice(self, idx: int, holder: Any, seen_tools: set) -> None:
        for key in [k for k in self.pending if k[0] == idx]:
            rest = self._take(key)
            if key[1] in ("content", "text"):
                _set(holder, key[1], (_get(holder, key[1]) or "") + rest)
            elif key in seen_tools:
                for call in _get(holder, "tool_calls"):
                    if (_get(call, "index") or 0) == key[2]:
                        fn = _get(call, "function")
                        _set(fn, "arguments", (_get(fn, "arguments") or "") + rest)
            else:
                # Clients accumulate tool-call deltas by index: an extra delta for that index appends.
                call = copy.deepcopy(self.tool_templates[key])
                for name in ("id", "type"):
                    if _get(call, name) is not None:
                        _set(call, name, None)
                fn = _get(call, "function")
                if _get(fn, "name") is not None:
                    _set(fn, "name", None)
                _set(fn, "arguments", rest)
                calls = _get(holder, "tool_calls")
                if calls is None:
                    _set(holder, "tool_calls", [call])
                else:
                    calls.append(call)

    def tail_chunk(self) -> Any | None:
        """A final chunk carrying whatever is still held back when the upstream ends without a finish."""
        if not self.pending or self.last_chunk is None:
            return None
        chunk = copy.deepcopy(self.last_chunk)
        for choice in _get(chunk, "choices") or ():
            holder = _get(choice, "delta") or choice
            for name in ("content", "text"):
                if isinstance(_get(holder, name), str):
                    _set(holder, name, "")
            if _get(holder, "tool_calls"):
                _set(holder, "tool_calls", None)
            self._flush_choice(_get(choice, "index") or 0, holder, set())
        self.pending.clear()
        return chunk
