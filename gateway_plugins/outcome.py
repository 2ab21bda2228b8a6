"""The end of a request: its one audit record and its metrics, written exactly once (``ctx.finished``).

Every path that ends a request calls :func:`finalize`: the front door for refusals it decides itself,
the hooks for LiteLLM's success and failure paths, and the front door's reaper for requests LiteLLM
never reported back on (a client gone mid-stream).
"""

from __future__ import annotations

import logging
from typing import Any

from gateway_plugins import metrics, tracing
from gateway_plugins.context import RequestContext

log = logging.getLogger("kubegate.outcome")


def finalize(rt: Any, ctx: RequestContext) -> None:
    if ctx.finished:
        return
    ctx.finished = True
    if ctx.cache is not None:
        try:
            ctx.cache.request_finished(rt, ctx)
        except Exception:  # the cache is an optimisation: its bug must not lose the audit record
            log.exception("offering the answer to the cache failed for request %s", ctx.request_id)
    policy = rt.policy
    tenant = metrics.bounded_tenant(policy, ctx.tenant.id)
    outcome = ctx.status if ctx.status in metrics.OUTCOMES else "error"
    served = metrics.bounded_model(policy, ctx.served_model)
    metrics.REQUESTS.labels(
        tenant,
        metrics.bounded_model(policy, ctx.requested_model),
        served,
        metrics.bounded_region(policy, ctx.region),
        outcome,
    ).inc()
    metrics.observe_request(policy, ctx, outcome)
    if outcome == "refused":
        metrics.REFUSALS.labels(tenant, metrics.bounded_reason(ctx.decisions.get("refusal"))).inc()
    if ctx.prompt_tokens or ctx.completion_tokens:
        metrics.TOKENS.labels(tenant, served, "prompt").inc(ctx.prompt_tokens)
        metrics.TOKENS.labels(tenant, served, "completion").inc(ctx.completion_tokens)
    if ctx.cost_usd:
        metrics.COST.labels(tenant, served).inc(ctx.cost_usd)
    try:
        record = rt.build_audit_record(ctx)
        summary = getattr(rt.audit, "unauthenticated", None)
        if record and ctx.unauthenticated_source is not None and summary is not None:
            summary.offer(record, str(ctx.decisions.get("refusal")), ctx.unauthenticated_source)
        elif record:
            rt.audit.submit(record)
    except Exception:  # an audit bug must not turn a served answer into an error
        log.exception("building the audit record failed for request %s", ctx.request_id)
    if ctx.trace is not None:
        tracing.end(ctx, outcome)


def refuse(rt: Any, ctx: RequestContext, status: int, reason: str) -> None:
    """Finalize a request refused before any upstream call."""
    ctx.status = "refused"
    ctx.http_status = status
    ctx.decisions.setdefault("refusal", reason)
    finalize(rt, ctx)
