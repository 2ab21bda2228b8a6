"""kubegate's answers in the official shapes: nothing LiteLLM adds, no id that names a provider or deployment.

A client that appends an answer to its history sends back whatever the answer held, so an answer must hold only
official fields. LiteLLM adds ``provider_specific_fields`` to chat messages and choices, and gives Responses and
(through its adapter) Messages answers ids that are base64 of ``litellm:custom_llm_provider:...;model_id:...``.
Ids become kubegate's own request id (``resp_<id>``, ``msg_<id>``): a tenant can quote it to the platform team,
and it is the ``x-request-id`` of the same answer.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

from gateway_plugins.pii.restore import _get, _set

_LITELLM_ONLY = ("provider_specific_fields",)
_ID_PREFIX = {"responses": "resp_", "anthropic_messages": "msg_"}
_MESSAGE_START_ID = re.compile(rb'("type":\s*"message_start".*?"id":\s*")[^"]*(")', re.DOTALL)


def _drop(obj: Any, name: str) -> None:
    if isinstance(obj, dict):
        obj.pop(name, None)
        return
    if name in getattr(obj, "__dict__", {}) or name in (getattr(obj, "__pydantic_extra__", None) or {}):
        try:
            delattr(obj, name)
        except AttributeError:  # a pydantic field that cannot be deleted: at least say nothing
            setattr(obj, name, None)


def _clean_choices(answer: Any) -> None:
    for choice in _get(answer, "choices") or ():
        for holder in (choice, _get(choice, "message"), _get(choice, "delta")):
            if holder is None:
                continue
            for name in _LITELLM_ONLY:
                _drop(holder, name)
            for call in _get(holder, "tool_calls") or ():
                for name in _LITELLM_ONLY:
                    _drop(call, name)
                    if _get(call, "function") is not None:
                        _drop(_get(call, "function"), name)


def _set_id(obj: Any, value: str) -> None:
    if isinstance(obj, dict) or _get(obj, "id") is not None:
        _set(obj, "id", value)


def official(endpoint: str, request_id: str, answer: Any) -> Any:
    """Make a whole (non-streamed) answer official, in place."""
    prefix = _ID_PREFIX.get(endpoint)
    if prefix is not None:
        _set_id(answer, prefix + request_id)
    else:
        _clean_choices(answer)
    return answer


def official_chunk(endpoint: str, request_id: str, chunk: Any) -> Any:
    """The same for one streamed chunk: a chat delta, a Responses event or Messages SSE bytes."""
    if endpoint == "responses":
        response = _get(chunk, "response")
        if response is not None:
            _set_id(response, "resp_" + request_id)
        return chunk
    if endpoint == "anthropic_messages":
        raw = chunk.encode() if isinstance(chunk, str) else chunk
        if isinstance(raw, (bytes, bytearray)) and b"message_start" in raw:
            fixed = _MESSAGE_START_ID.sub(lambda m: m.group(1) + b"msg_" + request_id.encode() + m.group(2), raw)
            return fixed.decode() if isinstance(chunk, str) else fixed
        return chunk
    _clean_choices(chunk)
    if endpoint == "completions":
        _complete_text_chunk(chunk)
    return chunk


def _complete_text_chunk(chunk: Any) -> None:
    """LiteLLM's legacy-completions chunks: the last one has no ``text`` (the SDKs' type requires it) and every
    one carries a zero ``usage`` (OpenAI sends usage once, at the end, when asked)."""
    for choice in _get(chunk, "choices") or ():
        if _get(choice, "text") is None:
            _set(choice, "text", "")
    usage = _get(chunk, "usage")
    if usage is not None and not any(_get(usage, k) for k in ("prompt_tokens", "completion_tokens", "total_tokens")):
        _drop(chunk, "usage")


async def official_stream(endpoint: str, request_id: str, stream: AsyncIterator[Any]) -> AsyncIterator[Any]:
    async for chunk in stream:
        yield official_chunk(endpoint, request_id, chunk)
