"""Error bodies in each API's own shape, so each official SDK raises its typed exception.

OpenAI-style (chat, completions, embeddings, Responses): ``{"error": {"message", "type", "param", "code"}}``.
Anthropic-style (``/v1/messages``): ``{"type": "error", "error": {"type", "message"}}``; the kubegate code
rides along as ``error.code`` (Anthropic's SDK keeps unknown fields in ``body``). LiteLLM answers its own
errors on ``/v1/messages`` in Anthropic's shape but without our code; the front door rewrites them with
:func:`as_anthropic` so refusals decided in hooks and at the door look the same.
"""

from __future__ import annotations

from typing import Any

import orjson

OPENAI_TYPES = {401: "authentication_error", 403: "permission_error", 404: "not_found_error", 429: "rate_limit_error"}
ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}


def anthropic_type(status: int) -> str:
    return ANTHROPIC_TYPES.get(status) or ("api_error" if status >= 500 else "invalid_request_error")


def error_body(fmt: str, status: int, code: str | None, message: str, param: str | None = None) -> dict:
    if fmt == "anthropic":
        error: dict[str, Any] = {"type": anthropic_type(status), "message": message}
        if code:
            error["code"] = code
        if param:
            error["param"] = param  # not in Anthropic's shape, kept by its SDK in ``body``: names the field
        return {"type": "error", "error": error}
    return {
        "error": {
            "message": message,
            "type": OPENAI_TYPES.get(status, "invalid_request_error"),
            "param": param,
            "code": code,
        }
    }


def _code(value: Any) -> str | None:
    # LiteLLM writes the HTTP status into ``code``: that is not an error code a client can branch on.
    return value if isinstance(value, str) and value and not value.isdigit() else None


def as_anthropic(status: int, raw: bytes, fallback_code: str | None, replaced_message: str | None = None) -> bytes:
    """Rewrite an error body LiteLLM produced (OpenAI- or Anthropic-shaped) into Anthropic's shape; an error kubegate
    replaced (``replaced_message``, with its code) is told as kubegate says it, never in LiteLLM's words."""
    if replaced_message is not None:
        return orjson.dumps(error_body("anthropic", status, fallback_code, replaced_message))
    message, code = "the request failed", None
    try:
        parsed = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        parsed = None
    error = parsed.get("error") if isinstance(parsed, dict) else None
    if isinstance(error, dict):
        if isinstance(error.get("message"), str) and error["message"]:
            message = error["message"]
        extra = error.get("provider_specific_fields")
        code = _code(error.get("code")) or _code(extra.get("kubegate_code") if isinstance(extra, dict) else None)
    return orjson.dumps(error_body("anthropic", status, code or fallback_code, message))
