"""Request field paths of a request type: the official SDKs' TypedDicts or kubegate's pydantic body models.

One notation for both, so the inventory test can compare them: fields joined by ``.``, list items as ``[]``,
and an object whose ``type`` (else ``role``) is a single literal as ``{type=value}``:
``messages[].{role=assistant}.tool_calls[].{type=function}.function.arguments``. Free-form objects
(``dict[str, Any]``: JSON schemas, tool arguments) are leaves. Runs with only the standard library and
pydantic importable, so the real-clients environment can run it too (``python -m tests.contract.field_paths``).
"""

from __future__ import annotations

import collections.abc as cabc
import json
import sys
import types
import typing
from typing import Any, Literal, get_args, get_origin

_WRAPPERS = {typing.Required, typing.NotRequired, typing.Annotated}
try:  # typing_extensions markers (ReadOnly, its own Required) wrap SDK fields too
    import typing_extensions as _te

    _WRAPPERS |= {_te.Required, _te.NotRequired, _te.Annotated, getattr(_te, "ReadOnly", typing.Annotated)}
except ImportError:  # pragma: no cover
    pass
_LISTS = {list, tuple, set, frozenset, cabc.Iterable, cabc.Sequence, cabc.Collection}
MAX_DEPTH = 14


def _strip(tp: Any) -> Any:
    while get_origin(tp) in _WRAPPERS or type(tp).__name__ == "_AnnotatedAlias":
        tp = get_args(tp)[0]
    return tp


def _members(tp: Any) -> tuple[Any, ...]:
    tp = _strip(tp)
    if get_origin(tp) in (typing.Union, types.UnionType):
        out: tuple[Any, ...] = ()
        for arg in get_args(tp):
            out += _members(arg)
        return out
    return (tp,)


def _is_model(tp: Any) -> bool:
    try:
        from pydantic import BaseModel
    except ImportError:  # pragma: no cover - pydantic is everywhere this runs
        return False
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _fields(tp: Any) -> dict[str, Any]:
    if _is_model(tp):
        return {f.alias or name: f.annotation for name, f in tp.model_fields.items()}
    return typing.get_type_hints(tp, include_extras=True)  # TypedDict


def _is_typeddict(tp: Any) -> bool:
    try:
        import typing_extensions
    except ImportError:  # pragma: no cover
        return typing.is_typeddict(tp)
    return typing_extensions.is_typeddict(tp)


def _is_object(tp: Any) -> bool:
    return _is_typeddict(tp) or _is_model(tp)


def _tag(tp: Any) -> str | None:
    hints = _fields(tp)
    for key in ("type", "role"):
        if key in hints:
            literals = [m for m in _members(hints[key]) if get_origin(m) is Literal]
            values = [v for lit in literals for v in get_args(lit)]
            if len(values) == 1:
                return f"{{{key}={values[0]}}}"
    return None


def _join(path: str, seg: str) -> str:
    if seg.startswith("["):
        return path + seg
    return f"{path}.{seg}" if path else seg


def _walk(tp: Any, path: str, out: set[str], depth: int, stack: tuple[Any, ...]) -> None:
    if depth > MAX_DEPTH:
        return
    for member in _members(tp):
        origin = get_origin(member)
        if origin in _LISTS or member in _LISTS:
            args = get_args(member)
            if args:
                _walk(args[0], _join(path, "[]"), out, depth + 1, stack)
            out.add(path)
        elif _is_object(member):
            tag = _tag(member)
            here = _join(path, tag) if tag else path
            if here:
                out.add(here)
            if (member, here) in stack:
                continue
            for name, hint in _fields(member).items():
                _walk(hint, _join(here, name), out, depth + 1, (*stack, (member, here)))
        elif path:
            out.add(path)
            if origin is dict or member is dict:
                out.add(path + FREE_FORM)


# Marks a free-form object (``dict[str, Any]``): everything below it is part of it.
FREE_FORM = ".*"


def field_paths(tp: Any) -> set[str]:
    out: set[str] = set()
    _walk(tp, "", out, 0, ())
    out.discard("")
    return out


def sdk_request_types() -> dict[str, Any]:
    """The official SDKs' request parameter types of each endpoint kubegate serves."""
    from anthropic.types import message_count_tokens_params, message_create_params
    from anthropic.types.beta import message_count_tokens_params as beta_count
    from anthropic.types.beta import message_create_params as beta_create
    from openai.types import completion_create_params, embedding_create_params
    from openai.types.chat import completion_create_params as chat
    from openai.types.responses import response_create_params

    return {
        "chat_completions": (chat.CompletionCreateParamsBase,),
        "completions": (completion_create_params.CompletionCreateParamsBase,),
        "embeddings": (embedding_create_params.EmbeddingCreateParams,),
        "responses": (response_create_params.ResponseCreateParamsBase,),
        "anthropic_messages": (message_create_params.MessageCreateParamsBase, beta_create.MessageCreateParamsBase),
        "anthropic_count_tokens": (
            message_count_tokens_params.MessageCountTokensParams,
            beta_count.MessageCountTokensParams,
        ),
    }


def sdk_paths() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for endpoint, request_types in sdk_request_types().items():
        paths: set[str] = set()
        for tp in request_types:
            paths |= field_paths(tp)
        out[endpoint] = sorted(paths)
    return out


if __name__ == "__main__":
    json.dump(sdk_paths(), sys.stdout, indent=1)
