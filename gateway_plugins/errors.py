"""OpenAI-style errors raised from hooks; LiteLLM's proxy turns them into the response body.

LiteLLM 1.103.7 writes the HTTP status into the body's ``code`` field, and its request
handler re-wraps hook exceptions into a fresh ``ProxyException`` (keeping ours as
``__context__``). Clients branch on OpenAI codes such as ``budget_exceeded``, so
``ProxyException.to_dict`` is extended once, at import, to put the kubegate code of the
originating error back into the body.
"""

from __future__ import annotations

from litellm.proxy._types import ProxyException


class KubegateError(ProxyException):
    """A refusal decided by kubegate; ``kubegate_code`` is the OpenAI-style error code."""

    def __init__(self, status: int, message: str, *, code: str, type_: str, param: str | None, headers) -> None:
        super().__init__(message=message, type=type_, param=param, code=status, headers=headers, openai_code=code)
        self.status_code = status
        self.kubegate_code = code


def openai_error(
    status: int,
    message: str,
    *,
    code: str,
    type_: str = "invalid_request_error",
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> KubegateError:
    """Build the exception; ``message`` must never carry a key, a prompt or a PII value."""
    return KubegateError(status, message, code=code, type_=type_, param=param, headers=headers)


# Key of the code in an HTTPException detail returned by a failure hook: LiteLLM rebuilds the client's
# error from that detail (``provider_specific_fields``), not from the HTTPException itself.
DETAIL_CODE = "kubegate_code"


def replacement_error(status: int, message: str, *, code: str, headers: dict[str, str] | None = None):
    """An error for ``async_post_call_failure_hook`` to return in place of the upstream's (LiteLLM uses it)."""
    from fastapi import HTTPException

    return HTTPException(status_code=status, detail={"error": message, DETAIL_CODE: code}, headers=headers)


def kubegate_code(exc: BaseException | None) -> str | None:
    """The kubegate code of ``exc`` or of the error it was re-raised from, if any."""
    for _ in range(8):
        if exc is None:
            return None
        code = getattr(exc, "kubegate_code", None) or (getattr(exc, "provider_specific_fields", None) or {}).get(
            DETAIL_CODE
        )
        if code:
            return code
        exc = exc.__cause__ or exc.__context__
    return None


def _install_code_in_body() -> None:
    original = ProxyException.to_dict
    if getattr(original, "_kubegate", False):
        return

    def to_dict(self: ProxyException) -> dict:
        body = original(self)
        code = kubegate_code(self)
        if code:
            body["code"] = code
            if DETAIL_CODE in (body.get("provider_specific_fields") or {}):
                del body["provider_specific_fields"]  # only our replacement's detail: message and code say it
        return body

    to_dict._kubegate = True  # type: ignore[attr-defined]
    ProxyException.to_dict = to_dict  # type: ignore[method-assign]


_install_code_in_body()
