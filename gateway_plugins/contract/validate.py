"""Check a tenant's request against the contract: sizes, then the strict body model, then tenant rules.

Pure functions over already-parsed JSON; the middleware calls them before anything costly runs. Every
refusal is a :class:`ContractError` carrying an OpenAI-style status, code and the offending field, and a
message that never quotes the request (it could hold the very PII being guarded).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from gateway_plugins.contract.bodies import REFUSED_BECAUSE, UNINSPECTABLE_PARTS
from gateway_plugins.contract.routes import Endpoint
from gateway_plugins.contract.text import SizeError, check_sizes

_TAGS = frozenset(
    {"system", "developer", "user", "assistant", "tool", "function", "text", "image_url", "input_audio", "file"}
    | {"json_object", "json_schema"}
    # Responses input items and parts, Anthropic content blocks and tool choices
    | {"message", "function_call", "function_call_output", "input_text", "output_text"}
    | {"tool_use", "tool_result", "auto", "tool"}
)
# Output-token fields, per endpoint format: the largest the upstream may generate per choice.
MAX_TOKEN_FIELDS = ("max_completion_tokens", "max_tokens", "max_output_tokens")


class ContractError(Exception):
    def __init__(self, status: int, code: str, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.param = status, code, message, param


@dataclass(frozen=True, slots=True)
class ContractRequest:
    """The facts later stages need about an accepted request (the body itself is forwarded unchanged)."""

    endpoint: Endpoint
    body_bytes: int
    choices: int  # n x best_of: how many outputs the upstream may generate and bill
    max_tokens: int | None  # per choice, as asked (None: the model's maximum applies)


def _param(loc: tuple[Any, ...]) -> str:
    out = ""
    prev: Any = None
    for item in loc:
        if isinstance(item, int):
            out += f"[{item}]"
        elif isinstance(item, str):
            skip = (isinstance(prev, int) or prev in ("response_format", "tool_choice", "format")) and item in _TAGS
            if not skip and item.isidentifier():
                out += f".{item}" if out else item
        prev = item
    return out or "body"


def describe(exc: ValidationError) -> ContractError:
    errors = exc.errors(include_url=False, include_input=False, include_context=False)
    # Union members each report an error; the deepest location is the most specific one.
    err = max(errors, key=lambda e: len(e["loc"]))
    param = _param(err["loc"])
    if err["type"] == "extra_forbidden":
        return ContractError(
            400, "unsupported_field", f"{param}: this field is not accepted by this gateway (see its docs)", param
        )
    if err["type"] in ("missing",):
        return ContractError(400, "missing_field", f"{param}: required", param)
    return ContractError(400, "invalid_field", f"{param}: {err['msg']}", param)


def check(endpoint: Endpoint, body: Any, body_bytes: int, limits: Any) -> ContractRequest:
    """Validate ``body`` (parsed JSON) for ``endpoint``; raise :class:`ContractError` naming the field."""
    if not isinstance(body, dict):
        raise ContractError(400, "invalid_body", "the request body must be a JSON object", "body")
    try:
        check_sizes(body, limits)
    except SizeError as exc:
        raise ContractError(exc.status, exc.code, str(exc), exc.param) from None
    assert endpoint.body is not None
    _refused_by_name(endpoint, body)
    try:
        endpoint.body.model_validate(body)
    except ValidationError as exc:
        raise describe(exc) from None
    n = body.get("n") or 1
    best_of = body.get("best_of") or 1
    if max(n, best_of) > limits.max_n:
        param = "n" if n >= best_of else "best_of"
        raise ContractError(400, "invalid_field", f"{param}: at most {limits.max_n} on this gateway", param)
    max_tokens = next((body[f] for f in MAX_TOKEN_FIELDS if body.get(f)), None)
    return ContractRequest(endpoint, body_bytes, max(n, best_of), max_tokens)


def _refused_by_name(endpoint: Endpoint, body: dict) -> None:
    """Stateful and hosted features get a refusal that says why, not just "not accepted"."""
    for field, reason in REFUSED_BECAUSE.items():
        if field not in body:
            continue
        # A field of this endpoint's contract (``store`` on /v1/responses) is refused only with a value
        # the contract does not accept.
        if field not in endpoint.fields or (field == "store" and body[field] is True):
            raise ContractError(400, "unsupported_field", f"{field}: {reason}", field)
    tools = body.get("tools")
    if isinstance(tools, list):
        for i, tool in enumerate(tools):
            kind = tool.get("type") if isinstance(tool, dict) else None
            if isinstance(kind, str) and kind not in ("function", "custom"):
                param = f"tools[{i}].type"
                raise ContractError(
                    400, "unsupported_field", f"{param}: only function tools are accepted by this gateway", param
                )


def uninspectable_part(body: dict) -> str | None:
    """The field of the first content part PII analysis cannot read (image, audio, file), if any."""
    for i, message in enumerate(body.get("messages") or ()):
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):
            for j, part in enumerate(content):
                if isinstance(part, dict) and part.get("type") in UNINSPECTABLE_PARTS:
                    return f"messages[{i}].content[{j}]"
    return None


def check_for_tenant(body: dict, tenant: Any, models: Any) -> None:
    """Rules that depend on the tenant: uninspectable content, and max_tokens within the model's maximum."""
    pii = tenant.pii
    if pii is not None and not pii.allow_uninspectable_content:
        where = uninspectable_part(body)
        if where is not None:
            raise ContractError(
                400,
                "content_not_inspectable",
                f"{where}: this key's PII policy cannot inspect this content type, so it is not accepted",
                where,
            )
    meta = models.get(body.get("model"))
    if meta is not None:
        for field in MAX_TOKEN_FIELDS:
            value = body.get(field)
            if isinstance(value, int) and value > meta.max_output_tokens:
                raise ContractError(
                    400,
                    "invalid_field",
                    f"{field}: at most {meta.max_output_tokens} for model {body.get('model')}",
                    field,
                )
