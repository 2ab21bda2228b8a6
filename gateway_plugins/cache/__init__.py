"""Per-tenant response cache in the Gateway's Redis (docs/cache.md).

The front door runs it for tenants with ``cache`` in their policy, before LiteLLM sees the request:

* :func:`lookup` masks a cacheable request (the hook then does not mask again), keys it and does one ``GET``;
  a hit is answered by :func:`serve_hit` without LiteLLM, the upstream, a reservation or a cost.
* on a miss the request goes on with a :class:`CacheMiss` in ``ctx.cache``; it copies the response body the client
  gets, and once the response ended with 200 *and* the request was finalized as a success (its cost known), it
  stores the body with the request's originals turned back into placeholders, in the background.

A tenant without a cache costs one attribute check; Redis errors make a miss, never a refusal.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from gateway_plugins import metrics
from gateway_plugins.cache import entry as entries
from gateway_plugins.cache.rules import BYPASS, entry_key, shape_digest, skip_reason
from gateway_plugins.cache.store import STORE_SCRIPT, StoreResult
from gateway_plugins.context import RequestContext
from gateway_plugins.contract.headers import CACHE_CONTROL_HEADER, request_id_headers
from gateway_plugins.policy.keys import GatewayKeys, cache_shard_of, cache_shards
from gateway_plugins.policy.schema import CachePolicy, Tenant

log = logging.getLogger("kubegate.cache")

HEADER = CACHE_CONTROL_HEADER
_shapes: dict[tuple[str, str], str] = {}
# The compiled policy the memo above belongs to. Held (not its id()): a freed policy's id can be reused by the next
# one, which would keep serving shapes of a policy no longer in force.
_shapes_of: list[Any] = [None]


def _shape(rt: Any, tenant: Tenant, model: str) -> str:
    """The tenant's policy shape for ``model``, computed once per policy in force."""
    compiled = rt.policy
    if _shapes_of[0] is not compiled:
        _shapes.clear()
        _shapes_of[0] = compiled
    key = (tenant.id, model)
    shape = _shapes.get(key)
    if shape is None:
        if len(_shapes) > 10_000:
            _shapes.clear()
        shape = _shapes[key] = shape_digest(compiled.policy, tenant, model)
    return shape


def _count(rt: Any, ctx: RequestContext, result: str, **extra: Any) -> None:
    ctx.decisions["cache"] = {"result": result, **extra}
    ctx.response_headers["x-kubegate-cache"] = result
    metrics.CACHE_LOOKUPS.labels(metrics.bounded_tenant(rt.policy, ctx.tenant.id), result).inc()


def _originals(ctx: RequestContext) -> dict[str, str] | None:
    from gateway_plugins.pii.transform import PiiState

    state = ctx.pii_state
    return state.originals if isinstance(state, PiiState) and state.originals else None


def requested_bypass(headers: list[tuple[bytes, bytes]]) -> bool:
    return any(k == HEADER and v.strip().lower() == BYPASS.encode() for k, v in headers)


async def lookup(rt: Any, ctx: RequestContext, body: dict, headers: list[tuple[bytes, bytes]]) -> entries.Entry | None:
    """The entry for this request, or None (``ctx.cache`` then says whether its answer is to be stored).

    May mask ``body`` in place (PII refusals raise as they would in the hook)."""
    cache: CachePolicy = ctx.tenant.cache
    if requested_bypass(headers):
        _count(rt, ctx, "bypass")
        return None
    endpoint = ctx.contract.endpoint.name
    end_user = ctx.contract.end_user
    reason = skip_reason(cache, endpoint, body, end_user)
    if reason is None and ctx.quality is not None:
        # A cost-routed model: which candidate answers depends on the tier asked for and the budget left now.
        reason = "cost_routed"
    if reason is not None or rt.redis is None:
        _count(rt, ctx, "skip", reason=reason or "no_redis")
        return None
    from gateway_plugins import pii

    await pii.mask_request(ctx, body, endpoint, rt)
    if (ctx.decisions.get("pii") or {}).get("failed_open"):
        # Analysis failed and the tenant forwards unmasked: the answer may carry raw values, so it is not kept.
        _count(rt, ctx, "skip", reason="pii_unmasked")
        return None
    shape = _shape(rt, ctx.tenant, str(body.get("model")))
    shards = cache_shards(rt.policy.policy.cache_max_bytes)
    key = entry_key(rt.policy.keys, ctx.tenant.id, shape, endpoint, body, end_user, shards)
    try:
        raw = await rt.redis.get(key)
    except Exception as exc:
        log.warning("cache lookup failed for request %s: %s", ctx.request_id, type(exc).__name__)
        _count(rt, ctx, "error")
        return None
    found = entries.decode(raw) if raw else None
    if found is not None:
        _count(rt, ctx, "hit", saved_usd=found.cost_usd)
        metrics.CACHE_SAVED_USD.labels(metrics.bounded_tenant(rt.policy, ctx.tenant.id)).inc(found.cost_usd)
        return found
    _count(rt, ctx, "miss")
    ctx.cache = CacheMiss(key, cache)
    return None


async def serve_hit(send: Any, ctx: RequestContext, found: entries.Entry) -> None:
    """Answer from the entry, restored with this request's originals, in the shape it was stored (JSON or SSE)."""
    body = entries.restore(found.body, _originals(ctx))
    headers = [
        (b"content-type", found.content_type.encode()),
        (b"x-kubegate-request-id", ctx.request_id.encode()),
        *request_id_headers(ctx.request_id.encode()),
        (HEADER, b"hit"),
    ]
    if not found.streamed:
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return
    headers.append((b"cache-control", b"no-cache"))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    for event in entries.sse_events(body):
        await send({"type": "http.response.body", "body": event, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


def hit_outcome(ctx: RequestContext, found: entries.Entry) -> None:
    """The request's facts for its one audit record: served, nothing reserved, nothing spent."""
    ctx.status, ctx.http_status = "success", 200
    ctx.cost_usd = 0.0
    ctx.decisions["cache"]["model"] = found.served_model


class CacheMiss:
    """Copies a missed request's response body and stores it once it is known to be a whole, paid-for success."""

    __slots__ = ("chunks", "complete", "content_type", "done", "finished", "key", "ok", "policy", "size")

    def __init__(self, key: str, policy: CachePolicy) -> None:
        self.key = key
        self.policy = policy
        self.chunks: list[bytes] = []
        self.size = 0
        self.ok: bool | None = None  # unknown until the response starts
        self.complete = False
        self.finished = False
        self.done = False
        self.content_type = ""

    def on_send(self, message: dict) -> None:
        if self.ok is False:
            return
        if message["type"] == "http.response.start":
            headers = dict((k.lower(), v) for k, v in message.get("headers") or [])
            self.content_type = headers.get(b"content-type", b"application/json").decode("latin-1")
            # A compressed or failed answer is not replayed.
            self.ok = message["status"] == 200 and b"content-encoding" not in headers
            return
        if message["type"] != "http.response.body":
            return
        chunk = message.get("body", b"")
        self.size += len(chunk)
        if self.size > self.policy.max_entry_bytes:
            self.ok, self.chunks = False, []
            return
        if chunk:
            self.chunks.append(chunk)
        if not message.get("more_body", False):
            self.complete = True

    def response_ended(self, rt: Any, ctx: RequestContext) -> None:
        self._maybe_store(rt, ctx)

    def request_finished(self, rt: Any, ctx: RequestContext) -> None:
        self.finished = True
        self._maybe_store(rt, ctx)

    def _maybe_store(self, rt: Any, ctx: RequestContext) -> None:
        if self.done or not self.finished or not (self.complete or self.ok is False):
            return
        self.done = True
        tenant = metrics.bounded_tenant(rt.policy, ctx.tenant.id)
        if self.size > self.policy.max_entry_bytes:
            metrics.CACHE_STORES.labels(tenant, "too_large").inc()
            return
        if not self.ok or ctx.status != "success":
            return
        if ctx.model != ctx.requested_model or (ctx.served_model and ctx.served_model != ctx.requested_model):
            # A budget downgrade or a fallback answered: not what this request gets once they are over.
            metrics.CACHE_STORES.labels(tenant, "other_model").inc()
            return
        body = entries.remask(b"".join(self.chunks), _originals(ctx) or {})
        self.chunks = []
        if body is None:
            metrics.CACHE_STORES.labels(tenant, "unsafe").inc()
            return
        value = entries.encode(entries.Entry(self.content_type, float(ctx.cost_usd or 0.0), ctx.served_model, body))
        _background(_store(rt, tenant, self.key, value, self.policy.ttl_seconds))


async def _store(rt: Any, tenant: str, key: str, value: bytes, ttl: int) -> None:
    keys: GatewayKeys = rt.policy.keys
    # Each shard holds its share of the cap: the entry, its shard's index and counter share one hash slot.
    shard, cap = cache_shard_of(key), rt.policy.policy.cache_max_bytes
    try:
        result = await STORE_SCRIPT(
            rt.redis,
            [key, keys.cache_index(shard), keys.cache_bytes(shard)],
            [value, ttl, len(value), cap // cache_shards(cap)],
        )
        outcome = StoreResult(int(result)).name.lower()
    except Exception as exc:
        log.warning("storing a cache entry failed: %s", type(exc).__name__)
        outcome = "error"
    metrics.CACHE_STORES.labels(tenant, outcome).inc()


_tasks: set[asyncio.Task] = set()


def _background(coro: Any) -> None:
    task = asyncio.ensure_future(coro)
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)
