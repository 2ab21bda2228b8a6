"""Gateway reconciliation: render, then server-side apply every child; related kinds re-render their Gateway."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
from typing import Any

import kopf
from gateway_operator.builders.common import tenant_secret_name
from gateway_operator.builders.gateway import build_children
from gateway_operator.builders.secrets import KEY_FIELD, build_tenant_key_secret, new_tenant_key
from gateway_operator.crd import models as crd
from gateway_operator.handlers.apply import apply
from gateway_operator.render import render_gateway
from kubernetes import client, config

from gateway_plugins.policy import hash_key

log = logging.getLogger("kubegate.operator")
GROUP, VERSION = crd.GROUP, crd.VERSION
_api: client.ApiClient | None = None


def api_client() -> client.ApiClient:
    global _api
    if _api is None:
        # KUBECONFIG is read at call time (the client library reads it at import time only).
        if os.environ.get("KUBECONFIG"):
            _api = config.new_client_from_config(config_file=os.environ["KUBECONFIG"])
        else:
            config.load_incluster_config()
            _api = client.ApiClient()
    return _api


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    if os.environ.get("KUBECONFIG"):
        return kopf.login_with_kubeconfig(**kwargs)
    return kopf.login_with_service_account(**kwargs)


def _list(ns: str, plural: str) -> list[dict[str, Any]]:
    return client.CustomObjectsApi(api_client()).list_namespaced_custom_object(GROUP, VERSION, ns, plural)["items"]


def _ensure_tenant_key(tenant: dict[str, Any]) -> str:
    """Create the key Secret once (never overwritten); return the key's hash."""
    core = client.CoreV1Api(api_client())
    ns, name = tenant["metadata"]["namespace"], tenant["metadata"]["name"]
    try:
        secret = core.read_namespaced_secret(tenant_secret_name(name), ns)
        return hash_key(base64.b64decode(secret.data[KEY_FIELD]).decode())
    except client.ApiException as exc:
        if exc.status != 404:
            raise
    key = new_tenant_key()
    try:
        core.create_namespaced_secret(ns, build_tenant_key_secret(tenant, key))
    except client.ApiException as exc:
        if exc.status != 409:
            raise
        return _ensure_tenant_key(tenant)  # another reconcile created it first: use theirs
    return hash_key(key)


def reconcile(ns: str, name: str) -> dict[str, Any]:
    custom = client.CustomObjectsApi(api_client())
    gw = custom.get_namespaced_custom_object(GROUP, VERSION, ns, "gateways", name)
    routes = [crd.ModelRoute.model_validate(o) for o in _list(ns, "modelroutes")]
    tenants_raw = [t for t in _list(ns, "tenants") if t["spec"]["gateway"] == name]
    tenants = [crd.Tenant.model_validate(o) for o in tenants_raw]
    budgets = [crd.Budget.model_validate(o) for o in _list(ns, "budgets")]
    hashes = {t["metadata"]["name"]: [_ensure_tenant_key(t)] for t in tenants_raw}
    revision = int(gw["metadata"].get("generation") or 0)
    rendered = render_gateway(
        crd.Gateway.model_validate(gw), routes, tenants, budgets, tenant_key_hashes=hashes, revision=revision
    )
    for child in build_children(gw, rendered):
        apply(api_client(), child)
    return {"skipped": rendered.skipped, "modelListChecksum": rendered.model_list_checksum}


def _condition(kind: str, status: str, reason: str, message: str) -> dict[str, str]:
    return {"type": kind, "status": status, "reason": reason, "message": message[:1024]}


@kopf.on.event(GROUP, VERSION, "budgets")
async def budget_changed(namespace: str, spec: dict[str, Any], **_: Any) -> None:
    """A Budget names its Tenant, not its Gateway: re-render the Tenant's Gateway."""
    tenant = (spec or {}).get("tenant")
    if not tenant:
        return

    def _tenant_gateway() -> str | None:
        try:
            obj = client.CustomObjectsApi(api_client()).get_namespaced_custom_object(
                GROUP, VERSION, namespace, "tenants", tenant
            )
        except client.ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return obj["spec"].get("gateway")

    gateway = await asyncio.to_thread(_tenant_gateway)
    if gateway:
        await related_changed(namespace=namespace, spec={"gateway": gateway})


@kopf.on.resume(GROUP, VERSION, "gateways")
@kopf.on.create(GROUP, VERSION, "gateways")
@kopf.on.update(GROUP, VERSION, "gateways")
@kopf.timer(GROUP, VERSION, "gateways", interval=30, idle=10)
async def gateway_reconcile(namespace: str, name: str, patch: kopf.Patch, meta: kopf.Meta, **_: Any) -> None:
    generation = meta.get("generation")
    try:
        result = await asyncio.to_thread(reconcile, namespace, name)
    except client.ApiException as exc:
        patch.status["conditions"] = [_condition("Reconciled", "False", "ApiError", f"HTTP {exc.status}: {exc.reason}")]
        raise kopf.TemporaryError(f"reconcile failed: HTTP {exc.status}", delay=10) from None
    message = "; ".join(f"{k}: {v}" for k, v in sorted(result["skipped"].items())) or "all children applied"
    patch.status["conditions"] = [_condition("Reconciled", "True", "Applied", message)]
    patch.status["observedGeneration"] = generation


@kopf.on.event(GROUP, VERSION, "modelroutes")
@kopf.on.event(GROUP, VERSION, "tenants")
async def related_changed(namespace: str, spec: dict[str, Any], **_: Any) -> None:
    gateway = (spec or {}).get("gateway")
    if not gateway:
        return
    try:
        await asyncio.to_thread(reconcile, namespace, gateway)
    except client.ApiException as exc:
        if exc.status != 404:
            raise
        log.info("gateway %s/%s not found", namespace, gateway)
