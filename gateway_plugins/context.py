"""Per-request state shared by the hooks of one request, kept in process memory only.

The context is keyed by LiteLLM's call id and never stored in request metadata, so nothing in
it (PII restore mappings above all) can leak into LiteLLM's own logging payloads.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from gateway_plugins.policy.schema import Tenant

CONTEXT_KEY = "kubegate_request_id"


@dataclass(slots=True)
class RequestContext:
    request_id: str
    tenant: Tenant
    key_id: str
    requested_model: str
    call_type: str
    started: float = field(default_factory=time.perf_counter)
    # The public model after budget downgrades; ``route_group`` is the LiteLLM group actually asked for.
    model: str = ""
    route_group: str | None = None
    # Cost-routed requests (gateway_plugins.autoroute): the quality tier asked for, and the candidates that also fit
    # the budget, tried in order after ``model`` (they replace the model's own fallbacks).
    quality: int | None = None
    fallback_models: tuple[str, ...] | None = None
    allowed_regions: tuple[str, ...] = ()
    # Decisions for the audit record: refusal, downgrade, residency, pii, budget state.
    decisions: dict[str, Any] = field(default_factory=dict)
    pii_counts: dict[str, int] = field(default_factory=dict)
    # Opaque handles owned by feature modules (budget reservation, PII restore mapping).
    reservation: Any = None
    pii_state: Any = None
    # Masking ran already (the front door masks cacheable requests to key them): the hook does not mask twice.
    pii_masked: bool = False
    # The response cache's per-request state (gateway_plugins.cache.CacheMiss) when a miss may be stored.
    cache: Any = None
    # gateway_plugins.tracing's handle; None while tracing is off.
    trace: Any = None
    response_headers: dict[str, str] = field(default_factory=dict)
    # Filled from the response.
    served_model: str | None = None
    deployment_id: str | None = None
    region: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    status: str = "pending"
    http_status: int | None = None
    # The kubegate error code the client was answered with, if any (for error shapes built after the hook).
    error_code: str | None = None
    # The message of the error kubegate put in place of the upstream's (its code is ``error_code``): what a client
    # is told on every API, whatever shape LiteLLM wrote the error in first.
    error_message: str | None = None
    finished: bool = False
    # Set by the front door: the accepted request's contract facts, and whether its response has ended.
    contract: Any = None
    response_done: bool = False
    # LiteLLM reported the answer (tokens, cost, settled) before the front door saw it reach the client: the
    # front door writes the audit record once it knows whether the client got all of it.
    reported: bool = False
    # Refused without a valid key: the peer's source class (gateway_plugins.audit.unauthenticated); the record is
    # then a sample or only a count in the window's summary, so a flood cannot evict tenants' records.
    unauthenticated_source: str | None = None
    # The request as it went upstream (masked), kept by reference for the one path that counts its prompt: a stream
    # whose client left before the answer began (gateway_plugins.client_left).
    upstream_data: Any = None
    # The front door saw the client hang up before any of the answer was written to it.
    left_before_answer: bool = False


class ContextRegistry:
    """Bounded map of in-flight requests; entries leave when the request's audit record is written."""

    def __init__(self, max_entries: int = 100_000) -> None:
        self._items: dict[str, RequestContext] = {}
        self._max = max_entries

    def put(self, ctx: RequestContext) -> None:
        if len(self._items) >= self._max:
            # Oldest first (dicts keep insertion order): a leak guard, not a normal path.
            self._items.pop(next(iter(self._items)))
        self._items[ctx.request_id] = ctx

    def get(self, request_id: str | None) -> RequestContext | None:
        return self._items.get(request_id) if request_id else None

    def pop(self, request_id: str | None) -> RequestContext | None:
        return self._items.pop(request_id, None) if request_id else None

    def __len__(self) -> int:
        return len(self._items)
