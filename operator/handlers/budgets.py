"""Budget status from Redis on a timer: spend, percent, state, period start; Events when a threshold is crossed."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import kopf
import redis.asyncio as aioredis
from gateway_operator import status as st
from gateway_operator.crd import models as crd
from gateway_operator.handlers import redislink
from gateway_operator.handlers.gateway import api_client, patch_status
from gateway_operator.render.gateway import render_budget
from kubernetes import client
from redis.exceptions import RedisError

from gateway_plugins.limits import read_budget_state

GROUP, VERSION = crd.GROUP, crd.VERSION
INTERVAL_ENV = "KUBEGATE_BUDGET_REFRESH_SECONDS"
DEFAULT_INTERVAL = 30.0
RANK = {"ok": 0, "notify": 1, "downgrade": 2, "blocked": 3}
# kopf wakes each Budget every second; the (env-configurable, read per tick) interval decides when Redis is read.
_last_refresh: dict[str, float] = {}


def refresh_interval() -> float:
    return float(os.environ.get(INTERVAL_ENV) or DEFAULT_INTERVAL)


class Unresolved(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _get(ns: str, kind: str, plural: str, name: str) -> dict:
    """A kubegate object, or ``Unresolved("<Kind>NotFound")`` when it does not exist."""
    try:
        return client.CustomObjectsApi(api_client()).get_namespaced_custom_object(GROUP, VERSION, ns, plural, name)
    except client.ApiException as exc:
        if exc.status == 404:
            raise Unresolved(f"{kind}NotFound", f"{kind} {name!r} not found in {ns}") from None
        raise


def _resolve(ns: str, tenant: str) -> tuple[str, str]:
    """(gateway name, Redis URL) of the Tenant's Gateway."""
    obj = _get(ns, "Tenant", "tenants", tenant)
    gateway = obj["spec"]["gateway"]
    gw = _get(ns, "Gateway", "gateways", gateway)
    try:
        return gateway, redislink.redis_url(api_client(), gw)
    except redislink.RedisUnavailable as exc:
        raise Unresolved(exc.reason, str(exc)) from None


async def _read(url: str, gateway: str, budget: Any) -> Any:
    conn = aioredis.Redis.from_url(
        url, socket_connect_timeout=redislink.CONNECT_TIMEOUT, socket_timeout=redislink.IO_TIMEOUT
    )
    try:
        return await read_budget_state(conn, gateway, budget)
    finally:
        await conn.aclose()


def crossed(old: str | None, new: str) -> bool:
    """An upward move into notify/downgrade/blocked (a new period going back to ok is not an event)."""
    return RANK.get(new, 0) > RANK.get(old or "ok", 0)


@kopf.timer(GROUP, VERSION, "budgets", interval=1.0)
async def budget_refresh(namespace: str, body: kopf.Body, uid: str, **_: Any) -> None:
    now = time.monotonic()
    if now - _last_refresh.get(uid, float("-inf")) < refresh_interval():
        return
    _last_refresh[uid] = now
    raw = dict(body)
    generation = raw["metadata"].get("generation")
    budget = render_budget(crd.Budget.model_validate(raw))
    try:
        gateway, url = await asyncio.to_thread(_resolve, namespace, budget.tenant)
        state = await _read(url, gateway, budget)
    except Unresolved as exc:
        desired = {"observedGeneration": generation, "conditions": [st.condition("Ready", False, exc.reason, str(exc))]}
        await asyncio.to_thread(patch_status, namespace, "budgets", raw, desired)
        return
    except (RedisError, OSError) as exc:
        message = f"Redis unreachable ({type(exc).__name__}); spend not refreshed"
        desired = {
            "observedGeneration": generation,
            "conditions": [st.condition("Ready", False, "RedisUnreachable", message)],
        }
        await asyncio.to_thread(patch_status, namespace, "budgets", raw, desired)
        return
    old = (raw.get("status") or {}).get("state")
    desired = {
        "observedGeneration": generation,
        "spentUSD": f"{state.spent_usd:.4f}",
        "percent": round(state.percent, 2),
        "state": state.state,
        "periodStart": state.period_start.isoformat(),
        "conditions": [st.condition("Ready", True, "Refreshed", "spend read from Redis")],
    }
    await asyncio.to_thread(patch_status, namespace, "budgets", raw, desired)
    if crossed(old, state.state):
        post = kopf.warn if state.state == "blocked" else kopf.info
        post(
            raw,
            reason=f"Budget{state.state.capitalize()}",
            message=f"spend {state.percent:.1f}% of {budget.limit_usd} USD: state {old or 'ok'} -> {state.state}",
        )


@kopf.on.delete(GROUP, VERSION, "budgets", optional=True)
async def budget_forget(uid: str, **_: Any) -> None:
    _last_refresh.pop(uid, None)
