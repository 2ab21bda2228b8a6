"""What every API of the echo shares: token estimates, SSE frames, signing, and the tool-call rule."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import re
import uuid
from collections.abc import Collection
from typing import Any

# Signs Anthropic thinking blocks and seals Responses reasoning items. Per process unless KUBEGATE_ECHO_SECRET
# is set (then echo processes that share it accept each other's signatures, e.g. behind a fallback).
SECRET = os.environ.get("KUBEGATE_ECHO_SECRET", "").encode() or os.urandom(32)
TOOL_MARKER = re.compile(r"call a tool|use the tool", re.IGNORECASE)
# String formats a client's validator checks (pydantic: datetime, date, time, UUID): a valid value, not the text.
_FORMATS = {
    "date-time": "1970-01-01T00:00:00Z",
    "date": "1970-01-01",
    "time": "00:00:00",
    "uuid": str(uuid.UUID(int=0)),
}


def hex_id(n: int = 24) -> str:
    return uuid.uuid4().hex[:n]


def approx_tokens(text: str) -> int:
    return max(1, len(text) // 4) if text else 0


def text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def cap(text: str, limit: Any) -> str:
    """At most what ``limit`` output tokens allow (4 characters a token), as a real model."""
    return text[: limit * 4] if isinstance(limit, int) and limit > 0 else text


def cap_with_thought(thought: str, text: str, limit: Any, budget: Any = None) -> tuple[str, str]:
    """Reasoning counts against the output limit too: the thought gets at most half of it (and at most
    ``budget`` tokens), the answer what is left."""
    if isinstance(budget, int) and budget > 0:
        thought = thought[: budget * 4]
    if not (isinstance(limit, int) and limit > 0):
        return thought, text
    thought = thought[: limit * 2] if thought else ""
    return thought, text[: limit * 4 - len(thought)]


def thought_for(text: str) -> str:
    """The echo's "reasoning": it carries the text, so a thinking block round-trips through PII masking."""
    return f"The user wrote: {text}\nI will answer with exactly that."


def pieces(text: str) -> list[str]:
    # Small pieces, so placeholders end up split across events.
    return [text[i : i + 7] for i in range(0, len(text), 7)] or [""]


def sse_event(kind: str, data: dict) -> bytes:
    return f"event: {kind}\ndata: {json.dumps(data)}\n\n".encode()


# -- signing -----------------------------------------------------------------------------------------------


def sign(text: str) -> str:
    """base64 HMAC-SHA256 of ``text`` (UTF-8) under the process secret."""
    return base64.b64encode(hmac.new(SECRET, text.encode(), hashlib.sha256).digest()).decode()


def signature_ok(text: Any, signature: Any) -> bool:
    if not isinstance(text, str) or not isinstance(signature, str):
        return False
    return hmac.compare_digest(sign(text), signature)


def seal(payload: dict) -> str:
    """base64 of the payload's JSON followed by its HMAC: opaque to a client, verifiable by :func:`unseal`."""
    data = json.dumps(payload, separators=(",", ":")).encode()
    return base64.b64encode(data + hmac.new(SECRET, data, hashlib.sha256).digest()).decode()


def unseal(blob: Any) -> dict | None:
    """The sealed payload, or None when ``blob`` is not one this process sealed (altered, truncated, foreign)."""
    try:
        raw = base64.b64decode(blob, validate=True) if isinstance(blob, str) else b""
    except (binascii.Error, ValueError):
        return None
    data, mac = raw[:-32], raw[-32:]
    if len(raw) <= 32 or not hmac.compare_digest(mac, hmac.new(SECRET, data, hashlib.sha256).digest()):
        return None
    return json.loads(data)


# -- tool calls --------------------------------------------------------------------------------------------


def tool_name(tool: dict) -> str | None:
    return tool.get("name") or (tool.get("function") or {}).get("name")


def tool_schema(tool: dict) -> dict:
    schema = tool.get("parameters") or tool.get("input_schema") or (tool.get("function") or {}).get("parameters")
    return schema if isinstance(schema, dict) else {}


def _callable(tool: Any) -> bool:
    """A function the model can call with JSON arguments: OpenAI ``type: function`` (chat nests it under
    ``function``), Anthropic a tool with an ``input_schema``. Hosted/server tools and free-form tools are not."""
    if not isinstance(tool, dict) or not tool_name(tool):
        return False
    return tool.get("type") == "function" or "input_schema" in tool


def pick_tool(body: dict, last_user_text: str | None, called: Collection[str] = ()) -> dict | None:
    """The tool the echo calls, or None for a text answer. ``called``: names of the tools the conversation
    already called.

    * ``tool_choice`` names a function (OpenAI ``{"type": "function", "name"}`` or chat's
      ``{"function": {"name"}}``, Anthropic ``{"type": "tool", "name"}``): that one;
    * ``required`` / ``any`` (string or ``{"type": ...}``): the first callable tool not called yet, else the last
      one (so a forced loop, e.g. pydantic-ai's function tools then its ``final_result`` tool, ends);
    * ``auto`` or absent: the first callable tool only when the last message is the user's (not a tool result)
      and its text contains ``call a tool`` or ``use the tool`` (any case); otherwise text;
    * ``none``: text.
    """
    tools = [t for t in body.get("tools") or () if _callable(t)]
    choice = body.get("tool_choice")
    if not tools:
        return None
    if isinstance(choice, dict):
        name = choice.get("name") or (choice.get("function") or {}).get("name")
        if isinstance(name, str):
            return next((t for t in tools if tool_name(t) == name), {"name": name})
        choice = choice.get("type")
    if choice in ("required", "any"):
        return next((t for t in tools if tool_name(t) not in called), tools[-1])
    if choice in (None, "auto") and last_user_text and TOOL_MARKER.search(last_user_text):
        return tools[0]
    return None


def tool_args(tool: dict, text: str) -> dict:
    """``{"echo": text}``; when the tool's schema lists ``required`` properties, exactly those, each filled
    by its type (strings the text, numbers 0, booleans false, arrays [], objects their own required ones)."""
    schema = tool_schema(tool)
    required = schema.get("required")
    if not isinstance(required, list) or not required:
        return {"echo": text}
    defs = {**schema.get("definitions", {}), **schema.get("$defs", {})}
    return _fill(schema, text, defs, 0)


def structured(fmt: Any, text: str) -> str | None:
    """The JSON answer a structured-output request asks for, or None: ``json_schema`` (chat's
    ``{"json_schema": {"schema"}}``, Responses' and Anthropic's ``{"schema"}``) is filled as tool arguments are,
    ``json_object`` is ``{"echo": text}``."""
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "json_object":
        return json.dumps({"echo": text})
    if kind != "json_schema":
        return None
    schema = fmt.get("schema") or (fmt.get("json_schema") or {}).get("schema") or {}
    if schema.get("type", "object") == "object":
        return json.dumps(tool_args({"parameters": schema}, text))
    defs = {**schema.get("definitions", {}), **schema.get("$defs", {})}
    return json.dumps(_fill(schema, text, defs, 0))


def _fill(schema: Any, text: str, defs: dict, depth: int) -> Any:
    if not isinstance(schema, dict) or depth > 8:
        return text
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.rsplit("/", 1)[-1] in defs:
        return _fill(defs[ref.rsplit("/", 1)[-1]], text, defs, depth + 1)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        options = [o for o in schema.get(key) or () if isinstance(o, dict) and o.get("type") != "null"]
        if options:
            return _fill(options[0], text, defs, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or (kind is None and "properties" in schema):
        props = schema.get("properties") or {}
        return {name: _fill(props.get(name, {}), text, defs, depth + 1) for name in schema.get("required") or ()}
    simple = {"integer": 0, "number": 0, "boolean": False, "array": [], "null": None}
    if kind in simple:
        return simple[kind]
    if schema.get("format") in _FORMATS:
        return _FORMATS[schema["format"]]
    limit = schema.get("maxLength")
    return text[:limit] if isinstance(limit, int) else text
