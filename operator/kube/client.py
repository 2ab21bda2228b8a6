"""The operator's API client (one per process) and the reads and status writes every reconcile shares."""

from __future__ import annotations

import os
from typing import Any

from gateway_operator import status as st
from gateway_operator.crd import models as crd
from kubernetes import client, config

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


def reset() -> None:
    """Forget the client: the next call reads KUBECONFIG again (tests switch identities between operator runs)."""
    global _api
    _api = None


def list_objects(ns: str, plural: str) -> list[dict[str, Any]]:
    return client.CustomObjectsApi(api_client()).list_namespaced_custom_object(GROUP, VERSION, ns, plural)["items"]


def patch_status(ns: str, plural: str, obj: dict[str, Any], desired: dict[str, Any]) -> bool:
    """Merge ``desired`` into the object's status unless it is already there (then nothing is written)."""
    desired = st.stamp(obj.get("status"), desired, st.now())
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
