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


def apply(api: client.ApiClient, obj: dict[str, Any]) -> dict[str, Any]:
    """Server-side apply ``obj`` (force: the operator owns its children's fields); returns the live object."""
    method, url, headers, body, _ = api.param_serialize(
        "PATCH",
        object_path(obj),
        query_params=[("fieldManager", FIELD_MANAGER), ("force", "true")],
        header_params={"Content-Type": "application/apply-patch+yaml", "Accept": "application/json"},
        body=json.dumps(obj),
        auth_settings=["BearerToken"],
    )
    response = api.call_api(method, url, header_params=headers, body=body)
    response.read()
    if not 200 <= response.status < 300:
        raise client.ApiException(http_resp=response)
    return json.loads(response.data)
