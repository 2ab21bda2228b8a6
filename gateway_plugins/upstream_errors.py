"""What a tenant is told when the upstream fails: kubegate's code and the provider's own words, no internals.

LiteLLM's exception text names its machinery and the platform's layout (``litellm.InternalServerError``,
``Received Model Group=...``, ``cooldown_list=['gpt-4o/eu']``, api bases, deployment ids). A tenant gets the HTTP
status the provider gave, one of kubegate's documented codes, and for a request the provider refused (4xx) the
provider's message, so a client can fix its request; nothing else.
"""

from __future__ import annotations

import json
import re
from typing import Any

from gateway_plugins.errors import replacement_error

CODES = {429: "upstream_rate_limited"}
REJECTED = "upstream_rejected"
FAILED = "upstream_error"
# ``litellm.BadRequestError: AnthropicException - ...``, ``InternalServerError: OpenAIException - ...``
_PREFIX = re.compile(r"^(?:(?:litellm\.)?\w+(?:Error|Exception)\s*[:\-]\s*)+")
# Where LiteLLM starts appending its own context to a provider's message.
_LITELLM_TAIL = re.compile(
    r"(?:Received Model Group|Available Model Group|model_group|cooldown_list|LiteLLM Retried|No fallback model"
    r"|Traceback|\. ?Enable 'litellm)",
)
_URL = re.compile(r"https?://\S+")
MAX_MESSAGE = 400
# LiteLLM's DEFAULT_COOLDOWN_TIME_SECONDS (the rendered config sets no other).
DEFAULT_RETRY_AFTER_SECONDS = 5


def provider_message(exc: BaseException) -> str:
    """The provider's own message inside LiteLLM's exception text (or a JSON error body), without LiteLLM's
    prefix and tail, URLs or anything past a line break."""
    text = str(getattr(exc, "message", None) or exc)
    text = _PREFIX.sub("", text.strip())
    cut = _LITELLM_TAIL.search(text)
    if cut:
        text = text[: cut.start()]
    text = text.strip().rstrip(".,;: ")
    start = text.find("{")
    if start >= 0:
        try:
            parsed: Any = json.loads(text[start:])
        except ValueError:
            parsed = None
        error = parsed.get("error") if isinstance(parsed, dict) else None
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            text = error["message"]
        elif isinstance(error, str):
            text = error
    text = _URL.sub("<url>", text.splitlines()[0] if text else "")
    return text[:MAX_MESSAGE].strip()


def retry_after(exc: BaseException) -> dict[str, str]:
    """The Retry-After of an answer saying "retry later": the provider's, else LiteLLM's default cooldown (a
    deployment that just failed is skipped that long, so an earlier retry would meet the same failure)."""
    headers = getattr(exc, "headers", None) or getattr(getattr(exc, "response", None), "headers", None) or {}
    said = next((str(v) for k, v in dict(headers).items() if str(k).lower() == "retry-after"), "")
    return {"Retry-After": said if said.isdigit() else str(DEFAULT_RETRY_AFTER_SECONDS)}


def for_tenant(status: int, exc: BaseException) -> Any:
    """The error a tenant gets for an upstream failure with HTTP ``status``."""
    if status in CODES:
        return replacement_error(
            status,
            "the model's upstream is rate limited or cooling down; retry later",
            code=CODES[status],
            headers=retry_after(exc),
        )
    if 400 <= status < 500:
        said = provider_message(exc)
        message = (
            f"the model's upstream refused the request: {said}" if said else "the model's upstream refused the request"
        )
        return replacement_error(status, message, code=REJECTED)
    return replacement_error(
        status, "the model's upstream failed to answer; retry later", code=FAILED, headers=retry_after(exc)
    )
