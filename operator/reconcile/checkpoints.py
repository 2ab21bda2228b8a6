"""Audit checkpoints: copy each Gateway's verified audit chain heads out of Redis into a ConfigMap, periodically.

A Redis writer can delete the tail of a chain and move its head back consistently; it cannot move this
ConfigMap, and cannot forge a head the operator would copy (heads are tagged with the Gateway's audit key,
which the operator generated and Redis never sees). ``kubegate audit verify --checkpoints`` compares against it.

The same round extends the Gateway's audit transparency log and signs its checkpoint (``reconcile.auditlog``),
written to the same ConfigMap: ``kubegate audit prove`` / ``verify --public-key`` need only the public key.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
from typing import Any

import redis
from gateway_operator.builders.common import audit_key_secret_name
from gateway_operator.builders.configmaps import build_checkpoint_configmap, checkpoints_name
from gateway_operator.builders.trust import AUDIT_KEY_FIELD
from gateway_operator.crd import models as crd
from gateway_operator.kube.apply import apply
from gateway_operator.kube.client import api_client, patch_status
from gateway_operator.reconcile import auditexport, auditlog, audits3, redislink
from kubernetes import client

from gateway_plugins.policy.audit.chain import decode_key
from gateway_plugins.policy.audit.checkpoint import CHECKPOINTS_KEY, advance, dumps
from gateway_plugins.policy.keys import GatewayKeys, audit_heads

log = logging.getLogger("kubegate.operator")
INTERVAL_ENV = "KUBEGATE_AUDIT_CHECKPOINT_SECONDS"
DEFAULT_INTERVAL = 60.0


def interval() -> float:
    return float(os.environ.get(INTERVAL_ENV) or DEFAULT_INTERVAL)


def _read_data(core: client.CoreV1Api, ns: str, name: str) -> dict[str, str]:
    try:
        cm = core.read_namespaced_config_map(checkpoints_name(name), ns)
    except client.ApiException as exc:
        if exc.status == 404:
            return {}
        raise
    return dict(cm.data or {})


def _heads(data: dict[str, str]) -> dict[str, str]:
    try:
        heads = json.loads(data.get(CHECKPOINTS_KEY) or "{}")
    except ValueError:
        heads = {}
    return heads if isinstance(heads, dict) else {}


def checkpoint(ns: str, name: str) -> list[str]:
    """One round for one Gateway; returns the refusals (forged or rolled-back heads), also logged."""
    core = client.CoreV1Api(api_client())
    gw = client.CustomObjectsApi(api_client()).get_namespaced_custom_object(
        crd.GROUP, crd.VERSION, ns, "llmgateways", name
    )
    try:
        secret = core.read_namespaced_secret(audit_key_secret_name(name), ns)
        key = decode_key(base64.b64decode((secret.data or {})[AUDIT_KEY_FIELD]))
        url = redislink.redis_url(api_client(), gw)
    except (client.ApiException, KeyError, redislink.RedisUnavailable) as exc:
        log.info("audit checkpoint of %s/%s skipped: %s", ns, name, type(exc).__name__)
        return []
    data = _read_data(core, ns, name)
    note_signer = auditlog.signer(core, gw)
    stream = GatewayKeys(ns, name).audit_stream
    conn = redislink.connect(url)
    log_data: dict[str, str] = {}
    stopped = None
    try:
        heads = conn.hgetall(audit_heads(stream))
        witnesses = auditlog.witnesses_of(gw)
        if note_signer is not None:
            log_data, stopped = auditlog.log_round(
                conn, stream, key, note_signer, data, witnesses[0] if witnesses else None
            )
    except (redis.RedisError, OSError) as exc:
        log.info("audit checkpoint of %s/%s: Redis unreachable (%s)", ns, name, type(exc).__name__)
        return []
    finally:
        conn.close()
    current = _heads(data)
    updated, refused = advance(current, heads, key)
    desired = {**data, **log_data, CHECKPOINTS_KEY: dumps(updated)}
    if desired != data and (updated or log_data):
        apply(api_client(), build_checkpoint_configmap(gw, desired))
    status: dict[str, Any] = {}
    if witnesses is not None:
        status["auditWitnesses"] = auditlog.witnessed_status(desired, witnesses)
    # After the ConfigMap is stored: a segment only ever carries a checkpoint that is kept.
    exported = _export(gw, url, stream, desired)
    if exported is not None:
        status["auditExport"] = exported
    if status:
        patch_status(ns, "llmgateways", gw, status)
    for problem in refused:
        log.warning("audit checkpoint of %s/%s refused a head: %s", ns, name, problem)
    if stopped:
        log.warning("audit log of %s/%s: %s", ns, name, stopped)
        refused = [*refused, f"log: {stopped}"]
    return refused


def _export(gw: dict[str, Any], url: str, stream: str, data: dict[str, str]) -> dict[str, Any] | None:
    """One export round to each configured destination; the Gateway's ``status.auditExport`` (None: export off)."""
    ns, name = gw["metadata"]["namespace"], gw["metadata"]["name"]
    spec = ((gw.get("spec") or {}).get("audit") or {}).get("export") or {}
    dests: dict[str, auditexport.Opener] = {}
    if spec.get("enabled"):
        dests[auditexport.VOLUME] = lambda: auditexport.volume(ns, name)
    if spec.get("s3"):
        dests[auditexport.S3] = lambda: audits3.bucket(client.CoreV1Api(api_client()), gw, spec["s3"])
    conn = redislink.connect(url)
    try:
        if not dests:
            auditexport.disable(conn, stream)
            return None
        status = auditexport.export_all(conn, stream, data, dests)
    except (redis.RedisError, OSError) as exc:
        log.warning("audit export of %s/%s failed (%s: %s); retried next round", ns, name, type(exc).__name__, exc)
        return None
    finally:
        conn.close()
    if auditexport.S3 in status:
        status[auditexport.S3]["bucket"] = spec["s3"]["bucket"]
    return status


async def checkpoint_gateway(ns: str, name: str) -> Any:
    return await asyncio.to_thread(checkpoint, ns, name)
