"""A stream whose client hung up before any of the answer was written to it.

LiteLLM cancels the upstream call when it sees the client go while it waits for the first chunk
(``_buffer_first_chunk_honoring_disconnect``, on LiteLLM's handler and on the fast path alike). What it reports
afterwards depends on a race inside that wait: nothing (no chunk read yet: its 499 answer reaches no hook), or a
partial bill of whatever chunks it had read in the same turn (anything from the role chunk to the whole answer).
kubegate records and charges such a request one way whatever the race gave: ``incomplete``, HTTP 499, the client
``disconnected``, charged the prompt it sent upstream (LiteLLM's tokenizer over every text value and tool schema)
at the serving deployment's input price. The provider processed that prompt; the output it was stopped from
writing is not billed, and whatever LiteLLM had read of it was never delivered.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from gateway_plugins.context import RequestContext
from gateway_plugins.contract.text import input_tokens
from gateway_plugins.outcome import finalize

log = logging.getLogger("kubegate.client_left")


def applies(ctx: RequestContext) -> bool:
    """The client left before the answer began, on a stream: LiteLLM cancelled the upstream call."""
    data = ctx.upstream_data
    return ctx.left_before_answer and isinstance(data, dict) and data.get("stream") is True


async def end(rt: Any, ctx: RequestContext) -> None:
    """Record and charge the request as the module says; once, whichever of the hooks and the front door asks."""
    from gateway_plugins import limits

    if ctx.finished or ctx.status == "incomplete":
        return
    ctx.status = "incomplete"
    ctx.http_status = 499
    ctx.decisions["client"] = "disconnected"
    ctx.completion_tokens = 0
    meta = rt.policy.deployments.get(ctx.deployment_id or "")
    if meta is not None:
        ctx.served_model, ctx.region = meta.model, meta.region
    try:
        fields = ctx.contract.endpoint.fields if ctx.contract is not None else None
        ctx.prompt_tokens = await asyncio.to_thread(input_tokens, ctx.upstream_data, fields)
        ctx.cost_usd = ctx.prompt_tokens * float(meta.input_cost_per_token) if meta is not None else 0.0
        await limits.settle(ctx, rt)
    except Exception:
        log.exception("charging a request whose client left failed for request %s", ctx.request_id)
    finally:
        finalize(rt, ctx)
        rt.contexts.pop(ctx.request_id)
