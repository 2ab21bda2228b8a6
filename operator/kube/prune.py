"""Delete a Gateway's children it no longer renders.

A child stops being rendered when its Gateway changes (``autoscaling.enabled: false`` leaves an HPA that would keep
scaling the Deployment; Redis made external leaves the StatefulSet and its Service; NetworkPolicies turned off) or
when an upgrade renders a different kind (the managed Redis was a Deployment before it was a StatefulSet). Only
objects carrying the Gateway's label AND a controller reference to this very Gateway (its uid) are candidates, so
nothing a user labelled by hand is touched. ConfigMaps and Secrets are never pruned: they hold keys, audit
checkpoints and the last good policy; PersistentVolumeClaims are not ours to delete (the Redis data).
"""

from __future__ import annotations

from typing import Any

from gateway_operator.builders.common import LABEL_GATEWAY
from gateway_operator.kube import children
from gateway_operator.kube.apply import object_path, request
from kubernetes import client

# (apiVersion, kind, collection path under the namespace)
PRUNABLE: tuple[tuple[str, str, str], ...] = (
    ("apps/v1", "Deployment", "/apis/apps/v1/namespaces/{ns}/deployments"),
    ("apps/v1", "StatefulSet", "/apis/apps/v1/namespaces/{ns}/statefulsets"),
    ("v1", "Service", "/api/v1/namespaces/{ns}/services"),
    ("autoscaling/v2", "HorizontalPodAutoscaler", "/apis/autoscaling/v2/namespaces/{ns}/horizontalpodautoscalers"),
    ("policy/v1", "PodDisruptionBudget", "/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets"),
    ("networking.k8s.io/v1", "NetworkPolicy", "/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies"),
)


def stale_children(gateway: dict[str, Any], desired: list[dict[str, Any]], live: list[dict[str, Any]]) -> list[dict]:
    """The objects of ``live`` this Gateway controls but no longer renders (pure: the decision, tested alone)."""
    uid = gateway["metadata"]["uid"]
    want = {(o["kind"], o["metadata"]["name"]) for o in desired}
    stale = []
    for obj in live:
        meta = obj.get("metadata") or {}
        if (obj.get("kind"), meta.get("name")) in want:
            continue
        owners = meta.get("ownerReferences") or []
        if any(ref.get("controller") and ref.get("uid") == uid for ref in owners):
            stale.append(obj)
    return stale


def list_children(api: client.ApiClient, gateway: dict[str, Any]) -> list[dict[str, Any]]:
    ns, name = gateway["metadata"]["namespace"], gateway["metadata"]["name"]
    found: list[dict[str, Any]] = []
    for api_version, kind, collection in PRUNABLE:
        listed = request(api, "GET", collection.format(ns=ns), query=[("labelSelector", f"{LABEL_GATEWAY}={name}")])
        items = (listed or {}).get("items") or []
        for item in items:
            # List items carry no kind/apiVersion: put them back so the object is addressable on its own.
            found.append({**item, "apiVersion": api_version, "kind": kind})
    return found


def prune(api: client.ApiClient, gateway: dict[str, Any], desired: list[dict[str, Any]]) -> list[str]:
    """Delete what the Gateway controls but no longer renders; returns ``Kind/name`` of each object deleted."""
    deleted = []
    for obj in stale_children(gateway, desired, list_children(api, gateway)):
        obj["metadata"].setdefault("namespace", gateway["metadata"]["namespace"])
        path = object_path(obj)
        # A 404: already gone (the garbage collector, a user).
        request(api, "DELETE", path, query=[("propagationPolicy", "Background")], missing_ok=True)
        children.forget(path)  # rendered again later, it must be applied again, not skipped as unchanged
        deleted.append(f"{obj['kind']}/{obj['metadata']['name']}")
    return deleted


# Per Gateway, the child set last pruned against: an event-driven re-render that renders the same set has nothing to
# prune and makes no request; a changed set (or a verify pass: resync, resume) lists and prunes.
_pruned: dict[tuple[str, str], frozenset[tuple[str, str]]] = {}


def prune_changed(api: client.ApiClient, gateway: dict[str, Any], desired: list[dict[str, Any]], *, verify: bool):
    meta = gateway["metadata"]
    key = (meta["namespace"], meta["name"])
    names = frozenset((o["kind"], o["metadata"]["name"]) for o in desired)
    if not verify and _pruned.get(key) == names:
        return []
    deleted = prune(api, gateway, desired)
    _pruned[key] = names
    return deleted
