"""The routes a tenant key may call: an explicit list of (method, path), each with its body contract.

Everything LiteLLM registers beyond this list (its admin API, pass-through and provider-native routes,
Gemini ``:generateContent``, batches, files, assistants, realtime, ``/metrics`` ...) is closed to tenant
keys; with an admin key configured, the admin key alone opens them. Paths are matched exactly, so
no path pattern can let a look-alike through.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from gateway_plugins.contract.bodies import (
    ChatCompletionRequest,
    CompletionRequest,
    CountTokensRequest,
    EmbeddingRequest,
    MessagesRequest,
    ResponsesRequest,
)


@dataclass(frozen=True, slots=True)
class Endpoint:
    name: str  # also the audit record's call_type for refusals decided before LiteLLM runs
    method: str
    body: type[BaseModel] | None
    # Top-level fields of the body contract: the only keys of the hook's ``data`` that came from the tenant.
    fields: frozenset[str]
    billed: bool
    # Output tokens per choice are bounded by max_tokens; embeddings produce none.
    produces_output: bool
    # Which API's error shape the tenant's client expects ("openai" or "anthropic").
    error_format: str = "openai"
    # Query parameters the official SDKs send here, accepted and never passed on (LiteLLM reads some query
    # parameters as request fields); any other is refused.
    query: frozenset[str] = frozenset()


def _fields(model: type[BaseModel] | None) -> frozenset[str]:
    if model is None:
        return frozenset()
    return frozenset(f.alias or name for name, f in model.model_fields.items())


def _endpoint(
    name: str,
    method: str,
    body: type[BaseModel] | None,
    *,
    billed: bool,
    output: bool,
    errors: str = "openai",
    query: frozenset[str] = frozenset(),
) -> Endpoint:
    return Endpoint(name, method, body, _fields(body), billed, output, errors, query)


CHAT = _endpoint("chat_completions", "POST", ChatCompletionRequest, billed=True, output=True)
COMPLETIONS = _endpoint("completions", "POST", CompletionRequest, billed=True, output=True)
EMBEDDINGS = _endpoint("embeddings", "POST", EmbeddingRequest, billed=True, output=False)
RESPONSES = _endpoint("responses", "POST", ResponsesRequest, billed=True, output=True)
# Anthropic's format: its clients get errors in Anthropic's shape (``error_format``).
# ``?beta=true``: the anthropic SDK's ``client.beta.messages`` (and Claude Code) add it to every call.
_BETA = frozenset({"beta"})
MESSAGES = _endpoint(
    "anthropic_messages", "POST", MessagesRequest, billed=True, output=True, errors="anthropic", query=_BETA
)
# Counted by the gateway itself: nothing leaves it, nothing is billed (one audit record all the same).
COUNT_TOKENS = _endpoint(
    "anthropic_count_tokens", "POST", CountTokensRequest, billed=False, output=False, errors="anthropic", query=_BETA
)
MODELS = _endpoint("models", "GET", None, billed=False, output=False)
MODEL = _endpoint("model", "GET", None, billed=False, output=False)

ENDPOINTS: tuple[Endpoint, ...] = (CHAT, COMPLETIONS, EMBEDDINGS, RESPONSES, MESSAGES, COUNT_TOKENS, MODELS, MODEL)
BODIES: dict[str, type[BaseModel]] = {e.name: e.body for e in ENDPOINTS if e.body is not None}

TENANT_ROUTES: dict[tuple[str, str], Endpoint] = {
    ("POST", "/v1/chat/completions"): CHAT,
    ("POST", "/chat/completions"): CHAT,
    ("POST", "/v1/completions"): COMPLETIONS,
    ("POST", "/completions"): COMPLETIONS,
    ("POST", "/v1/embeddings"): EMBEDDINGS,
    ("POST", "/embeddings"): EMBEDDINGS,
    ("POST", "/v1/responses"): RESPONSES,
    ("POST", "/responses"): RESPONSES,
    # LiteLLM's /anthropic/... is a raw pass-through to Anthropic (no router, no hooks): not offered.
    ("POST", "/v1/messages"): MESSAGES,
    ("POST", "/v1/messages/count_tokens"): COUNT_TOKENS,
    ("GET", "/v1/models"): MODELS,
    ("GET", "/models"): MODELS,
}
# ``GET /v1/models/{model}``: one model the tenant may see (the only routes matched by prefix).
MODEL_PREFIXES = ("/v1/models/", "/models/")

# Liveness/readiness probes: open, answer nothing about tenants or upstreams.
PROBE_ROUTES = frozenset({"/health/liveliness", "/health/liveness", "/health/readiness"})


def model_id(path: str) -> str | None:
    """The model named by ``GET /v1/models/{model}`` (one path segment, as OpenAI's), else None."""
    for prefix in MODEL_PREFIXES:
        if path.startswith(prefix):
            rest = path[len(prefix) :]
            return rest if rest and "/" not in rest and ":" not in rest else None
    return None


def tenant_endpoint(method: str, path: str) -> Endpoint | None:
    found = TENANT_ROUTES.get((method, path))
    if found is None and method == "GET" and model_id(path) is not None:
        return MODEL
    return found


def is_tenant_path(path: str) -> bool:
    """Whether ``path`` is a tenant route for some method (the wrong method then gets 405, not 403)."""
    return any(p == path for _, p in TENANT_ROUTES) or model_id(path) is not None
