"""Every free-text value of a contract request, found by walking it: PII analysis is deny-by-default.

A string is text unless the contract makes it structural: a value the body models restrict to a closed
set (``role``, ``type``, ``detail``, ``encoding_format`` ...) or the ``model`` (checked against the tenant's
allow-list). Everything else (message text, tool and JSON-schema descriptions, enum values and property
names inside tool schemas, ``user``, ``stop``, names, ids, tool-call arguments) is analysed. A field
added to the contract later is text until someone lists it here, never silently skipped.
"""

from __future__ import annotations

from typing import Any

# Keys whose string values the body models restrict to closed enumerations (outside free-form schemas).
STRUCTURAL_KEYS = frozenset(
    {"role", "type", "detail", "format", "encoding_format", "reasoning_effort", "tool_choice", "function_call"}
    # Responses API: item status, text verbosity, reasoning effort and summary mode
    | {"status", "verbosity", "effort", "summary"}
    # closed enumerations added with the official SDKs' everyday fields (docs/contract.md)
    | {"ttl", "phase", "display", "syntax", "service_tier", "prompt_cache_retention", "truncation"}
    # Opaque upstream blobs sent back as they came (thinking signatures, encrypted reasoning): the upstream
    # checks them byte for byte, and they carry no readable text (the body model bounds them to base64).
    | {"signature", "encrypted_content"}
)
TOP_LEVEL_STRUCTURAL = frozenset({"model", "include"})
# Free-form JSON (tool parameters, response JSON schema, Anthropic tool input schemas): every string and
# every key in them is text.
FREE_FORM_KEYS = frozenset({"parameters", "schema", "input_schema"})
# Free-form by the type of the object holding them: an Anthropic ``tool_use`` block's ``input`` (the
# arguments of a call, as JSON) but not the Responses API's top-level ``input``.
FREE_FORM_BY_TYPE = frozenset({("tool_use", "input")})
# Opaque by the type of the object holding them: a ``redacted_thinking`` block's encrypted ``data``.
OPAQUE_BY_TYPE = frozenset({("redacted_thinking", "data")})

Slot = tuple[Any, Any]  # (dict or list, key or index) whose value is a str


class TextSlots:
    """Slots of text values to analyse and rewrite, plus the keys of free-form objects (analysed, not
    rewritten: a masked property name would no longer match the tool's arguments)."""

    __slots__ = ("keys", "slots")

    def __init__(self) -> None:
        self.slots: list[Slot] = []
        self.keys: list[str] = []


def text_slots(data: dict, fields: frozenset[str] | None = None) -> TextSlots:
    """Text slots of ``data``'s contract fields (``fields``: the endpoint's top-level fields; LiteLLM adds its
    own keys to the dict the hooks see, and those are not the tenant's)."""
    out = TextSlots()
    for key, value in data.items():
        if (fields is not None and key not in fields) or key in TOP_LEVEL_STRUCTURAL:
            continue
        _walk(data, key, value, key in FREE_FORM_KEYS, out)
    return out


def input_tokens(body: dict, fields: frozenset[str] | None = None) -> int:
    """Input tokens of a request body, by LiteLLM's tokenizer for its model over every text value and tool schema
    (an estimate, as Anthropic's own count is). CPU-bound: call it off the event loop."""
    from litellm import token_counter

    slots = text_slots(body, fields)
    text = "\n".join(c[k] for c, k in slots.slots) + "\n".join(slots.keys)
    return int(token_counter(model=str(body.get("model") or ""), text=text)) if text else 0


def _walk(container: Any, key: Any, value: Any, free: bool, out: TextSlots) -> None:
    if isinstance(value, str):
        if free or key not in STRUCTURAL_KEYS:
            out.slots.append((container, key))
    elif isinstance(value, dict):
        kind = None if free else value.get("type")
        for k, v in value.items():
            if free:
                out.keys.append(k)
            elif (kind, k) in OPAQUE_BY_TYPE:
                continue
            _walk(value, k, v, free or k in FREE_FORM_KEYS or (kind, k) in FREE_FORM_BY_TYPE, out)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _walk(value, i, item, free, out)


class SizeError(ValueError):
    def __init__(self, status: int, code: str, param: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.param = status, code, param


def check_sizes(body: dict, limits: Any) -> None:
    """Bound list lengths, string lengths and nesting before the (costlier) strict validation runs.

    The common case (nothing too big) walks the body once without building any path; only a body that
    breaks a bound is walked again to name where.
    """
    if not _within(body, limits):
        _locate(body, limits)


def _within(body: dict, limits: Any) -> bool:
    max_chars, max_depth = limits.max_string_chars, limits.max_json_depth
    bound = max(limits.max_messages, limits.max_tools, limits.max_parts)
    floor = min(limits.max_messages, limits.max_tools, limits.max_parts)
    stack: list[tuple[Any, int]] = [(body, 0)]
    while stack:
        value, depth = stack.pop()
        if depth > max_depth:
            return False
        if isinstance(value, str):
            if len(value) > max_chars:
                return False
        elif isinstance(value, dict):
            for k, v in value.items():
                if len(k) > max_chars:
                    return False
                if isinstance(v, (str, dict, list)):
                    stack.append((v, depth + 1))
        elif isinstance(value, list):
            if len(value) > floor:
                # Longer than the smallest bound: which one applies depends on the field; let the
                # slow pass decide (it is exact), unless it is over every bound.
                if len(value) > bound:
                    return False
                return _locate_or_true(body, limits)
            for item in value:
                if isinstance(item, (str, dict, list)):
                    stack.append((item, depth + 1))
    return True


def _locate_or_true(body: dict, limits: Any) -> bool:
    _locate(body, limits)
    return True


def _locate(body: dict, limits: Any) -> None:
    """The exact check, naming the offending field; raises :class:`SizeError`."""
    max_chars = limits.max_string_chars
    max_depth = limits.max_json_depth
    # Iterative walk: a deeply nested body must not hit Python's recursion limit before we refuse it.
    stack: list[tuple[Any, str, int]] = [(body, "", 0)]
    while stack:
        value, path, depth = stack.pop()
        if depth > max_depth:
            raise SizeError(400, "request_too_deep", path, f"{path}: nested deeper than {max_depth} levels")
        if isinstance(value, str):
            if len(value) > max_chars:
                raise SizeError(413, "string_too_long", path, f"{path}: longer than {max_chars} characters")
        elif isinstance(value, dict):
            for k, v in value.items():
                if isinstance(v, (str, dict, list)):
                    stack.append((v, f"{path}.{k}" if path else str(k), depth + 1))
                if isinstance(k, str) and len(k) > max_chars:
                    raise SizeError(413, "string_too_long", path, f"{path}: a key is longer than {max_chars}")
        elif isinstance(value, list):
            _check_list(value, path, limits)
            for i, item in enumerate(value):
                if isinstance(item, (str, dict, list)):
                    stack.append((item, f"{path}[{i}]", depth + 1))


def _check_list(value: list, path: str, limits: Any) -> None:
    leaf = path.rsplit(".", 1)[-1].split("[", 1)[0]
    if leaf in ("messages", "prompt", "input"):
        bound, what = limits.max_messages, "items"
    elif leaf in ("tools", "functions"):
        bound, what = limits.max_tools, "tools"
    elif leaf == "content":
        bound, what = limits.max_parts, "content parts"
    else:
        bound, what = limits.max_messages, "items"
    if len(value) > bound:
        raise SizeError(400, "too_many_items", path, f"{path}: more than {bound} {what}")
