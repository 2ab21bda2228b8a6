"""The operator's API client (one per process) and the reads and status writes every reconcile shares."""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from typing import Any

from gateway_operator import status as st
from gateway_operator.crd import models as crd
from gateway_operator.kube.parallel import parallel
from kubernetes import client, config

GROUP, VERSION = crd.GROUP, crd.VERSION
# Connections kept open: the reconcile and the Budget refresh each send up to kube.parallel.WORKERS requests at once.
POOL_SIZE = 20
_api: client.ApiClient | None = None
# uid -> which status fields (sorted top-level keys) -> hash of the last such document this process wrote there.
# Per set of fields: the reconcile (Ready, keys) and the Budget refresh (spend) write different parts of a Tenant's
# status, and one writer's marker must not make the other's already-sent write look new (and be sent twice).
_written: dict[str, dict[tuple[str, ...], int]] = {}
_written_lock = threading.Lock()
# One tuple per distinct set of status fields, shared by every object's markers.
_parts: dict[tuple[str, ...], tuple[str, ...]] = {}


def api_client() -> client.ApiClient:
    global _api
    if _api is None:
        configuration = client.Configuration()
        # KUBECONFIG is read at call time (the client library reads it at import time only).
        if os.environ.get("KUBECONFIG"):
            config.load_kube_config(config_file=os.environ["KUBECONFIG"], client_configuration=configuration)
        else:
            config.load_incluster_config(client_configuration=configuration)
        configuration.connection_pool_maxsize = POOL_SIZE
        _api = client.ApiClient(configuration)
    return _api


def reset() -> None:
    """Forget the client: the next call reads KUBECONFIG again (tests switch identities between operator runs)."""
    global _api
    _api = None


def list_objects(ns: str, plural: str) -> list[dict[str, Any]]:
    return client.CustomObjectsApi(api_client()).list_namespaced_custom_object(GROUP, VERSION, ns, plural)["items"]


@dataclass(frozen=True, slots=True)
class StatusWrite:
    ns: str
    plural: str
    obj: dict[str, Any]
    status: dict[str, Any]  # stamped
    marker: tuple[tuple[str, ...], int]


def status_write(ns: str, plural: str, obj: dict[str, Any], desired: dict[str, Any]) -> StatusWrite | None:
    """The write that puts ``desired`` into the object's status, or None when it is already there.

    ``obj`` may be a little behind (an index entry whose update is still queued): the last status this process
    wrote to each object is remembered, so the same write is not sent twice.
    """
    uid = (obj.get("metadata") or {}).get("uid")
    parts = tuple(sorted(desired))
    marker = (_parts.setdefault(parts, parts), hash(json.dumps(desired, sort_keys=True, default=str)))
    if uid is not None:
        with _written_lock:
            if _written.get(uid, {}).get(marker[0]) == marker[1]:
                return None
    stamped = st.stamp(obj.get("status"), desired, st.now())
    if not st.needs_write(obj.get("status"), stamped):
        remember(uid, marker)
        return None
    return StatusWrite(ns, plural, obj, stamped, marker)


def send_status(write: StatusWrite) -> bool:
    """Send a status write (merge patch); an object deleted meanwhile is nothing to report on."""
    try:
        response = client.CustomObjectsApi(api_client()).patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            write.ns,
            write.plural,
            write.obj["metadata"]["name"],
            {"status": write.status},
            _content_type="application/merge-patch+json",
            # The object the server returns is not used: not parsed (10,000 of them on a first render).
            _preload_content=False,
        )
        response.read()  # read to the end, so the connection goes back to the pool
    except client.ApiException as exc:
        if exc.status != 404:
            raise
        return True
    remember((write.obj.get("metadata") or {}).get("uid"), write.marker)
    return True


def send_statuses(writes: list[StatusWrite]) -> int:
    """Send the writes several at a time (thousands on a first render); returns how many were sent."""
    return sum(parallel(send_status, writes))


def patch_status(ns: str, plural: str, obj: dict[str, Any], desired: dict[str, Any]) -> bool:
    """Merge ``desired`` into the object's status unless it is already there (then nothing is written)."""
    write = status_write(ns, plural, obj, desired)
    return send_status(write) if write is not None else False


def remember(uid: str | None, marker: tuple[tuple[str, ...], int]) -> None:
    if uid is not None:
        with _written_lock:
            _written.setdefault(uid, {})[marker[0]] = marker[1]


def forget(uid: str | None) -> None:
    """The object is gone: drop what was remembered of it."""
    with _written_lock:
        _written.pop(uid, None)
