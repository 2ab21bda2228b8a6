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
from typing import Any

from gateway_operator.handlers.apply import apply, object_path
from kubernetes import client

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
    method, url, headers, body, _ = api.param_serialize(
        "GET", object_path(obj), header_params={"Accept": "application/json"}, auth_settings=["BearerToken"]
    )
    response = api.call_api(method, url, header_params=headers, body=body)
    response.read()
    if response.status == 404:
        return None
    if not 200 <= response.status < 300:
        raise client.ApiException(http_resp=response)
    live = json.loads(response.data)
    live.setdefault("kind", obj["kind"])
    return live


def sync(api: client.ApiClient, children: list[dict[str, Any]], *, verify: bool) -> list[str]:
    """Apply what changed (and, with ``verify``, what drifted); returns ``Kind/name`` of each object written."""
    written = []
    for obj in children:
        key = object_path(obj)
        want = digest(obj)
        with _lock:
            known = _applied.get(key)
        if known is not None and known[0] == want:
            if not verify:
                continue
            live = _read(api, obj)
            if live is not None and marker(live) == known[1]:
                continue
        live = apply(api, obj)
        live.setdefault("kind", obj["kind"])
        with _lock:
            _applied[key] = (want, marker(live))
        written.append(f"{obj['kind']}/{obj['metadata']['name']}")
    return written
