"""Budget status from Redis: spend, remaining, percent, state, period; an Event (and webhook) per threshold reached.

One refresh per Gateway reads all its Budgets over one Redis connection (``reconcile.loops`` calls it every
``KUBEGATE_BUDGET_REFRESH_SECONDS``); a status is written only when it changed, so an idle Budget costs no writes.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from gateway_operator import notify
from gateway_operator import status as st
from gateway_operator.crd import models as crd
from gateway_operator.kube.client import api_client, forget, patch_status, send_statuses, status_write
from gateway_operator.reconcile import redislink, seen
from gateway_operator.reconcile.gateway import list_namespace, request_rerender
from kubernetes import client
from redis.exceptions import RedisError

from gateway_plugins.policy.budget_state import read_budget_state
from gateway_plugins.policy.keys import GatewayKeys
from gateway_plugins.policy.redis_client import connect_async

log = logging.getLogger("kubegate.operator")
GROUP, VERSION = crd.GROUP, crd.VERSION
INTERVAL_ENV = "KUBEGATE_BUDGET_REFRESH_SECONDS"
DEFAULT_INTERVAL = 30.0
RANK = {"ok": 0, "notify": 1, "downgrade": 2, "blocked": 3}
COMPONENT = "kubegate-operator"


def refresh_interval() -> float:
    return float(os.environ.get(INTERVAL_ENV) or DEFAULT_INTERVAL)


def _targets(
    ns: str, gateway: str, objects: seen.Objects | None
) -> tuple[list[seen.Seen], dict[str, Any] | None, str | None, tuple[str, str] | None]:
    """(Budgets of the Gateway's Tenants, the Gateway, its Redis URL, or why there is none)."""
    try:
        gw = client.CustomObjectsApi(api_client()).get_namespaced_custom_object(
            GROUP, VERSION, ns, "llmgateways", gateway
        )
    except client.ApiException as exc:
        if exc.status == 404:
            return [], None, None, None
        raise
    objects = objects if objects is not None else list_namespace(ns)
    # Only objects the reconcile rendered: an invalid one keeps the InvalidSpec status the reconcile gave it.
    tenants = {t.name for t in objects.tenants if t.spec.get("gateway") == gateway and t.piece is not None}
    budgets = [b for b in objects.budgets if b.spec.get("tenant") in tenants and b.piece is not None]
    if not budgets:
        return [], gw, None, None
    try:
        return budgets, gw, redislink.redis_url(api_client(), gw), None
    except redislink.RedisUnavailable as exc:
        return budgets, gw, None, (exc.reason, str(exc))


async def _read_all(url: str, gateway: GatewayKeys, budgets: list[seen.Seen]) -> dict[str, Any]:
    conn = connect_async(url, socket_connect_timeout=redislink.CONNECT_TIMEOUT, socket_timeout=redislink.IO_TIMEOUT)
    try:
        return {b.name: await read_budget_state(conn, gateway, b.piece) for b in budgets}
    finally:
        await conn.aclose()


def threshold_event_name(budget: dict[str, Any], period_start: str, threshold: dict[str, Any]) -> str:
    """One Event name per Budget (by uid), period and threshold."""
    meta = budget["metadata"]
    key = f"{meta.get('uid')}\0{period_start}\0{float(threshold['percent'])}\0{threshold['action']}"
    return f"{meta['name']}.{hashlib.sha256(key.encode()).hexdigest()[:16]}"


def post_event(obj: dict[str, Any], warning: bool, reason: str, message: str, name: str | None = None) -> bool:
    """Post an Event about ``obj``; False when ``name`` is given and that Event already exists (posted before)."""
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    meta = obj["metadata"]
    naming = {"name": name} if name else {"generateName": f"{meta['name']}."}
    body = {
        "metadata": {**naming, "namespace": meta["namespace"]},
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
    try:
        client.CoreV1Api(api_client()).create_namespaced_event(meta["namespace"], body)
    except client.ApiException as exc:
        if exc.status == 409 and name:
            return False
        raise
    return True


@dataclass(frozen=True, slots=True)
class Webhook:
    url: str
    fmt: str
    secret: bytes | None


def _secret_value(ns: str, ref: dict[str, str]) -> bytes | None:
    try:
        secret = client.CoreV1Api(api_client()).read_namespaced_secret(ref["name"], ns)
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise
    value = (secret.data or {}).get(ref["key"])
    return base64.b64decode(value) if value else None


def _webhook(ns: str, budget: dict[str, Any], gw: dict[str, Any] | None) -> Webhook | None:
    """The Budget's webhook, else its Gateway's budgetWebhook; None when unset or its Secret is missing."""
    spec = budget["spec"].get("webhook") or ((gw or {}).get("spec") or {}).get("budgetWebhook")
    if not spec:
        return None
    url = spec.get("url")
    if not url and spec.get("urlSecretRef"):
        raw = _secret_value(ns, spec["urlSecretRef"])
        url = raw.decode().strip() if raw else None
    if not url:
        log.warning("budget %s/%s: webhook URL Secret missing; not sent", ns, budget["metadata"]["name"])
        return None
    secret = _secret_value(ns, spec["secretRef"]) if spec.get("secretRef") else None
    if spec.get("secretRef") and secret is None:
        log.warning("budget %s/%s: webhook signing Secret missing; not sent", ns, budget["metadata"]["name"])
        return None
    return Webhook(url, spec.get("format") or "json", secret)


def _notify(
    raw: dict[str, Any], gw: dict[str, Any] | None, state: Any, previous: list[float]
) -> tuple[list[float], list[tuple[Webhook, bytes]]]:
    """An Event per threshold newly reached this period, lowest first; returns the reached list and webhooks to send.

    Events go out before the status that records them is written, so a crash in between never loses one; it does
    not repeat one either: each Event's name is fixed by its Budget, period and threshold, and the operator that
    runs next finds it there. The webhook is sent again in that case: receivers dedupe on its namespace, budget,
    period_start and threshold_percent.
    """
    meta, spec = raw["metadata"], raw["spec"]
    fresh = notify.new_thresholds(spec.get("thresholds") or [], state.percent, previous)
    if not fresh:
        return previous, []
    hook = _webhook(meta["namespace"], raw, gw)
    out: list[tuple[Webhook, bytes]] = []
    for threshold in fresh:
        action = threshold["action"]
        event = notify.ThresholdEvent(
            namespace=meta["namespace"],
            budget=meta["name"],
            tenant=spec["tenant"],
            threshold_percent=float(threshold["percent"]),
            action=action,
            percent=round(state.percent, 2),
            spent_usd=f"{state.spent_usd:.4f}",
            limit_usd=str(spec["limitUSD"]) if spec.get("limitUSD") is not None else None,
            period_start=state.period_start.isoformat(),
            period_end=state.period_end.isoformat(),
            spent_tokens=state.spent_tokens,
            limit_tokens=spec.get("limitTokens"),
        )
        reason = "BudgetBlocked" if action == "block" else f"Budget{action.capitalize()}"
        post_event(
            raw,
            action != "notify",
            reason,
            notify.summary(event),
            threshold_event_name(raw, event.period_start, threshold),
        )
        if hook is not None:
            out.append((hook, notify.build_payload(hook.fmt, event)))
    return sorted({*previous, *(float(t["percent"]) for t in fresh)}), out


def _write(
    ns: str,
    budgets: list[seen.Seen],
    gw: dict[str, Any] | None,
    states: dict[str, Any],
    failure: tuple[str, str] | None,
    tenants: list[seen.Seen],
) -> tuple[int, list[tuple[Webhook, bytes]]]:
    """Write the statuses that changed, an Event per threshold newly reached; returns (writes, webhooks to send)."""
    outbox: list[tuple[Webhook, bytes]] = []
    per_tenant: dict[str, list[tuple[str, Any]]] = {}

    def pending() -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
        # Decided one object at a time, only the writes needed kept (10,000 desired statuses at once were MiBs).
        for entry in budgets:
            raw = entry.raw
            generation = raw["metadata"].get("generation")
            state = states.get(raw["metadata"]["name"])
            if state is None:
                reason, message = failure or ("RedisUnreachable", "spend not refreshed")
                condition = st.condition("Ready", False, reason, message)
                yield "budgets", raw, {"observedGeneration": generation, "conditions": [condition]}
                continue
            period_start = state.period_start.isoformat()
            previous = notify.reached_this_period(raw.get("status"), period_start)
            reached, hooks = _notify(raw, gw, state, previous)
            outbox.extend(hooks)
            yield (
                "budgets",
                raw,
                {
                    "observedGeneration": generation,
                    **_spend_status(raw["spec"], state),
                    "percent": round(state.percent, 2),
                    "state": state.state,
                    "periodStart": period_start,
                    "periodEnd": state.period_end.isoformat(),
                    "thresholdsReached": {"periodStart": period_start, "percents": reached},
                    "conditions": [st.condition("Ready", True, "Refreshed", "spend read from Redis")],
                },
            )
            per_tenant.setdefault(raw["spec"]["tenant"], []).append((f"{state.spent_usd:.4f}", state.state))
        # After every Budget: per_tenant is complete.
        yield from _tenant_writes(per_tenant, tenants)

    # Thousands of Budgets get their first status in one round: several requests at once.
    writes = [w for plural, obj, desired in pending() if (w := status_write(ns, plural, obj, desired)) is not None]
    return send_statuses(writes), outbox


def _spend_status(spec: dict[str, Any], state: Any) -> dict[str, Any]:
    """spentUSD always (a token-only Budget's spend is still priced); remainingUSD with limitUSD; spentTokens always
    and remainingTokens with limitTokens. An absent limit clears its remaining field (a merge patch with None)."""
    spent = Decimal(f"{state.spent_usd:.4f}")
    limit_usd, limit_tokens = spec.get("limitUSD"), spec.get("limitTokens")
    return {
        "spentUSD": f"{state.spent_usd:.4f}",
        "remainingUSD": None if limit_usd is None else f"{max(Decimal(0), Decimal(str(limit_usd)) - spent):.4f}",
        "spentTokens": state.spent_tokens,
        "remainingTokens": None if limit_tokens is None else max(0, int(limit_tokens) - state.spent_tokens),
    }


def _tenant_writes(
    per_tenant: dict[str, list[tuple[str, str]]], tenants: list[seen.Seen]
) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """Spend and worst budget state on each Tenant, so `kubectl get tenants` shows them (only when changed)."""
    out = []
    for tenant in tenants:
        rows = per_tenant.get(tenant.name)
        if not rows:
            continue
        spent = max(Decimal(s) for s, _ in rows)  # several Budgets: the largest period spend (periods may differ)
        worst = max((state for _, state in rows), key=lambda s: RANK.get(s, 0))
        out.append(("tenants", tenant.raw, {"spentUSD": f"{spent:.4f}", "budgetState": worst}))
    return out


async def refresh_gateway(ns: str, gateway: str, objects: seen.Objects | None = None) -> int:
    """Refresh the status of every Budget on ``gateway``; returns the number of status writes.

    ``objects``: the namespace's objects from the informers' store (else listed)."""
    if objects is None:
        objects = await asyncio.to_thread(list_namespace, ns)
    budgets, gw, url, failure = await asyncio.to_thread(_targets, ns, gateway, objects)
    if not budgets:
        return 0
    states: dict[str, Any] = {}
    if url is not None:
        try:
            states = await _read_all(url, GatewayKeys(ns, gateway), budgets)
        except (RedisError, OSError) as exc:
            failure = ("RedisUnreachable", f"Redis unreachable ({type(exc).__name__}); spend not refreshed")
    tenants = [t for t in objects.tenants if t.spec.get("gateway") == gateway]
    writes, outbox = await asyncio.to_thread(_write, ns, budgets, gw, states, failure, tenants)
    for hook, body in outbox:  # in threshold order; never awaited here, a slow receiver must not stall refreshes
        notify.send_in_background(hook.url, body, hook.secret)
    return writes


async def budget_changed(
    namespace: str, spec: dict[str, Any], type: str | None, raw: dict[str, Any], memo: Any
) -> None:
    """A Budget names its Tenant, not its Gateway: re-render the Tenant's Gateway."""
    tenant = (spec or {}).get("tenant")
    if type == "DELETED":
        forget(raw["metadata"].get("uid"))
    if not tenant or st.already_observed(type, raw):
        return
    gateway = memo.watched.store.tenant_gateway(namespace, tenant)
    if gateway is None:
        # Every Gateway of the namespace renders Budgets whose Tenant exists nowhere and says so in their status;
        # by the time it runs, a Tenant created together with this Budget (a watch event behind) is known.
        others = seen.live_gateways(memo.indexes, namespace)
        for other in others:
            await request_rerender(memo, namespace, other, "budgets", raw, type)
        if not others and type != "DELETED":
            gen = raw["metadata"].get("generation")
            missing = st.condition("Ready", False, "TenantNotFound", f"Tenant {tenant!r} not found in {namespace}")
            await asyncio.to_thread(
                patch_status, namespace, "budgets", raw, {"observedGeneration": gen, "conditions": [missing]}
            )
        return
    await request_rerender(memo, namespace, gateway, "budgets", raw, type)
