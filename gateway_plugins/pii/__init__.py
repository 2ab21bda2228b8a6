"""In-process Presidio PII masking of everything that leaves for the upstream.

STUB: the PII issue replaces these bodies; the signatures are the contract with ``hooks``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway_plugins.context import RequestContext
    from gateway_plugins.runtime import Runtime


async def mask_request(ctx: RequestContext, data: dict, call_type: str, rt: Runtime) -> None:
    """Mask (or block on) PII in every text of ``data`` per ``ctx.tenant.pii``; no-op without a policy."""


def restore_response(ctx: RequestContext, response: Any) -> None:
    """Put original values back into a non-streaming response when the tenant asks for restore."""


async def restore_stream(ctx: RequestContext, stream: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """Restore placeholders in a streamed response, including ones split across chunks."""
    async for chunk in stream:
        yield chunk
