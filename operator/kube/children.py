"""Apply a Gateway's children, writing only those whose desired state changed or that drifted.

A server-side apply of an unchanged object leaves etcd alone but is still a PATCH request: one per child per
reconcile is what made a single Tenant change cost the whole child set. This module remembers, per process, the
digest of what it applied and the live object's marker, so a re-render applies only what changed; a ``verify``
pass (resync, resume, direct call) reads each child and re-applies the ones deleted or edited by hand.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from typing import Any

from gateway_operator.kube.apply import apply, object_path, request
from kubernetes import client
from kubernetes.utils import parse_quantity

# Kinds whose generation moves only with the spec: status churn (rollouts, PDB counts) is not drift.
_GENERATION_KINDS = {"Deployment", "StatefulSet", "PodDisruptionBudget", "NetworkPolicy"}
_applied: dict[str, tuple[str, str]] = {}
_lock = threading.Lock()


def digest(obj: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def marker(live: dict[str, Any]) -> str:
    """What changes when someone else edits the object: generation where the API keeps one, else resourceVersion."""
    meta = live.get("metadata") or {}
    if live.get("kind") in _GENERATION_KINDS and meta.get("generation"):
        return f"g{meta['generation']}"
    return f"r{meta.get('resourceVersion')}"


def _read(api: client.ApiClient, obj: dict[str, Any]) -> dict[str, Any] | None:
    live = request(api, "GET", object_path(obj), missing_ok=True)
    if live is not None:
        live.setdefault("kind", obj["kind"])
    return live


def forget(path: str) -> None:
    """Drop what is remembered of the child at ``path`` (it was deleted): the next sync applies it afresh."""
    with _lock:
        _applied.pop(path, None)


def api_message(exc: client.ApiException) -> str:
    """The API server's own explanation (a Status ``message``), not just ``HTTP 500``."""
    try:
        message = json.loads(exc.body or "{}").get("message")
    except (ValueError, AttributeError):
        message = None
    return f"HTTP {exc.status}: {message or exc.reason}"


class ChildRejected(Exception):
    """Children the API server refused; the others were applied. ``failed``: ``Kind/name`` -> API message."""

    def __init__(self, written: list[str], failed: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in sorted(failed.items())))
        self.written, self.failed = written, failed


def sync(api: client.ApiClient, children: list[dict[str, Any]], *, verify: bool) -> list[str]:
    """Apply what changed (and, with ``verify``, what drifted); returns ``Kind/name`` of each object written.

    A child the API server refuses (422, or an apply it cannot even type, such as an invalid quantity) does not
    stop the others: they are applied, then ChildRejected names what was refused and why.
    """
    written: list[str] = []
    failed: dict[str, str] = {}
    for obj in children:
        try:
            _sync_one(api, obj, verify, written)
        except client.ApiException as exc:
            if exc.status in (401, 403):
                raise  # the operator's own credentials or RBAC: nothing about this child
            failed[f"{obj['kind']}/{obj['metadata']['name']}"] = api_message(exc)
    if failed:
        raise ChildRejected(written, failed)
    return written


def _sync_one(api: client.ApiClient, obj: dict[str, Any], verify: bool, written: list[str]) -> None:
    key = object_path(obj)
    want = digest(obj)
    with _lock:
        known = _applied.get(key)
    if known is not None and known[0] == want:
        if not verify:
            return
        live = _read(api, obj)
        if live is not None and marker(live) == known[1]:
            return
    try:
        live = apply(api, obj)
    except client.ApiException as exc:
        if obj["kind"] != "StatefulSet" or exc.status != 422:
            raise
        live = _apply_statefulset(api, obj, exc)
    live.setdefault("kind", obj["kind"])
    with _lock:
        _applied[key] = (want, marker(live))
    written.append(f"{obj['kind']}/{obj['metadata']['name']}")


# StatefulSet fields the API server never lets change, with their defaults. A change of them (the managed Redis made
# highly available: its own governing Service, pods started in parallel) needs a new StatefulSet.
_IDENTITY_DEFAULTS = {"serviceName": None, "podManagementPolicy": "OrderedReady"}
ORPHAN_DELETE_TIMEOUT_S = 30.0


def _identity_changed(live: dict[str, Any], obj: dict[str, Any]) -> bool:
    return any(
        (live.get("spec") or {}).get(field, default) != obj["spec"].get(field, default)
        for field, default in _IDENTITY_DEFAULTS.items()
    )


def _apply_statefulset(api: client.ApiClient, obj: dict[str, Any], refused: client.ApiException) -> dict[str, Any]:
    live = _read(api, obj)
    if live is not None and _identity_changed(live, obj):
        return _recreate_orphaning_pods(api, obj, live)
    return _apply_keeping_claims(api, obj, refused)


def _recreate_orphaning_pods(api: client.ApiClient, obj: dict[str, Any], live: dict[str, Any]) -> dict[str, Any]:
    """Delete the StatefulSet but not its pods (``kubectl delete --cascade=orphan``), then apply the new one: it
    adopts the running pods and rolls them one by one, and its claims keep their names (same StatefulSet name),
    so the data stays. Volume sizes are kept from the old claim templates and grown in place as usual."""
    path = object_path(obj)
    body = {"propagationPolicy": "Orphan", "preconditions": {"uid": live["metadata"]["uid"]}}
    request(api, "DELETE", path, body=body, content_type="application/json", missing_ok=True)
    deadline = time.monotonic() + ORPHAN_DELETE_TIMEOUT_S
    while request(api, "GET", path, missing_ok=True) is not None:  # the garbage collector removes the finalizer
        if time.monotonic() > deadline:
            raise client.ApiException(status=422, reason=f"{path}: still deleting (orphaning its pods); retried")
        time.sleep(0.2)
    forget(path)
    created = apply(api, obj)
    _grow_claims(api, obj, int(obj["spec"].get("replicas", 1)))
    return created


def _storage(template: dict[str, Any]) -> str | None:
    return ((template.get("spec") or {}).get("resources") or {}).get("requests", {}).get("storage")


def _shape(template: dict[str, Any], wanted: dict[str, Any]) -> tuple:
    """What a claim template is besides its size: name, and the spec fields ``wanted`` sets."""
    spec = template.get("spec") or {}
    fields = sorted(k for k in (wanted.get("spec") or {}) if k != "resources")
    return template["metadata"]["name"], tuple((k, repr(spec.get(k))) for k in fields)


def _apply_keeping_claims(api: client.ApiClient, obj: dict[str, Any], refused: client.ApiException) -> dict[str, Any]:
    """A StatefulSet whose volumeClaimTemplates changed (the managed Redis's volume, sized from the Gateway's caps):
    the API server refuses any change to them. Applied with the live templates instead, then each existing claim
    asking for less than the new template is expanded in place (PVCs grow, never shrink; the StorageClass must
    allow expansion). A claim that cannot grow is refused naming it: the rest of the StatefulSet is applied."""
    live = _read(api, obj)
    templates = (live or {}).get("spec", {}).get("volumeClaimTemplates")
    wanted = obj["spec"].get("volumeClaimTemplates")
    if not templates or not wanted:
        raise refused
    keep = [{k: v for k, v in t.items() if k != "status"} for t in templates]
    if [_shape(t, w) for t, w in zip(keep, wanted, strict=False)] != [_shape(w, w) for w in wanted]:
        raise refused  # more than a size changed (a StorageClass, access modes): the API server's message stands
    applied = apply(api, {**obj, "spec": {**obj["spec"], "volumeClaimTemplates": keep}})
    _grow_claims(api, obj, max(int(obj["spec"].get("replicas", 1)), int(live["spec"].get("replicas") or 0)))
    return applied


def _grow_claims(api: client.ApiClient, obj: dict[str, Any], replicas: int) -> None:
    name, ns = obj["metadata"]["name"], obj["metadata"]["namespace"]
    for template in obj["spec"].get("volumeClaimTemplates") or []:
        size = _storage(template)
        if size is None:
            continue
        for ordinal in range(replicas):
            claim = f"{template['metadata']['name']}-{name}-{ordinal}"
            _expand_claim(api, ns, claim, size)


def _expand_claim(api: client.ApiClient, ns: str, claim: str, size: str) -> None:
    path = f"/api/v1/namespaces/{ns}/persistentvolumeclaims/{claim}"
    pvc = request(api, "GET", path, missing_ok=True)
    if pvc is None:
        return  # created from the (kept) template when its pod first starts
    current = _storage(pvc)
    if current is not None and parse_quantity(current) >= parse_quantity(size):
        return
    body = {"spec": {"resources": {"requests": {"storage": size}}}}  # a dict: the client encodes merge patches
    try:
        request(api, "PATCH", path, body=body, content_type="application/merge-patch+json")
    except client.ApiException as exc:
        message = (
            f"PersistentVolumeClaim {claim} ({current}) cannot grow to {size} ({api_message(exc)}): expand it by "
            "hand or use a StorageClass with allowVolumeExpansion"
        )
        # 422 whatever the cause (403 from the resize admission): a refused child, not the operator's own RBAC.
        raise client.ApiException(status=422, reason=message) from exc
