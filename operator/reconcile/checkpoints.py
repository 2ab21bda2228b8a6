"""Audit checkpoints: copy each Gateway's verified audit chain heads out of Redis into a ConfigMap, periodically.

A Redis writer can delete the tail of a chain and move its head back consistently; it cannot move this
ConfigMap, and cannot forge a head the operator would copy (heads are tagged with the Gateway's audit key,
which the operator generated and Redis never sees). ``kubegate audit verify --checkpoints`` compares against it.
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
from gateway_operator.kube.client import api_client
from gateway_operator.reconcile import redislink
from kubernetes import client

from gateway_plugins.policy.audit.chain import decode_key
from gateway_plugins.policy.audit.checkpoint import CHECKPOINTS_KEY, advance, dumps
from gateway_plugins.policy.keys import GatewayKeys, audit_heads

log = logging.getLogger("kubegate.operator")
INTERVAL_ENV = "KUBEGATE_AUDIT_CHECKPOINT_SECONDS"
DEFAULT_INTERVAL = 60.0


def interval() -> float:
    return float(os.environ.get(INTERVAL_ENV) or DEFAULT_INTERVAL)


def _read_current(core: client.CoreV1Api, ns: str, name: str) -> dict[str, str]:
    try:
        cm = core.read_namespaced_config_map(checkpoints_name(name), ns)
    except client.ApiException as exc:
        if exc.status == 404:
            return {}
        raise
    try:
        data = json.loads((cm.data or {}).get(CHECKPOINTS_KEY) or "{}")
    except ValueError:
        data = {}
    return data if isinstance(data, dict) else {}


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
    conn = redislink.connect(url)
    try:
        heads = conn.hgetall(audit_heads(GatewayKeys(ns, name).audit_stream))
    except (redis.RedisError, OSError) as exc:
        log.info("audit checkpoint of %s/%s: Redis unreachable (%s)", ns, name, type(exc).__name__)
        return []
    finally:
        conn.close()
    current = _read_current(core, ns, name)
    updated, refused = advance(current, heads, key)
    if updated != current:
        apply(api_client(), build_checkpoint_configmap(gw, dumps(updated)))
    for problem in refused:
        log.warning("audit checkpoint of %s/%s refused a head: %s", ns, name, problem)
    return refused


async def checkpoint_gateway(ns: str, name: str) -> Any:
    return await asyncio.to_thread(checkpoint, ns, name)
