"""Server-side apply of built children: an unchanged object is a no-op on the API server (no new resourceVersion)."""

from __future__ import annotations

import json
from typing import Any

from kubernetes import client

FIELD_MANAGER = "kubegate-operator"

_PLURALS = {
    ("v1", "ConfigMap"): ("configmaps", "/api/v1"),
    ("v1", "Service"): ("services", "/api/v1"),
    ("v1", "Secret"): ("secrets", "/api/v1"),
    ("apps/v1", "Deployment"): ("deployments", "/apis/apps/v1"),
    ("apps/v1", "StatefulSet"): ("statefulsets", "/apis/apps/v1"),
    ("networking.k8s.io/v1", "NetworkPolicy"): ("networkpolicies", "/apis/networking.k8s.io/v1"),
    ("autoscaling/v2", "HorizontalPodAutoscaler"): ("horizontalpodautoscalers", "/apis/autoscaling/v2"),
    ("policy/v1", "PodDisruptionBudget"): ("poddisruptionbudgets", "/apis/policy/v1"),
}


def object_path(obj: dict[str, Any]) -> str:
    plural, prefix = _PLURALS[(obj["apiVersion"], obj["kind"])]
    meta = obj["metadata"]
    return f"{prefix}/namespaces/{meta['namespace']}/{plural}/{meta['name']}"


def request(
    api: client.ApiClient,
    method: str,
    path: str,
    *,
    query: list[tuple[str, str]] | None = None,
    body: Any = None,
    content_type: str | None = None,
    missing_ok: bool = False,
) -> dict[str, Any] | None:
    """One raw API request by path (the typed clients have no generic get/apply/delete by kind); the decoded JSON
    answer, None for a 404 when ``missing_ok``, ApiException (with the server's Status) for any other failure."""
    headers = {"Accept": "application/json"}
    if content_type is not None:
        headers["Content-Type"] = content_type
    m, url, headers, serialized, _ = api.param_serialize(
        method, path, query_params=query or [], header_params=headers, body=body, auth_settings=["BearerToken"]
    )
    response = api.call_api(m, url, header_params=headers, body=serialized)
    response.read()
    if response.status == 404 and missing_ok:
        return None
    if not 200 <= response.status < 300:
        raise client.ApiException(http_resp=response)
    return json.loads(response.data)


def apply(api: client.ApiClient, obj: dict[str, Any]) -> dict[str, Any]:
    """Server-side apply ``obj`` (force: the operator owns its children's fields); returns the live object."""
    live = request(
        api,
        "PATCH",
        object_path(obj),
        query=[("fieldManager", FIELD_MANAGER), ("force", "true")],
        body=json.dumps(obj),
        content_type="application/apply-patch+yaml",
    )
    assert live is not None
    return live
