"""Every request field the official SDKs can send, per endpoint, from their request TypedDicts: prints sorted JSON
``{endpoint: [path, ...]}``. Run with the clients' venv: ``.venv-clients/bin/python tests/clients/sdk_fields.py``.

Paths: fields joined by ``.``; list or iterable items as ``[]``; a union member that is a TypedDict whose ``type``
or ``role`` key is a Literal as ``{type=value}`` / ``{role=value}`` (``tools[].{type=web_search}``,
``messages[].{role=user}.content[].{type=image_url}.image_url.detail``). Every field is listed (not only leaves);
free-form values (``dict[str, object]``) are leaves. Recursion stops at a cycle and at depth 12.
"""

from __future__ import annotations

import collections.abc
import json
import types
import typing
from importlib import import_module
from typing import Any

import typing_extensions as te

ENDPOINTS = {
    "chat_completions": ["openai.types.chat.completion_create_params:CompletionCreateParamsBase"],
    "completions": ["openai.types.completion_create_params:CompletionCreateParamsBase"],
    "embeddings": ["openai.types.embedding_create_params:EmbeddingCreateParams"],
    "responses": ["openai.types.responses.response_create_params:ResponseCreateParamsBase"],
    "anthropic_messages": [
        "anthropic.types.message_create_params:MessageCreateParamsBase",
        "anthropic.types.beta.message_create_params:MessageCreateParamsBase",
    ],
    "count_tokens": ["anthropic.types.message_count_tokens_params:MessageCountTokensParams"],
}
MAX_DEPTH = 12
WRAPPERS = {typing.Annotated, te.Annotated, typing.Required, te.Required, typing.NotRequired, te.NotRequired}
WRAPPERS |= {te.ReadOnly}
UNIONS = {typing.Union, types.UnionType}
LISTS = {list, tuple, collections.abc.Iterable, collections.abc.Sequence}


def _unwrap(tp: Any) -> Any:
    while True:
        if isinstance(tp, te.TypeAliasType):
            tp = tp.__value__
        elif te.get_origin(tp) in WRAPPERS:
            tp = te.get_args(tp)[0]
        else:
            return tp


def _hints(td: type) -> dict[str, Any]:
    try:
        return te.get_type_hints(td, include_extras=True)
    except NameError:  # a name only imported for type checkers: its fields are leaves
        return dict.fromkeys(td.__annotations__, object)


def _tags(td: type) -> list[str]:
    """``{type=value}``, one per value, for a TypedDict whose ``type`` (or ``role``) key is a Literal."""
    hints = _hints(td)
    for key in ("type", "role"):
        tp = _unwrap(hints.get(key))
        if te.get_origin(tp) is typing.Literal:
            return [f"{{{key}={value}}}" for value in te.get_args(tp)]
    return []


def walk(tp: Any, path: str, stack: tuple[type, ...] = ()) -> set[str]:
    """The field paths under ``path`` of a value of type ``tp``."""
    tp = _unwrap(tp)
    origin = te.get_origin(tp)
    if origin in UNIONS:
        members = [_unwrap(m) for m in te.get_args(tp) if m is not type(None)]
        out: set[str] = set()
        for member in members:
            # Optional[X] is X; a member of a real union is told apart by its discriminator.
            tags = _tags(member) if te.is_typeddict(member) and len(members) > 1 else []
            for tag in tags:
                out |= {f"{path}.{tag}", *walk(member, f"{path}.{tag}", stack)}
            if not tags:
                out |= walk(member, path, stack)
        return out
    if origin in LISTS and te.get_args(tp):
        return walk(te.get_args(tp)[0], f"{path}[]", stack)
    if not te.is_typeddict(tp) or tp in stack or len(stack) >= MAX_DEPTH:
        return set()  # a leaf: scalars, Literals, free-form dicts; or a cycle / too deep
    out = set()
    for name, hint in _hints(tp).items():
        field = f"{path}.{name}" if path else name
        out |= {field, *walk(hint, field, (*stack, tp))}
    return out


def endpoint_fields() -> dict[str, list[str]]:
    out = {}
    for endpoint, targets in ENDPOINTS.items():
        paths: set[str] = set()
        for target in targets:
            module, name = target.split(":")
            paths |= walk(getattr(import_module(module), name), "")
        out[endpoint] = sorted(paths)
    return out


if __name__ == "__main__":
    print(json.dumps(endpoint_fields(), indent=1, sort_keys=True))
