"""Check a tenant's request against the contract: sizes, then the strict body model, then tenant rules.

Pure functions over already-parsed JSON; the middleware calls them before anything costly runs. Every
refusal is a :class:`ContractError` carrying an OpenAI-style status, code and the offending field, and a
message that never quotes the request (it could hold the very PII being guarded).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from gateway_plugins.contract import inventory
from gateway_plugins.contract.bodies import ANTHROPIC_HOSTED_PREFIXES, RESPONSES_HOSTED, UNINSPECTABLE_PARTS
from gateway_plugins.contract.normalize import normalize
from gateway_plugins.contract.routes import Endpoint
from gateway_plugins.contract.text import SizeError, check_sizes

_TAGS = frozenset(
    {"system", "developer", "user", "assistant", "tool", "function", "text", "image_url", "input_audio", "file"}
    | {"json_object", "json_schema", "refusal", "custom", "grammar"}
    # Responses input items and parts, Anthropic content blocks, tool choices and thinking
    | {"message", "function_call", "function_call_output", "input_text", "output_text", "reasoning"}
    | {"custom_tool_call", "custom_tool_call_output", "summary_text", "reasoning_text"}
    | {"tool_use", "tool_result", "auto", "tool", "thinking", "redacted_thinking", "enabled", "adaptive", "disabled"}
    | {"ephemeral"}
)
# Output-token fields, per endpoint format: the largest the upstream may generate per choice.
MAX_TOKEN_FIELDS = ("max_completion_tokens", "max_tokens", "max_output_tokens")
RESPONSES_BOUND = frozenset({"responses", "anthropic_messages"})
RESPONSES_MIN_OUTPUT_TOKENS = 16


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
    normalized: bool = False  # fields were dropped: the body to forward is the parsed one, re-serialized
    # Anthropic prompt caching: input written to the cache is billed above the input price (1.25x for 5 minutes,
    # 2x for an hour), so the reservation covers it at that rate.
    caches_prompt: bool = False
    # The end user the client named (``user``, Anthropic ``metadata.user_id``), as sent: read before masking and
    # normalization (which drop or rewrite it) for what must separate end users (the response cache's key).
    end_user: str | None = None


def _param(loc: tuple[Any, ...]) -> str:
    out = ""
    prev: Any = None
    for item in loc:
        if isinstance(item, int):
            out += f"[{item}]"
        elif isinstance(item, str):
            holders = ("response_format", "tool_choice", "format", "thinking", "cache_control")
            skip = (isinstance(prev, int) or prev in holders) and item in _TAGS
            if not skip and item.isidentifier():
                out += f".{item}" if out else item
        prev = item
    return out or "body"


API_NAMES = {
    "chat_completions": "chat completions",
    "completions": "completions",
    "embeddings": "embeddings",
    "responses": "Responses",
    "anthropic_messages": "Messages",
    "anthropic_count_tokens": "Messages count_tokens",
}
DOCS = "docs/contract.md"


def _kind_tag(value: dict) -> tuple[str, Any]:
    """An object's kind as the inventory's tag segment: its ``type`` if a string, else its ``role``."""
    kind = value.get("type")
    return ("type", kind) if isinstance(kind, str) and kind else ("role", value.get("role"))


def inventory_path(body: Any, loc: tuple[Any, ...]) -> str:
    """``loc`` in the inventory's notation: list items as ``[]``, each object's kind (``type``, else ``role``)
    as ``{type=...}``, so a refusal finds the rule that explains it."""
    out, value, tagged = "", body, False
    for item in loc:
        if isinstance(value, dict) and not tagged:
            key, tag = _kind_tag(value)
            if isinstance(tag, str) and out:
                out += f".{{{key}={tag}}}"
            tagged = True
            if item in _TAGS and (item == tag or item not in value):
                continue  # the union member's tag pydantic adds to the location
        if isinstance(item, int):
            out += "[]"
            value = value[item] if isinstance(value, list) and item < len(value) else None
        elif isinstance(item, str):
            if not item.isidentifier():
                continue  # a union member pydantic names in the location (``list[...]``, ``str``)
            out += f".{item}" if out else item
            value = value.get(item) if isinstance(value, dict) else None
        tagged = False
    if isinstance(value, dict) and out:
        key, tag = _kind_tag(value)
        if isinstance(tag, str):
            out += f".{{{key}={tag}}}"
    return out


def describe(exc: ValidationError, endpoint: Endpoint | None = None, body: Any = None) -> ContractError:
    errors = exc.errors(include_url=False, include_input=False, include_context=False)
    # Union members each report an error; the deepest location is the most specific one.
    err = max(errors, key=lambda e: len(e["loc"]))
    param = _param(err["loc"])
    rule = None
    if endpoint is not None and err["type"] != "missing":
        # The inventory explains a refused field (or value) and says what to send instead.
        rule = inventory.refusal(endpoint.name, inventory_path(body, err["loc"]))
    if rule is not None:
        fix = f"; {rule.fix}" if rule.fix else ""
        return ContractError(400, "unsupported_field", f"{param}: {rule.why}{fix} ({DOCS})", param)
    if err["type"] == "extra_forbidden":
        api = API_NAMES.get(endpoint.name, "") if endpoint is not None else ""
        return ContractError(
            400,
            "unsupported_field",
            f"{param}: not a field of the {api} API this gateway accepts; remove it ({DOCS} lists every field)",
            param,
        )
    if err["type"] in ("missing",):
        return ContractError(400, "missing_field", f"{param}: required", param)
    # pydantic names the model class it expected ("... or instance of StreamOptions"): not the API's words.
    message = re.sub(r" or instance of \w+", "", err["msg"])
    return ContractError(400, "invalid_field", f"{param}: {message}", param)


def check(endpoint: Endpoint, body: Any, body_bytes: int, limits: Any) -> ContractRequest:
    """Validate ``body`` (parsed JSON) for ``endpoint``; raise :class:`ContractError` naming the field."""
    if not isinstance(body, dict):
        raise ContractError(400, "invalid_body", "the request body must be a JSON object", "body")
    try:
        check_sizes(body, limits)
    except SizeError as exc:
        raise ContractError(exc.status, exc.code, str(exc), exc.param) from None
    assert endpoint.body is not None
    end_user = _end_user(body)
    normalized = normalize(endpoint.name, body)
    try:
        endpoint.body.model_validate(body)
    except ValidationError as exc:
        raise describe(exc, endpoint, body) from None
    n = body.get("n") or 1
    best_of = body.get("best_of") or 1
    if max(n, best_of) > limits.max_n:
        param = "n" if n >= best_of else "best_of"
        raise ContractError(400, "invalid_field", f"{param}: at most {limits.max_n} on this gateway", param)
    asked = [body[f] for f in MAX_TOKEN_FIELDS if isinstance(body.get(f), int)]
    # Every output limit the body sets may reach the upstream (chat forwards both max_tokens and
    # max_completion_tokens): the reservation covers the largest.
    max_tokens = max(asked) if asked else None
    if max_tokens is not None and endpoint.name in RESPONSES_BOUND:
        # LiteLLM sends Messages to openai/ deployments as Responses requests, whose max_output_tokens it raises to
        # the Responses API's minimum: the upstream may generate that many whatever the client asked.
        max_tokens = max(max_tokens, RESPONSES_MIN_OUTPUT_TOKENS)
    return ContractRequest(
        endpoint, body_bytes, max(n, best_of), max_tokens, normalized, _caches_prompt(body), end_user
    )


def _end_user(body: dict) -> str | None:
    user = body.get("user")
    metadata = body.get("metadata")
    if not isinstance(user, str) and isinstance(metadata, dict):
        user = metadata.get("user_id")
    return user if isinstance(user, str) and user else None


def _caches_prompt(body: dict) -> bool:
    """Whether a Messages request sets a cache breakpoint (on the request, a tool, a system or content block)."""
    if "cache_control" in body:
        return True
    blocks: list[Any] = [*(body.get("tools") or ())]
    if isinstance(body.get("system"), list):
        blocks += body["system"]
    for message in body.get("messages") or ():
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):
            blocks += content
    return any(isinstance(b, dict) and "cache_control" in b for b in blocks)


def check_query(endpoint: Endpoint, query_string: bytes) -> None:
    """Only the query parameters the official SDKs send to this route (never passed on to LiteLLM)."""
    from urllib.parse import parse_qsl

    for name, _ in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
        if name not in endpoint.query:
            accepted = f" (accepted here: {', '.join(sorted(endpoint.query))})" if endpoint.query else ""
            raise ContractError(
                400,
                "unsupported_field",
                f"query parameter {name!r} is not accepted on this route{accepted}; send request fields in the body",
                f"query.{name}",
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


def hosted_kind(endpoint: str, tool: Any) -> str | None:
    """What a tool entry is if the upstream hosts it (``web_search``, ``web_fetch``, ``code_execution``)."""
    kind = tool.get("type") if isinstance(tool, dict) else None
    if not isinstance(kind, str):
        return None
    if endpoint == "responses":
        return RESPONSES_HOSTED.get(kind)
    if endpoint in ("anthropic_messages", "anthropic_count_tokens"):
        return next((what for prefix, what in ANTHROPIC_HOSTED_PREFIXES.items() if kind.startswith(prefix)), None)
    return None


def apply_hosted_tools(endpoint: str, body: dict, allowed: Any) -> list[str]:
    """Drop the hosted tools the tenant may not use (``Tenant.hostedTools``) from ``body``, in place; returns
    what was dropped. Dropped, not refused: clients offer them by default (Codex's web search), and the model
    answers without them. A request that forces one (``tool_choice``) is refused, since it cannot be served."""
    dropped: list[str] = []
    if endpoint == "chat_completions" and "web_search_options" in body and "web_search" not in allowed:
        del body["web_search_options"]
        dropped.append("web_search")
    items = body.get("input")
    if endpoint == "responses" and isinstance(items, list) and "web_search" not in allowed:
        kept_items = [i for i in items if not (isinstance(i, dict) and i.get("type") == "web_search_call")]
        if len(kept_items) < len(items):
            body["input"] = kept_items
            dropped.append("web_search")
    tools = body.get("tools")
    if not isinstance(tools, list):
        return dropped
    kept = []
    for tool in tools:
        kind = hosted_kind(endpoint, tool)
        if kind is not None and kind not in allowed:
            dropped.append(kind)
        else:
            kept.append(tool)
    if len(kept) == len(tools):
        return dropped
    choice = body.get("tool_choice")
    forced = choice.get("type") if isinstance(choice, dict) else None
    if isinstance(forced, str) and hosted_kind(endpoint, choice) is not None:
        raise ContractError(
            400,
            "unsupported_field",
            f"tool_choice: the hosted tool {forced!r} is not enabled for this key (Tenant spec.hostedTools)",
            "tool_choice",
        )
    if kept:
        body["tools"] = kept
    else:
        for field in ("tools", "tool_choice", "parallel_tool_calls"):
            body.pop(field, None)
    return dropped
