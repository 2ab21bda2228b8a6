"""Budget status from Redis: spend, percent, state, period start; Events when a threshold is crossed.

One refresh per Gateway reads all its Budgets over one Redis connection (``handlers.loops`` calls it every
``KUBEGATE_BUDGET_REFRESH_SECONDS``); a status is written only when it changed, so an idle Budget costs no writes.
"""

from __future__ import annotations

import asyncio
import logging
import os
from datetime import UTC, datetime
from typing import Any

import kopf
import redis.asyncio as aioredis
from gateway_operator import status as st
from gateway_operator.crd import models as crd
from gateway_operator.handlers import redislink
from gateway_operator.handlers.gateway import api_client, list_objects, mark_gateway_missing, patch_status, rerender
from gateway_operator.render.gateway import render_budget
from kubernetes import client
from redis.exceptions import RedisError

from gateway_plugins.limits import read_budget_state
from gateway_plugins.policy.keys import GatewayKeys

log = logging.getLogger("kubegate.operator")
GROUP, VERSION = crd.GROUP, crd.VERSION
INTERVAL_ENV = "KUBEGATE_BUDGET_REFRESH_SECONDS"
DEFAULT_INTERVAL = 30.0
RANK = {"ok": 0, "notify": 1, "downgrade": 2, "blocked": 3}
COMPONENT = "kubegate-operator"


def refresh_interval() -> float:
    return float(os.environ.get(INTERVAL_ENV) or DEFAULT_INTERVAL)


def crossed(old: str | None, new: str) -> bool:
    """An upward move into notify/downgrade/blocked (a new period going back to ok is not an event)."""
    return RANK.get(new, 0) > RANK.get(old or "ok", 0)


def _targets(ns: str, gateway: str) -> tuple[list[dict[str, Any]], str | None, tuple[str, str] | None]:
    """(Budgets of the Gateway's Tenants, Redis URL, or why there is none)."""
    try:
        gw = client.CustomObjectsApi(api_client()).get_namespaced_custom_object(
            GROUP, VERSION, ns, "llmgateways", gateway
        )
    except client.ApiException as exc:
        if exc.status == 404:
            return [], None, None
        raise
    tenants = {t["metadata"]["name"] for t in list_objects(ns, "tenants") if t["spec"]["gateway"] == gateway}
    budgets = [b for b in list_objects(ns, "budgets") if b["spec"]["tenant"] in tenants]
    if not budgets:
        return [], None, None
    try:
        return budgets, redislink.redis_url(api_client(), gw), None
    except redislink.RedisUnavailable as exc:
        return budgets, None, (exc.reason, str(exc))


async def _read_all(url: str, gateway: GatewayKeys, budgets: list[dict[str, Any]]) -> dict[str, Any]:
    conn = aioredis.Redis.from_url(
        url, socket_connect_timeout=redislink.CONNECT_TIMEOUT, socket_timeout=redislink.IO_TIMEOUT
    )
    try:
        return {
            b["metadata"]["name"]: await read_budget_state(conn, gateway, render_budget(crd.Budget.model_validate(b)))
            for b in budgets
        }
    finally:
        await conn.aclose()


def post_event(obj: dict[str, Any], warning: bool, reason: str, message: str) -> None:
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    meta = obj["metadata"]
    body = {
        "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
        "involvedObject": {
            "apiVersion": obj.get("apiVersion", crd.API_VERSION),
            "kind": obj.get("kind", "Budget"),
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta.get("uid"),
        },
        "reason": reason,
        "message": message[: st.MAX_MESSAGE],
        "type": "Warning" if warning else "Normal",
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }
    client.CoreV1Api(api_client()).create_namespaced_event(meta["namespace"], body)


def _write(ns: str, budgets: list[dict[str, Any]], states: dict[str, Any], failure: tuple[str, str] | None) -> int:
    """Write the statuses that changed and post an Event per upward threshold crossing; returns writes."""
    writes = 0
    for raw in budgets:
        generation = raw["metadata"].get("generation")
        state = states.get(raw["metadata"]["name"])
        if state is None:
            reason, message = failure or ("RedisUnreachable", "spend not refreshed")
            desired = {"observedGeneration": generation, "conditions": [st.condition("Ready", False, reason, message)]}
            writes += patch_status(ns, "budgets", raw, desired)
            continue
        old = (raw.get("status") or {}).get("state")
        desired = {
            "observedGeneration": generation,
            "spentUSD": f"{state.spent_usd:.4f}",
            "percent": round(state.percent, 2),
            "state": state.state,
            "periodStart": state.period_start.isoformat(),
            "conditions": [st.condition("Ready", True, "Refreshed", "spend read from Redis")],
        }
        writes += patch_status(ns, "budgets", raw, desired)
        if crossed(old, state.state):
            limit = raw["spec"]["limitUSD"]
            post_event(
                raw,
                state.state == "blocked",
                f"Budget{state.state.capitalize()}",
                f"spend {state.percent:.1f}% of {limit} USD: state {old or 'ok'} -> {state.state}",
            )
    return writes


async def refresh_gateway(ns: str, gateway: str) -> int:
    """Refresh the status of every Budget on ``gateway``; returns the number of status writes."""
    budgets, url, failure = await asyncio.to_thread(_targets, ns, gateway)
    if not budgets:
        return 0
    states: dict[str, Any] = {}
    if url is not None:
        try:
            states = await _read_all(url, GatewayKeys(ns, gateway), budgets)
        except (RedisError, OSError) as exc:
            failure = ("RedisUnreachable", f"Redis unreachable ({type(exc).__name__}); spend not refreshed")
    return await asyncio.to_thread(_write, ns, budgets, states, failure)


def _tenant_gateway(ns: str, tenant: str) -> str | None:
    try:
        obj = client.CustomObjectsApi(api_client()).get_namespaced_custom_object(GROUP, VERSION, ns, "tenants", tenant)
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return obj["spec"].get("gateway")


@kopf.on.event(GROUP, VERSION, "budgets")
async def budget_changed(
    namespace: str, spec: dict[str, Any], type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any
) -> None:
    """A Budget names its Tenant, not its Gateway: re-render the Tenant's Gateway."""
    tenant = (spec or {}).get("tenant")
    raw = dict(body)
    if not tenant or st.already_observed(type, raw):
        return
    gateway = await asyncio.to_thread(_tenant_gateway, namespace, tenant)
    if gateway is None:
        if type != "DELETED":
            gen = raw["metadata"].get("generation")
            missing = st.condition("Ready", False, "TenantNotFound", f"Tenant {tenant!r} not found in {namespace}")
            await asyncio.to_thread(
                patch_status, namespace, "budgets", raw, {"observedGeneration": gen, "conditions": [missing]}
            )
        return
    if not await rerender(memo, namespace, gateway) and type != "DELETED":
        await asyncio.to_thread(mark_gateway_missing, namespace, "budgets", raw, gateway)
