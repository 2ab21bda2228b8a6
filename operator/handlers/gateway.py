"""Gateway reconciliation: render, then server-side apply every child; related kinds re-render their Gateway."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import logging
import os
import threading
from collections import defaultdict
from typing import Any

import kopf
from gateway_operator import status as st
from gateway_operator.builders.common import tenant_secret_name
from gateway_operator.builders.gateway import build_children
from gateway_operator.builders.secrets import KEY_FIELD, build_tenant_key_secret, new_tenant_key
from gateway_operator.crd import models as crd
from gateway_operator.handlers import redislink
from gateway_operator.handlers.apply import apply
from gateway_operator.render import render_gateway
from kubernetes import client, config

from gateway_plugins.policy import hash_key
from gateway_plugins.policy.store import encode_document

log = logging.getLogger("kubegate.operator")
GROUP, VERSION = crd.GROUP, crd.VERSION
ROTATE_ANNOTATION = "kubegate.dev/rotate-key"
ROTATION_HANDLED = "kubegate.dev/rotation"
_api: client.ApiClient | None = None
# One reconcile per Gateway at a time: the policy revision is read-modify-written through the Gateway status.
_locks: defaultdict[tuple[str, str], threading.Lock] = defaultdict(threading.Lock)


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


def patch_status(ns: str, plural: str, obj: dict[str, Any], desired: dict[str, Any]) -> bool:
    """Merge ``desired`` into the object's status unless it is already there (then nothing is written)."""
    if not st.needs_write(obj.get("status"), desired):
        return False
    try:
        client.CustomObjectsApi(api_client()).patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            ns,
            plural,
            obj["metadata"]["name"],
            {"status": desired},
            _content_type="application/merge-patch+json",
        )
    except client.ApiException as exc:
        if exc.status != 404:  # deleted meanwhile: nothing to report on
            raise
    return True


def _ensure_tenant_key(tenant: dict[str, Any]) -> str:
    """Create the key Secret once (never overwritten, except once per rotation nonce); return the key's hash."""
    core = client.CoreV1Api(api_client())
    ns, name = tenant["metadata"]["namespace"], tenant["metadata"]["name"]
    nonce = (tenant["metadata"].get("annotations") or {}).get(ROTATE_ANNOTATION)
    try:
        secret = core.read_namespaced_secret(tenant_secret_name(name), ns)
    except client.ApiException as exc:
        if exc.status != 404:
            raise
    else:
        handled = (secret.metadata.annotations or {}).get(ROTATION_HANDLED)
        if nonce and nonce != handled:
            return _rotate_key(core, secret, nonce)
        return hash_key(base64.b64decode(secret.data[KEY_FIELD]).decode())
    key = new_tenant_key()
    try:
        core.create_namespaced_secret(ns, build_tenant_key_secret(tenant, key, rotation=nonce))
    except client.ApiException as exc:
        if exc.status != 409:
            raise
        return _ensure_tenant_key(tenant)  # another reconcile created it first: use theirs
    return hash_key(key)


def _rotate_key(core: client.CoreV1Api, secret: client.V1Secret, nonce: str) -> str:
    """Replace the key and record the nonce on the Secret; resourceVersion makes a concurrent rotation fail."""
    key = new_tenant_key()
    body = {
        "metadata": {"resourceVersion": secret.metadata.resource_version, "annotations": {ROTATION_HANDLED: nonce}},
        "data": {KEY_FIELD: base64.b64encode(key.encode()).decode()},
    }
    core.patch_namespaced_secret(secret.metadata.name, secret.metadata.namespace, body)
    log.info("rotated key Secret %s/%s", secret.metadata.namespace, secret.metadata.name)
    return hash_key(key)


def _missing_secrets(core: client.CoreV1Api, ns: str, route: dict[str, Any], cache: dict[str, Any]) -> list[str]:
    missing = []
    for dep in route["spec"].get("deployments") or []:
        ref = dep.get("apiKeySecretRef")
        if not ref:
            continue
        if ref["name"] not in cache:
            try:
                cache[ref["name"]] = core.read_namespaced_secret(ref["name"], ns).data or {}
            except client.ApiException as exc:
                if exc.status != 404:
                    raise
                cache[ref["name"]] = None
        data = cache[ref["name"]]
        if data is None:
            missing.append(f"deployment {dep['name']}: Secret {ref['name']!r} not found")
        elif ref["key"] not in data:
            missing.append(f"deployment {dep['name']}: Secret {ref['name']!r} has no key {ref['key']!r}")
    return missing


def policy_digest(policy: Any) -> str:
    return hashlib.sha256(encode_document(policy.model_copy(update={"revision": 0}), compress=False)).hexdigest()


def reconcile(ns: str, name: str) -> dict[str, Any]:
    with _locks[(ns, name)]:
        return _reconcile(ns, name)


def _reconcile(ns: str, name: str) -> dict[str, Any]:
    custom = client.CustomObjectsApi(api_client())
    core = client.CoreV1Api(api_client())
    gw = custom.get_namespaced_custom_object(GROUP, VERSION, ns, "gateways", name)
    routes_raw = [r for r in _list(ns, "modelroutes") if r["spec"]["gateway"] == name]
    tenants_raw = [t for t in _list(ns, "tenants") if t["spec"]["gateway"] == name]
    routes = [crd.ModelRoute.model_validate(o) for o in routes_raw]
    tenants = [crd.Tenant.model_validate(o) for o in tenants_raw]
    budgets = [crd.Budget.model_validate(o) for o in _list(ns, "budgets")]
    hashes = {t["metadata"]["name"]: [_ensure_tenant_key(t)] for t in tenants_raw}
    rendered = render_gateway(
        crd.Gateway.model_validate(gw), routes, tenants, budgets, tenant_key_hashes=hashes, revision=0
    )
    # The revision rises exactly when the policy's content changes: proxies only take a higher revision.
    gw_status = gw.get("status") or {}
    digest = policy_digest(rendered.policy)
    revision = int(gw_status.get("policyRevision") or 0)
    if gw_status.get("policyHash") != digest:
        revision += 1
    link = redislink.open_link(api_client(), gw)
    # A Gateway whose status was lost (re-created, restored by GitOps) must still climb above what Redis holds.
    if link.revision is not None and link.revision > revision:
        revision = link.revision + 1
    try:
        rendered = dataclasses.replace(rendered, policy=rendered.policy.model_copy(update={"revision": revision}))
        for child in build_children(gw, rendered):
            apply(api_client(), child)
        published = link.publish(rendered.policy)
    finally:
        link.close()
    message = "; ".join(f"{k}: {v}" for k, v in sorted(rendered.skipped.items())) or "all children applied"
    patch_status(
        ns,
        "gateways",
        gw,
        {
            "observedGeneration": gw["metadata"].get("generation"),
            "policyRevision": revision,
            "policyHash": digest,
            "conditions": [
                st.condition("Reconciled", True, "Applied", message),
                st.condition("PolicyPublished", *published),
            ],
        },
    )

    secrets: dict[str, Any] = {}
    for route in routes_raw:
        missing = _missing_secrets(core, ns, route, secrets)
        gen = route["metadata"].get("generation")
        desired = (
            st.ready_status(gen, False, "SecretNotFound", "; ".join(missing))
            if missing
            else st.ready_status(gen, True, "Rendered", f"in the model list of Gateway {name}")
        )
        patch_status(ns, "modelroutes", route, desired)
    for tenant in tenants_raw:
        gen = tenant["metadata"].get("generation")
        conflict = rendered.skipped.get(f"Tenant/{tenant['metadata']['name']}")
        desired = (
            st.ready_status(gen, False, "KeyConflict", conflict)
            if conflict
            else st.ready_status(gen, True, "Rendered", f"in the policy of Gateway {name}")
        )
        nonce = (tenant["metadata"].get("annotations") or {}).get(ROTATE_ANNOTATION)
        if nonce:
            desired["keyRotation"] = nonce  # the nonce handled (not a secret): later events skip the re-render
        patch_status(ns, "tenants", tenant, desired)
    return {"skipped": rendered.skipped, "modelListChecksum": rendered.model_list_checksum, "revision": revision}


def _gateway_missing(ns: str, plural: str, body: dict[str, Any], gateway: str) -> None:
    desired = st.ready_status(
        body["metadata"].get("generation"), False, "GatewayNotFound", f"Gateway {gateway!r} not found in {ns}"
    )
    patch_status(ns, plural, body, desired)


@kopf.on.event(GROUP, VERSION, "budgets")
async def budget_changed(namespace: str, spec: dict[str, Any], type: str | None, body: kopf.Body, **_: Any) -> None:
    """A Budget names its Tenant, not its Gateway: re-render the Tenant's Gateway."""
    tenant = (spec or {}).get("tenant")
    if not tenant or st.already_observed(type, dict(body)):
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
        await _rerender(namespace, gateway)


@kopf.on.resume(GROUP, VERSION, "gateways")
@kopf.on.create(GROUP, VERSION, "gateways")
@kopf.on.update(GROUP, VERSION, "gateways")
@kopf.timer(GROUP, VERSION, "gateways", interval=30, idle=10)
async def gateway_reconcile(namespace: str, name: str, patch: kopf.Patch, meta: kopf.Meta, **_: Any) -> None:
    try:
        await asyncio.to_thread(reconcile, namespace, name)
    except client.ApiException as exc:
        patch.status["conditions"] = [st.condition("Reconciled", False, "ApiError", f"HTTP {exc.status}: {exc.reason}")]
        raise kopf.TemporaryError(f"reconcile failed: HTTP {exc.status}", delay=10) from None


async def _rerender(namespace: str, gateway: str) -> bool:
    """Reconcile ``gateway``; False when it does not exist."""
    try:
        await asyncio.to_thread(reconcile, namespace, gateway)
    except client.ApiException as exc:
        if exc.status != 404:
            raise
        log.info("gateway %s/%s not found", namespace, gateway)
        return False
    return True


async def _related_changed(plural: str, namespace: str, spec: dict[str, Any], type: str | None, body: Any) -> None:
    gateway = (spec or {}).get("gateway")
    raw = dict(body)
    nonce = (raw["metadata"].get("annotations") or {}).get(ROTATE_ANNOTATION)
    pending_rotation = nonce is not None and nonce != (raw.get("status") or {}).get("keyRotation")
    if not gateway or (st.already_observed(type, raw) and not pending_rotation):
        return
    if not await _rerender(namespace, gateway) and type != "DELETED":
        await asyncio.to_thread(_gateway_missing, namespace, plural, raw, gateway)


@kopf.on.event(GROUP, VERSION, "modelroutes")
async def route_changed(namespace: str, spec: dict[str, Any], type: str | None, body: kopf.Body, **_: Any) -> None:
    await _related_changed("modelroutes", namespace, spec, type, body)


@kopf.on.event(GROUP, VERSION, "tenants")
async def tenant_changed(namespace: str, spec: dict[str, Any], type: str | None, body: kopf.Body, **_: Any) -> None:
    await _related_changed("tenants", namespace, spec, type, body)
