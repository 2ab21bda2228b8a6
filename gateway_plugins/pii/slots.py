"""Every text of a request that leaves for the upstream, as (container, key) slots to read and rewrite."""

from __future__ import annotations

from typing import Any

Slot = tuple[Any, Any]  # (dict or list, key or index) whose value is a str


def _content_slots(message: dict, out: list[Slot]) -> None:
    content = message.get("content")
    if isinstance(content, str):
        out.append((message, "content"))
    elif isinstance(content, list):
        for i, part in enumerate(content):
            if isinstance(part, str):
                out.append((content, i))
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                out.append((part, "text"))
    for call in message.get("tool_calls") or ():
        fn = call.get("function") if isinstance(call, dict) else None
        if isinstance(fn, dict) and isinstance(fn.get("arguments"), str):
            out.append((fn, "arguments"))
    legacy = message.get("function_call")
    if isinstance(legacy, dict) and isinstance(legacy.get("arguments"), str):
        out.append((legacy, "arguments"))


def _str_or_list(data: dict, key: str, out: list[Slot]) -> None:
    value = data.get(key)
    if isinstance(value, str):
        out.append((data, key))
    elif isinstance(value, list):
        out.extend((value, i) for i, item in enumerate(value) if isinstance(item, str))


def text_slots(data: dict) -> list[Slot]:
    """Slots of chat messages (all roles, text parts, tool-call and legacy function arguments),
    legacy ``functions`` descriptions, completion ``prompt`` and embedding ``input``."""
    out: list[Slot] = []
    for message in data.get("messages") or ():
        if isinstance(message, dict):
            _content_slots(message, out)
    for fn in data.get("functions") or ():
        if isinstance(fn, dict) and isinstance(fn.get("description"), str):
            out.append((fn, "description"))
    _str_or_list(data, "prompt", out)
    _str_or_list(data, "input", out)
    return out
