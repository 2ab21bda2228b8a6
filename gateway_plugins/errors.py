"""OpenAI-style errors raised from hooks; LiteLLM's proxy turns them into the response body."""

from __future__ import annotations

from litellm.proxy._types import ProxyException


def openai_error(
    status: int,
    message: str,
    *,
    code: str,
    type_: str = "invalid_request_error",
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> ProxyException:
    """Build the exception; ``message`` must never carry a key, a prompt or a PII value."""
    return ProxyException(message=message, type=type_, param=param, code=status, headers=headers, openai_code=code)
