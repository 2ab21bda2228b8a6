"""Proxy Deployment, Service, HPA and PodDisruptionBudget of a Gateway."""

from __future__ import annotations

import math
from typing import Any

from gateway_operator.builders.common import (
    audit_key_secret_name,
    config_name,
    labels,
    metadata,
    pii_secret_name,
    policy_name,
    proxy_name,
    redis_secret_name,
    restricted_security_context,
    selector,
)
from gateway_operator.builders.configmaps import CONFIG_KEY, POLICY_KEY
from gateway_operator.builders.redis_address import external_address
from gateway_operator.builders.redis_ha import sentinel_address
from gateway_operator.builders.secrets import PII_HASH_KEY_FIELD
from gateway_operator.builders.trust import AUDIT_KEY_FIELD, REDIS_PASSWORD_FIELD
from gateway_operator.crd import models as crd
from gateway_operator.crd.core import OPERATOR_MOUNTS, REDIS_CA_FILE, REDIS_CLIENT_CERT_FILE, REDIS_CLIENT_KEY_FILE
from kubernetes.utils.quantity import parse_quantity
from pydantic import BaseModel

from gateway_plugins.policy import proxy_defaults

# gateway_plugins.pii.transform reads it (named here: the operator imports no PII code).
HASH_KEY_ENV = "KUBEGATE_PII_HASH_KEY"
CHECKSUM_ANNOTATION = "kubegate.dev/checksum-models"
# Prometheus multiprocess mode: every worker writes its series here and /metrics adds them up.
MULTIPROC_DIR = OPERATOR_MOUNTS["prometheus"]
# A few small mmap'ed files per worker process; memory-backed, so it counts against the pod's memory.
MULTIPROC_SIZE_LIMIT = "64Mi"
# /metrics on its own port: the Service tenants reach never exposes it (gateway_plugins.metrics_server).
METRICS_PORT = 9464
MAX_WORKERS = 64  # spec.workers' bound
# images/proxy.Dockerfile: `USER 65532:65532` (tests/helm/test_static.py keeps the two equal).
PROXY_UID = PROXY_GID = 65532


def proxy_security_context() -> dict[str, Any]:
    """As strict as the operator's pod. The root filesystem is read-only: as UID 65532, with every file of the image
    owned by root, the proxy could only ever write to world-writable directories; /tmp (kubegate's audit spool,
    Python temp files) and the multiprocess metrics directory are emptyDirs. LiteLLM writes nothing else in the
    configuration kubegate renders: no database (so no prisma), the packaged UI served in place (no
    LITELLM_NON_ROOT, server_root_path "/"). tests/operator/test_proxy_read_only_root.py runs a real proxy with
    only this Deployment's emptyDirs writable."""
    return restricted_security_context(PROXY_UID, PROXY_GID)


def container_security_context(pod: crd.PodSpec) -> dict[str, Any]:
    """The restricted default, each field spec.pod.containerSecurityContext sets replacing the default's (a platform
    may need its own runAsUser range or SELinux type; whoever may set spec.image may run anything anyway)."""
    ours = proxy_security_context()
    if pod.container_security_context is None:
        return ours
    return {**ours, **_dump(pod.container_security_context)}


def _dump(model: BaseModel) -> dict[str, Any]:
    """A typed core/v1 piece as the API takes it: its own names, unset fields absent (not null)."""
    return model.model_dump(by_alias=True, exclude_none=True)


def tracing_env(tracing: crd.TracingSpec, gateway: str, namespace: str) -> dict[str, str]:
    """The standard OpenTelemetry variables gateway_plugins.tracing reads (the SDK's own names, so a platform's
    usual OTEL_* conventions, e.g. OTEL_BSP_* in spec.pod.env, apply as well)."""
    return {
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": tracing.otlp_endpoint.rstrip("/") + "/v1/traces",
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf",
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": repr(float(tracing.sample_ratio)),
        "OTEL_SERVICE_NAME": proxy_name(gateway),
        "OTEL_RESOURCE_ATTRIBUTES": f"k8s.namespace.name={namespace},kubegate.gateway={gateway}",
    }


def _env(
    spec: crd.LLMGatewaySpec,
    gateway: str,
    namespace: str,
    api_key_env: dict[str, crd.SecretKeyRef],
    policy_public_key: str,
    master_key_sha256: str | None = None,
) -> list[dict[str, Any]]:
    """Plain values first, then Secret references, each sorted by name: the same spec always yields the same
    list, so an unchanged reconcile has nothing to write and pods never roll on a reordering."""
    plain: dict[str, str] = {
        # The settings `kubegate dev` runs the proxy with: one source for both (gateway_plugins.policy.proxy_defaults).
        **proxy_defaults.ENV,
        "KUBEGATE_GATEWAY": gateway,
        "KUBEGATE_NAMESPACE": namespace,
        "KUBEGATE_POLICY_FILE": f"{OPERATOR_MOUNTS['policy']}/{POLICY_KEY}",
        # Public: in the pod spec, which only those who may change the Deployment can alter (not Redis writers,
        # not ConfigMap writers), so it anchors what the proxy trusts.
        "KUBEGATE_POLICY_PUBLIC_KEY": policy_public_key,
        "KUBEGATE_METRICS_PORT": str(METRICS_PORT),
        "KUBEGATE_AUDIT_STREAM_MAXLEN": str(spec.audit.stream_max_len),
        "KUBEGATE_AUDIT_SPOOL_MAX": str(spec.audit.spool_max_records),
    }
    if proxy_workers(spec) > 1:
        plain["PROMETHEUS_MULTIPROC_DIR"] = MULTIPROC_DIR
    refs = dict(api_key_env)
    if spec.tracing is not None:
        plain.update(tracing_env(spec.tracing, gateway, namespace))
        if spec.tracing.headers_secret_ref is not None:
            refs["OTEL_EXPORTER_OTLP_TRACES_HEADERS"] = spec.tracing.headers_secret_ref
    refs["KUBEGATE_AUDIT_KEY"] = crd.SecretKeyRef(name=audit_key_secret_name(gateway), key=AUDIT_KEY_FIELD)
    refs[HASH_KEY_ENV] = crd.SecretKeyRef.model_construct(name=pii_secret_name(gateway), key=PII_HASH_KEY_FIELD)
    if spec.master_key_secret_ref is not None and master_key_sha256 is not None:
        # The front door (gateway_plugins.contract.front_door) compares a bearer token's hash with this one to
        # open LiteLLM's admin routes; LiteLLM itself checks the key against LITELLM_MASTER_KEY.
        plain["KUBEGATE_MASTER_KEY_SHA256"] = master_key_sha256
        refs["LITELLM_MASTER_KEY"] = spec.master_key_secret_ref
    address = external_address(spec.redis)
    if address is not None or (spec.redis.mode == "external" and spec.redis.url_secret_ref is not None):
        if address is not None:
            plain["KUBEGATE_REDIS_URL"] = address  # sentinels or seed nodes: no credentials in it
        else:
            refs["KUBEGATE_REDIS_URL"] = spec.redis.url_secret_ref
        topology = spec.redis.sentinel or spec.redis.cluster
        if topology is not None and topology.replica_acks:
            plain["KUBEGATE_REDIS_REPLICA_ACKS"] = str(topology.replica_acks)
        if spec.redis.password_secret_ref is not None:
            refs["KUBEGATE_REDIS_PASSWORD"] = spec.redis.password_secret_ref
        if spec.redis.username_secret_ref is not None:
            refs["KUBEGATE_REDIS_USERNAME"] = spec.redis.username_secret_ref
        if spec.redis.ca_secret_ref is not None:
            plain["KUBEGATE_REDIS_CA_FILE"] = REDIS_CA_FILE
        if spec.redis.client_cert_secret_ref is not None:
            plain["KUBEGATE_REDIS_CERT_FILE"] = REDIS_CLIENT_CERT_FILE
            plain["KUBEGATE_REDIS_KEY_FILE"] = REDIS_CLIENT_KEY_FILE
    else:
        # No credentials in the URL: the password comes from the Secret the operator generated.
        ha = spec.redis.high_availability
        if ha is None:
            plain["KUBEGATE_REDIS_URL"] = f"redis://{gateway}-redis:6379/0"
        else:
            plain["KUBEGATE_REDIS_URL"] = sentinel_address(gateway, namespace, ha)
            if ha.replica_acks:
                plain["KUBEGATE_REDIS_REPLICA_ACKS"] = str(ha.replica_acks)
        refs["KUBEGATE_REDIS_PASSWORD"] = crd.SecretKeyRef(name=redis_secret_name(gateway), key=REDIS_PASSWORD_FIELD)
    env: list[dict[str, Any]] = [{"name": var, "value": value} for var, value in sorted(plain.items())]
    for var, ref in sorted(refs.items()):
        env.append({"name": var, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}})
    return env


def _with_user_env(ours: list[dict[str, Any]], pod: crd.PodSpec) -> list[dict[str, Any]]:
    """The operator's variables, then the user's; a user variable replaces a proxy default of the same name (the
    CRD refuses the names kubegate's enforcement depends on), so no name appears twice."""
    user = [
        {"name": e.name, **({"valueFrom": e.value_from} if e.value_from is not None else {"value": e.value or ""})}
        for e in pod.env
    ]
    names = {e["name"] for e in user}
    return [e for e in ours if e["name"] not in names] + user


def zone_spread(match_labels: dict[str, str]) -> list[dict[str, Any]]:
    """Default spread: one zone going down takes at most its share of replicas (soft, so a one-zone cluster and
    a scale-up during a zone outage still schedule)."""
    return [
        {
            "maxSkew": 1,
            "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": match_labels},
        }
    ]


def pod_placement(pod: crd.PodSpec, match_labels: dict[str, str]) -> dict[str, Any]:
    """Pod-spec fields from LLMGateway spec.pod (only those set, so server-side apply owns nothing it need not)."""
    out: dict[str, Any] = {}
    spread = zone_spread(match_labels) if pod.topology_spread_constraints is None else pod.topology_spread_constraints
    if spread:
        out["topologySpreadConstraints"] = [dict(c) for c in spread]
    if pod.service_account_name:
        out["serviceAccountName"] = pod.service_account_name
    if pod.image_pull_secrets:
        out["imagePullSecrets"] = [{"name": n} for n in pod.image_pull_secrets]
    if pod.node_selector:
        out["nodeSelector"] = dict(pod.node_selector)
    if pod.tolerations:
        out["tolerations"] = [dict(t) for t in pod.tolerations]
    if pod.affinity:
        out["affinity"] = dict(pod.affinity)
    if pod.priority_class_name:
        out["priorityClassName"] = pod.priority_class_name
    return out


def proxy_workers(spec: crd.LLMGatewaySpec) -> int:
    """``spec.workers``, else one worker per whole CPU the proxy container requests (at least one): each worker is
    one single-threaded process, so fewer leave requested CPU idle and more only contend for it."""
    if spec.workers is not None:
        return spec.workers
    cpu = (spec.resources.requests or {}).get("cpu")
    if cpu is None:
        return 1
    return max(1, min(MAX_WORKERS, math.floor(parse_quantity(str(cpu)))))


def scale_summary(spec: crd.LLMGatewaySpec) -> str:
    """The proxy replica count the operator asks for, as the Gateway's Replicas column shows it: ``2``, or the
    HPA's bounds ``2-10 (HPA)``. Desired, not running: the operator does not watch Deployments."""
    if spec.autoscaling.enabled:
        return f"{spec.autoscaling.min_replicas}-{spec.autoscaling.max_replicas} (HPA)"
    return str(spec.replicas)


def _mount_secret(
    container: dict[str, Any], volumes: list[dict[str, Any]], volume: str, secret: str, files: dict[str, str]
) -> None:
    """Mount keys of Secret ``secret`` read-only at the operator's mount ``volume``: ``files`` maps each key to its
    path, a file directly under that mount."""
    container["volumeMounts"].append({"name": volume, "mountPath": OPERATOR_MOUNTS[volume], "readOnly": True})
    items = [{"key": key, "path": path.rpartition("/")[2]} for key, path in files.items()]
    volumes.append({"name": volume, "secret": {"secretName": secret, "items": items}})


def build_proxy_deployment(
    gateway: dict[str, Any],
    api_key_env: dict[str, crd.SecretKeyRef],
    model_list_checksum: str,
    *,
    policy_public_key: str,
    master_key_sha256: str | None = None,
) -> dict[str, Any]:
    spec = crd.LLMGatewaySpec.model_validate(gateway.get("spec") or {})
    name = gateway["metadata"]["name"]
    port = spec.port
    probe = {"httpGet": {"path": "/health/liveliness", "port": "http"}, "periodSeconds": 10}
    container = {
        "name": "proxy",
        "image": spec.image,
        "args": [
            "--config",
            f"{OPERATOR_MOUNTS['config']}/{CONFIG_KEY}",
            "--port",
            str(port),
            "--num_workers",
            str(proxy_workers(spec)),
        ],
        "ports": [{"name": "http", "containerPort": port}, {"name": "metrics", "containerPort": METRICS_PORT}],
        "env": _with_user_env(
            _env(spec, name, gateway["metadata"]["namespace"], api_key_env, policy_public_key, master_key_sha256),
            spec.pod,
        ),
        "resources": spec.resources.model_dump(),
        "readinessProbe": {**probe, "httpGet": {"path": "/health/readiness", "port": "http"}},
        "livenessProbe": {**probe, "failureThreshold": 6},
        "startupProbe": {**probe, "failureThreshold": 30, "periodSeconds": 5},
        "volumeMounts": [
            {"name": "config", "mountPath": OPERATOR_MOUNTS["config"], "readOnly": True},
            {"name": "policy", "mountPath": OPERATOR_MOUNTS["policy"], "readOnly": True},
            {"name": "tmp", "mountPath": OPERATOR_MOUNTS["tmp"]},
        ],
        "securityContext": container_security_context(spec.pod),
    }
    volumes: list[dict[str, Any]] = [
        {"name": "config", "configMap": {"name": config_name(name)}},
        {"name": "policy", "configMap": {"name": policy_name(name)}},
        # On disk, no sizeLimit: the audit spool grows here while Redis is down (bounded by spoolMaxRecords), and
        # exceeding a sizeLimit would get the pod evicted.
        {"name": "tmp", "emptyDir": {}},
    ]
    if proxy_workers(spec) > 1:
        # Without it each scrape would see only the worker that happened to answer. The emptyDir lives as long
        # as the pod, so a respawned worker or restarted container finds its predecessors' files: counters and
        # histograms carry on from them; a gauge needs a multiprocess mode that ignores dead processes.
        container["volumeMounts"].append({"name": "prometheus", "mountPath": MULTIPROC_DIR})
        volumes.append({"name": "prometheus", "emptyDir": {"medium": "Memory", "sizeLimit": MULTIPROC_SIZE_LIMIT}})
    # External Redis only (crd.RedisSpec refuses both on the managed Redis).
    if spec.redis.ca_secret_ref is not None:
        ca = spec.redis.ca_secret_ref
        _mount_secret(container, volumes, "redis-ca", ca.name, {ca.key: REDIS_CA_FILE})
    if spec.redis.client_cert_secret_ref is not None:
        files = {"tls.crt": REDIS_CLIENT_CERT_FILE, "tls.key": REDIS_CLIENT_KEY_FILE}
        _mount_secret(container, volumes, "redis-client-cert", spec.redis.client_cert_secret_ref.name, files)
    # The user's after ours: spec.pod refuses their names and paths (crd.PodSpec and the CRD's rules), so these
    # only add, never replace.
    volumes.extend(_dump(v) for v in spec.pod.volumes)
    container["volumeMounts"].extend(_dump(m) for m in spec.pod.volume_mounts)
    deployment_spec: dict[str, Any] = {
        "selector": {"matchLabels": selector(name, "proxy")},
        "template": {
            "metadata": {
                "labels": {**spec.pod.labels, **labels(name, "proxy")},
                # Only model-list changes roll pods; tenants and budgets arrive live through the policy.
                "annotations": {**spec.pod.annotations, CHECKSUM_ANNOTATION: model_list_checksum},
            },
            "spec": {
                "containers": [container],
                "volumes": volumes,
                **pod_placement(spec.pod, selector(name, "proxy")),
                **({"securityContext": _dump(spec.pod.security_context)} if spec.pod.security_context else {}),
            },
        },
    }
    if spec.pod.env_from:
        container["envFrom"] = [dict(e) for e in spec.pod.env_from]
    if not spec.autoscaling.enabled:
        deployment_spec["replicas"] = spec.replicas
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(proxy_name(name), gateway["metadata"]["namespace"], gateway, labels(name, "proxy")),
        "spec": deployment_spec,
    }


def build_proxy_service(gateway: dict[str, Any]) -> dict[str, Any]:
    spec = crd.LLMGatewaySpec.model_validate(gateway.get("spec") or {})
    name = gateway["metadata"]["name"]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(name, gateway["metadata"]["namespace"], gateway, labels(name, "proxy")),
        "spec": {
            "type": spec.service_type,
            "selector": selector(name, "proxy"),
            "ports": [{"name": "http", "port": spec.port, "targetPort": "http"}],
        },
    }


def build_metrics_service(gateway: dict[str, Any]) -> dict[str, Any]:
    """The proxies' metrics port, for Prometheus only: a Service of its own, so the one tenants reach
    (``build_proxy_service``) carries the API port alone. The chart's ServiceMonitor selects this one."""
    name = gateway["metadata"]["name"]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(f"{name}-metrics", gateway["metadata"]["namespace"], gateway, labels(name, "metrics")),
        "spec": {
            "type": "ClusterIP",
            "selector": selector(name, "proxy"),
            "ports": [{"name": "metrics", "port": METRICS_PORT, "targetPort": "metrics"}],
        },
    }


def build_hpa(gateway: dict[str, Any]) -> dict[str, Any] | None:
    spec = crd.LLMGatewaySpec.model_validate(gateway.get("spec") or {})
    if not spec.autoscaling.enabled:
        return None
    name = gateway["metadata"]["name"]
    auto = spec.autoscaling
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": metadata(proxy_name(name), gateway["metadata"]["namespace"], gateway, labels(name, "proxy")),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": proxy_name(name)},
            "minReplicas": auto.min_replicas,
            "maxReplicas": auto.max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": auto.target_cpu_utilization},
                    },
                }
            ],
        },
    }


def build_pdb(gateway: dict[str, Any]) -> dict[str, Any]:
    name = gateway["metadata"]["name"]
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": metadata(proxy_name(name), gateway["metadata"]["namespace"], gateway, labels(name, "proxy")),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector(name, "proxy")}},
    }
