"""The audit record: a stable, versioned field list built from a finished RequestContext.

Only identifiers, decisions and numbers go in: never prompt or completion text, never a key
(``key_id`` is already a short hash prefix made by the auth module).
"""

from __future__ import annotations

import time
from typing import Any, TypedDict

from gateway_plugins.context import RequestContext

SCHEMA_VERSION = 1


class AuditRecord(TypedDict):
    v: int
    time: float
    request_id: str
    tenant: str
    key_id: str
    call_type: str
    requested_model: str
    model: str
    served_model: str | None
    deployment_id: str | None
    region: str | None
    allowed_regions: list[str]
    decisions: dict[str, Any]
    pii_counts: dict[str, int]
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    latency_ms: float
    status: str
    http_status: int | None


FIELDS: tuple[str, ...] = tuple(AuditRecord.__annotations__)


def _jsonable(value: Any) -> Any:
    """Decisions are set by several modules; coerce to plain JSON so canonical hashing never fails."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_jsonable(v) for v in value]
    return str(value)


def build_record(ctx: RequestContext, now: float | None = None) -> dict:
    tenant = getattr(ctx.tenant, "id", None) or str(ctx.tenant)
    record: AuditRecord = {
        "v": SCHEMA_VERSION,
        "time": round(time.time() if now is None else now, 6),
        "request_id": ctx.request_id,
        "tenant": tenant,
        "key_id": ctx.key_id,
        "call_type": ctx.call_type,
        "requested_model": ctx.requested_model,
        "model": ctx.model or ctx.requested_model,
        "served_model": ctx.served_model,
        "deployment_id": ctx.deployment_id,
        "region": ctx.region,
        "allowed_regions": list(ctx.allowed_regions),
        "decisions": _jsonable(ctx.decisions),
        "pii_counts": {str(k): int(v) for k, v in ctx.pii_counts.items()},
        "prompt_tokens": int(ctx.prompt_tokens or 0),
        "completion_tokens": int(ctx.completion_tokens or 0),
        "cost_usd": float(_jsonable(float(ctx.cost_usd or 0.0)) or 0.0),
        "latency_ms": round((time.perf_counter() - ctx.started) * 1000.0, 3),
        "status": ctx.status,
        "http_status": ctx.http_status,
    }
    return dict(record)
