"""In-process Presidio PII masking of everything that leaves for the upstream.

``mask_request`` runs in the pre-call hook; ``restore_response`` / ``restore_stream`` put the
originals back in answers for tenants with ``pii.restore``. Analysis runs in a dedicated thread
pool so the event loop never waits on Presidio; a tenant without a PII policy costs one attribute
check. Per-request mappings live in ``ctx.pii_state`` only; audit and metrics see counts.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from gateway_plugins import metrics
from gateway_plugins.errors import openai_error
from gateway_plugins.pii.engine import ENGINES, EXECUTOR, NER_ENTITIES, analyze_texts
from gateway_plugins.pii.restore import Restorer, StreamRestorer, restore_whole
from gateway_plugins.pii.slots import text_slots
from gateway_plugins.pii.transform import PiiState, blocked_types, rewrite
from gateway_plugins.policy.schema import PiiPolicy

if TYPE_CHECKING:
    from gateway_plugins.context import RequestContext
    from gateway_plugins.runtime import Runtime

__all__ = ["mask_request", "restore_response", "restore_stream", "warm_up"]

log = logging.getLogger("kubegate.pii")

_ready: dict[str | None, asyncio.Future] = {}


def _needs_ner(policy: PiiPolicy) -> bool:
    return any(e in NER_ENTITIES or e == "DATE_TIME" for e in policy.entities)


def warm_up(nlp_model: str | None = None) -> asyncio.Future:
    """Build the engines (and spaCy model ``nlp_model`` if given) in the PII thread pool, once.

    Call at proxy start-up with the models the policy needs so no request pays the build; a
    request arriving earlier awaits the same future rather than building twice.
    """
    fut = _ready.get(nlp_model)
    if fut is None or (fut.done() and fut.exception() is not None):
        loop = asyncio.get_running_loop()
        fut = _ready[nlp_model] = asyncio.ensure_future(loop.run_in_executor(EXECUTOR, ENGINES.warm, nlp_model))
    return fut


def _refuse_unavailable(ctx: RequestContext, reason: str) -> Exception:
    ctx.decisions["pii"] = {"counts": {}, "actions": {}, "failed_open": False, "error": reason}
    return openai_error(
        503,
        "PII analysis is unavailable; the request was not forwarded.",
        code="pii_unavailable",
        type_="service_unavailable",
    )


async def mask_request(ctx: RequestContext, data: dict, call_type: str, rt: Runtime | None = None) -> None:
    """Mask (or block on) PII in every text of ``data`` per ``ctx.tenant.pii``; no-op without a policy."""
    policy = ctx.tenant.pii
    if policy is None:
        return
    slots = text_slots(data)
    texts = [container[key] for container, key in slots]
    if not any(texts):
        ctx.decisions["pii"] = {"counts": {}, "actions": {}, "failed_open": False}
        return
    try:
        # The engine build (seconds for a spaCy model) is not the request's analysis: don't time it out.
        await warm_up(policy.nlp_model if _needs_ner(policy) else None)
        loop = asyncio.get_running_loop()
        spans = await asyncio.wait_for(
            loop.run_in_executor(EXECUTOR, analyze_texts, texts, policy), timeout=policy.timeout_ms / 1000
        )
    except Exception as exc:  # any failure of analysis, PiiAnalysisError and timeouts included
        reason = "timeout" if isinstance(exc, TimeoutError) else type(exc).__name__
        # Log the failure class only: exception text from a recognizer could quote the prompt.
        log.warning("PII analysis failed for request %s: %s", ctx.request_id, reason)
        if not policy.fail_open:
            raise _refuse_unavailable(ctx, reason) from None
        ctx.decisions["pii"] = {"counts": {}, "actions": {}, "failed_open": True, "error": reason}
        return

    blocked = blocked_types(spans, policy.entities)
    if blocked:
        counts = {}
        for per_text in spans:
            for s in per_text:
                if s.entity in blocked:
                    counts[s.entity] = counts.get(s.entity, 0) + 1
        ctx.pii_counts.update(counts)
        ctx.decisions["pii"] = {
            "counts": counts,
            "actions": {e: "block" for e in blocked},
            "failed_open": False,
            "blocked": blocked,
        }
        metrics.record_pii(rt.policy if rt else None, ctx.tenant.id, counts, ctx.decisions["pii"]["actions"])
        raise openai_error(
            400,
            f"The request contains PII that this key's policy does not allow to be sent: {', '.join(blocked)}.",
            code="pii_blocked",
        )

    state = PiiState(tenant_id=ctx.tenant.id)
    for (container, key), text, per_text in zip(slots, texts, spans, strict=True):
        if per_text:
            container[key] = rewrite(text, per_text, policy.entities, state)
    ctx.pii_counts.update(state.counts)
    ctx.decisions["pii"] = {
        "counts": dict(state.counts),
        "actions": {e: str(policy.entities[e]) for e in state.counts},
        "failed_open": False,
    }
    metrics.record_pii(rt.policy if rt else None, ctx.tenant.id, state.counts, ctx.decisions["pii"]["actions"])
    if policy.restore and state.originals:
        ctx.pii_state = state


def _restorer(ctx: RequestContext) -> Restorer | None:
    state = ctx.pii_state
    if not isinstance(state, PiiState) or not state.originals:
        return None
    return Restorer(state.originals)


def restore_response(ctx: RequestContext, response: Any) -> None:
    """Put original values back into a non-streaming response when the tenant asks for restore."""
    restorer = _restorer(ctx)
    if restorer is not None:
        restore_whole(restorer, response)


async def restore_stream(ctx: RequestContext, stream: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """Restore placeholders in a streamed response, including ones split across chunks."""
    restorer = _restorer(ctx)
    if restorer is None:
        async for chunk in stream:
            yield chunk
        return
    sr = StreamRestorer(restorer)
    async for chunk in stream:
        yield sr.process(chunk)
    tail = sr.tail_chunk()
    if tail is not None:
        yield tail
