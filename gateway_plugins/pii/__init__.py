"""In-process Presidio PII masking of everything that leaves for the upstream.

``mask_request`` runs in the pre-call hook; ``restore_response`` / ``restore_stream`` put the
originals back in answers for tenants with ``pii.restore``. Analysis runs in a dedicated thread
pool so the event loop never waits on Presidio; a tenant without a PII policy costs one attribute
check. Per-request mappings live in ``ctx.pii_state`` only; audit and metrics see counts.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from gateway_plugins import metrics
from gateway_plugins.contract.text import text_slots
from gateway_plugins.errors import openai_error
from gateway_plugins.pii.engine import ENGINES, EXECUTOR, analyze_texts, ner_models
from gateway_plugins.pii.restore import Restorer, StreamRestorer, restore_whole
from gateway_plugins.pii.restore_events import AnthropicStreamRestorer, ResponsesStreamRestorer, restore_deep
from gateway_plugins.pii.transform import PiiState, blocked_types, count_detections, rewrite
from gateway_plugins.policy.schema import PiiPolicy

if TYPE_CHECKING:
    from gateway_plugins.context import RequestContext
    from gateway_plugins.runtime import Runtime

__all__ = ["mask_request", "restore_response", "restore_stream", "warm_up"]

log = logging.getLogger("kubegate.pii")

_ready: dict[str | None, asyncio.Future] = {}


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
        headers={"Retry-After": "1"},
    )


# Analyses one tenant may have running in this process at once: with the pool's two workers, one tenant's
# flood of large prompts can hold at most one, and the other stays free for everyone else.
PER_TENANT_ANALYSES = max(1, EXECUTOR._max_workers - 1)
_slots: dict[str, asyncio.Semaphore] = {}


def _slot(tenant_id: str) -> asyncio.Semaphore:
    sem = _slots.get(tenant_id)
    if sem is None:
        sem = _slots[tenant_id] = asyncio.Semaphore(PER_TENANT_ANALYSES)
    return sem


class _Busy(Exception):
    pass


async def _analyse(tenant_id: str, texts: list[str], policy: PiiPolicy) -> list:
    """Run the analysis in the pool within ``policy.timeout_ms`` (waiting for the tenant's slot included).

    The slot is given back only when the worker thread really ends, and a caller that times out or goes
    away sets the cancel flag, which the analysis checks between texts and windows: abandoned work stops
    within one window instead of running on and starving the pool.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + policy.timeout_ms / 1000
    sem = _slot(tenant_id)
    try:
        await asyncio.wait_for(sem.acquire(), timeout=policy.timeout_ms / 1000)
    except TimeoutError:
        raise _Busy from None
    cancel = threading.Event()
    try:
        fut = loop.run_in_executor(EXECUTOR, analyze_texts, texts, policy, cancel)
    except BaseException:
        sem.release()
        raise
    fut.add_done_callback(lambda f: (sem.release(), f.cancelled() or f.exception()))
    try:
        return await asyncio.wait_for(asyncio.shield(fut), timeout=max(0.001, deadline - loop.time()))
    except BaseException:
        cancel.set()
        raise


async def mask_request(ctx: RequestContext, data: dict, call_type: str, rt: Runtime | None = None) -> None:
    """Mask (or block on) PII in every text value of the tenant's request per ``ctx.tenant.pii``.

    Deny by default: every string of the contract fields is analysed except the few the contract makes
    structural (``gateway_plugins.contract.text``). No-op for a tenant without a PII policy.
    """
    policy = ctx.tenant.pii
    if policy is None or ctx.pii_masked:
        return
    ctx.pii_masked = True
    fields = ctx.contract.endpoint.fields if ctx.contract is not None else None
    found = text_slots(data, fields)
    slots = found.slots
    texts = [container[key] for container, key in slots]
    analysed = texts + found.keys
    if not any(analysed):
        ctx.decisions["pii"] = {"counts": {}, "actions": {}, "failed_open": False}
        return
    total = sum(len(t) for t in analysed)
    if total > policy.max_text_chars:
        ctx.decisions["pii"] = {"counts": {}, "actions": {}, "failed_open": False, "error": "too_large"}
        raise openai_error(
            413,
            f"The request has more text ({total} characters) than this key's PII policy analyses "
            f"({policy.max_text_chars}); it was not forwarded.",
            code="pii_text_too_large",
        )
    try:
        # The engine build (seconds for a spaCy model) is not the request's analysis: don't time it out.
        # A language without a model raises here (PiiAnalysisError): refused unless fail-open.
        await warm_up(None)
        for model in ner_models(policy):
            await warm_up(model)
        all_spans = await _analyse(ctx.tenant.id, analysed, policy)
    except Exception as exc:  # any failure of analysis, PiiAnalysisError, busy slot and timeouts included
        reason = (
            "timeout" if isinstance(exc, TimeoutError) else "busy" if isinstance(exc, _Busy) else type(exc).__name__
        )
        # Log the failure class only: exception text from a recognizer could quote the prompt.
        log.warning("PII analysis failed for request %s: %s", ctx.request_id, reason)
        if not policy.fail_open:
            raise _refuse_unavailable(ctx, reason) from None
        ctx.decisions["pii"] = {"counts": {}, "actions": {}, "failed_open": True, "error": reason}
        return
    spans, key_spans = all_spans[: len(texts)], all_spans[len(texts) :]
    detected = count_detections(all_spans, policy.entities)
    blocked = blocked_types(all_spans, policy.entities)
    # Property names of tool and response schemas cannot be masked (the model's arguments would no longer
    # match them): PII there refuses the request like a blocked type.
    in_keys = sorted({e for s in key_spans for span in s for e in span.entities if e in policy.entities})
    if blocked or in_keys:
        refused = sorted(set(blocked) | set(in_keys))
        ctx.pii_counts.update(detected)
        ctx.decisions["pii"] = {
            "counts": detected,
            "actions": {e: "block" for e in refused},
            "failed_open": False,
            "blocked": refused,
        }
        metrics.record_pii(rt.policy if rt else None, ctx.tenant.id, detected, ctx.decisions["pii"]["actions"])
        where = " (in a schema property name)" if in_keys and not blocked else ""
        raise openai_error(
            400,
            f"The request contains PII that this key's policy does not allow to be sent{where}: {', '.join(refused)}.",
            code="pii_blocked",
        )

    # PII inside base64 cannot be masked in place. Like image or file parts, content the gateway cannot rewrite
    # is refused unless the tenant accepts uninspectable content; then the whole encoded run is replaced.
    encoded = sorted({s.entity for per_text in spans for s in per_text if s.encoded and s.entity in policy.entities})
    if encoded and not policy.allow_uninspectable_content:
        ctx.pii_counts.update(detected)
        ctx.decisions["pii"] = {
            "counts": detected,
            "actions": {e: "block" for e in encoded},
            "failed_open": False,
            "blocked": encoded,
            "encoded": True,
        }
        metrics.record_pii(rt.policy if rt else None, ctx.tenant.id, detected, ctx.decisions["pii"]["actions"])
        raise openai_error(
            400,
            f"The request contains base64-encoded text with PII ({', '.join(encoded)}) that cannot be masked "
            "inside the encoding; this key's PII policy does not accept uninspectable content, so it was not "
            "forwarded.",
            code="content_not_inspectable",
        )

    state = PiiState(tenant_id=ctx.tenant.id)
    for (container, key), text, per_text in zip(slots, texts, spans, strict=True):
        if per_text:
            container[key] = rewrite(text, per_text, policy.entities, state)
    ctx.pii_counts.update(detected)
    ctx.decisions["pii"] = {
        "counts": detected,
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


# Endpoints whose answers are event-shaped (Responses API, Anthropic Messages) rather than OpenAI choices.
_EVENT_STREAMS = {"responses": ResponsesStreamRestorer, "anthropic_messages": AnthropicStreamRestorer}


def _endpoint_name(ctx: RequestContext) -> str:
    return ctx.contract.endpoint.name if ctx.contract is not None else ""


def restore_response(ctx: RequestContext, response: Any) -> None:
    """Put original values back into a non-streaming response when the tenant asks for restore."""
    restorer = _restorer(ctx)
    if restorer is None:
        return
    if _endpoint_name(ctx) in _EVENT_STREAMS:
        restore_deep(restorer, response)
    else:
        restore_whole(restorer, response)


async def restore_stream(ctx: RequestContext, stream: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """Restore placeholders in a streamed response, including ones split across chunks."""
    restorer = _restorer(ctx)
    if restorer is None:
        async for chunk in stream:
            yield chunk
        return
    events = _EVENT_STREAMS.get(_endpoint_name(ctx))
    if events is not None:
        er = events(restorer)
        async for chunk in stream:
            for out in er.process(chunk):
                yield out
        for out in er.finish():
            yield out
        return
    sr = StreamRestorer(restorer)
    async for chunk in stream:
        yield sr.process(chunk)
    tail = sr.tail_chunk()
    if tail is not None:
        yield tail
