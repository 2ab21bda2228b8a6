"""spec.pod.securityContext, containerSecurityContext, volumes and volumeMounts: typed, copied whole into the proxy
Deployment (pure builder), added to the operator's own volumes and mounts and never replacing them."""

from __future__ import annotations

import copy
import typing
from typing import Any

import pytest
from gateway_operator.builders.proxy import build_proxy_deployment, proxy_security_context
from gateway_operator.crd import core
from gateway_operator.crd import models as crd
from gateway_operator.render.problems import field_errors
from pydantic import BaseModel, ValidationError

# What a platform typically needs (a corporate CA bundle, fsGroup, an extra Secret, a CSI secret store), plus every
# other typed field once: test_example_sets_every_typed_field keeps it complete.
POD: dict[str, Any] = {
    "securityContext": {
        "fsGroup": 65532,
        "fsGroupChangePolicy": "OnRootMismatch",
        "runAsUser": 65532,
        "runAsGroup": 65532,
        "runAsNonRoot": True,
        "supplementalGroups": [1000],
        "supplementalGroupsPolicy": "Merge",
        "sysctls": [{"name": "net.ipv4.ip_local_port_range", "value": "1024 65000"}],
        "seccompProfile": {"type": "Localhost", "localhostProfile": "profiles/proxy.json"},
        "appArmorProfile": {"type": "Localhost", "localhostProfile": "proxy"},
        "seLinuxOptions": {"user": "system_u", "role": "system_r", "type": "container_t", "level": "s0:c1,c2"},
        "seLinuxChangePolicy": "Recursive",
        "windowsOptions": {
            "gmsaCredentialSpec": "{}",
            "gmsaCredentialSpecName": "gmsa",
            "hostProcess": False,
            "runAsUserName": "proxy",
        },
    },
    "containerSecurityContext": {
        "runAsUser": 1000700000,
        "runAsGroup": 1000700000,
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]},
        "privileged": False,
        "procMount": "Default",
        "readOnlyRootFilesystem": True,
        "seccompProfile": {"type": "RuntimeDefault"},
        "appArmorProfile": {"type": "RuntimeDefault"},
        "seLinuxOptions": {"type": "container_t"},
        "windowsOptions": {"runAsUserName": "proxy"},
    },
    "volumes": [
        {
            "name": "corp-ca",
            "configMap": {
                "name": "corp-ca",
                "items": [{"key": "ca.crt", "path": "ca.crt", "mode": 0o444}],
                "defaultMode": 0o444,
                "optional": False,
            },
        },
        {"name": "extra", "secret": {"secretName": "extra", "items": [{"key": "k", "path": "k"}], "defaultMode": 256}},
        {"name": "optional-secret", "secret": {"secretName": "maybe", "optional": True}},
        {"name": "scratch", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}},
        {"name": "disk", "emptyDir": {}},
        {"name": "data", "persistentVolumeClaim": {"claimName": "proxy-data", "readOnly": True}},
        {
            "name": "vault",
            "csi": {
                "driver": "secrets-store.csi.k8s.io",
                "readOnly": True,
                "fsType": "ext4",
                "volumeAttributes": {"secretProviderClass": "llm-keys"},
                "nodePublishSecretRef": {"name": "csi-creds"},
            },
        },
        {
            "name": "podinfo",
            "downwardAPI": {
                "items": [
                    {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels", "apiVersion": "v1"}, "mode": 0o444},
                    {
                        "path": "mem",
                        "resourceFieldRef": {"resource": "limits.memory", "containerName": "proxy", "divisor": "1Mi"},
                    },
                ],
                "defaultMode": 0o444,
            },
        },
        {
            "name": "bundle",
            "projected": {
                "defaultMode": 0o444,
                "sources": [
                    {"configMap": {"name": "ca-a", "items": [{"key": "ca.crt", "path": "a.crt"}], "optional": True}},
                    {"secret": {"name": "ca-b", "items": [{"key": "ca.crt", "path": "b.crt"}], "optional": True}},
                    {"downwardAPI": {"items": [{"path": "ns", "fieldRef": {"fieldPath": "metadata.namespace"}}]}},
                    {"serviceAccountToken": {"path": "token", "audience": "vault", "expirationSeconds": 3600}},
                ],
            },
        },
    ],
    "volumeMounts": [
        {"name": "corp-ca", "mountPath": "/etc/ssl/certs/corp-ca.crt", "subPath": "ca.crt", "readOnly": True},
        {"name": "extra", "mountPath": "/var/run/secrets/extra", "readOnly": True, "recursiveReadOnly": "IfPossible"},
        {"name": "scratch", "mountPath": "/scratch", "mountPropagation": "None"},
        {"name": "podinfo", "mountPath": "/etc/podinfo", "subPathExpr": "$(POD_NAME)"},
        {"name": "bundle", "mountPath": "/etc/kubegate-extra/bundle"},
        {"name": "vault", "mountPath": "/mnt/vault", "readOnly": True},
    ],
}
OURS = {"config", "policy", "tmp", "prometheus", "redis-ca", "redis-client-cert"}


def _pod(pod: dict[str, Any], workers: int = 2) -> tuple[dict[str, Any], dict[str, Any]]:
    gateway = {
        "apiVersion": crd.API_VERSION,
        "kind": "LLMGateway",
        "metadata": {"name": "main", "namespace": "ns", "uid": "u"},
        "spec": {
            "pod": pod,
            "workers": workers,
            # A private CA for an external Redis: every volume the operator may mount is there.
            "redis": {
                "mode": "external",
                "urlSecretRef": {"name": "r", "key": "url"},
                "caSecretRef": {"name": "redis-ca", "key": "ca.pem"},
                "clientCertSecretRef": {"name": "redis-client"},
            },
        },
    }
    spec = build_proxy_deployment(gateway, {}, "sum", policy_public_key="pk")["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    return spec, container


def _fields_set(model: type[BaseModel], data: Any, seen: set[tuple[str, str]]) -> None:
    if isinstance(data, list):
        for item in data:
            _fields_set(model, item, seen)
        return
    by_alias = {info.alias or name: info for name, info in model.model_fields.items()}
    for key, value in data.items():
        seen.add((model.__name__, key))
        inner = _model_in(by_alias[key].annotation)
        if inner is not None:
            _fields_set(inner, value, seen)


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _all_fields(model: type[BaseModel], out: set[tuple[str, str]]) -> None:
    for name, info in model.model_fields.items():
        if (model.__name__, info.alias or name) in out:
            continue
        out.add((model.__name__, info.alias or name))
        inner = _model_in(info.annotation)
        if inner is not None:
            _all_fields(inner, out)


def test_example_sets_every_typed_field():
    """The round trip below proves each field of the example reaches the pod; this keeps the example complete, so a
    field added to gateway_operator.crd.core is covered too."""
    wanted: set[tuple[str, str]] = set()
    seen: set[tuple[str, str]] = set()
    for name, info in crd.PodSpec.model_fields.items():
        model = _model_in(info.annotation)
        if model is not None and issubclass(model, core.CoreV1):
            _all_fields(model, wanted)
            _fields_set(model, POD[info.alias or name], seen)
    assert {m for m, _ in wanted} >= {"PodSecurityContext", "ContainerSecurityContext", "Volume", "VolumeMount"}
    assert sorted(wanted - seen) == []


def test_typed_pod_fields_reach_the_deployment_whole_beside_the_operators_own():
    pod, container = _pod(POD)
    assert pod["securityContext"] == POD["securityContext"]
    user_volumes = [v for v in pod["volumes"] if v["name"] not in OURS]
    assert user_volumes == POD["volumes"]
    assert {v["name"] for v in pod["volumes"]} - {v["name"] for v in user_volumes} == OURS
    user_mounts = [m for m in container["volumeMounts"] if m["name"] not in OURS]
    assert user_mounts == POD["volumeMounts"]
    ours = {m["name"]: m["mountPath"] for m in container["volumeMounts"] if m["name"] in OURS}
    assert ours == core.OPERATOR_MOUNTS
    # The container's context: the user's fields replace the restricted default's, the rest stays.
    assert container["securityContext"] == {**proxy_security_context(), **POD["containerSecurityContext"]}


def test_unset_fields_leave_the_restricted_default_and_no_pod_security_context():
    pod, container = _pod({})
    assert "securityContext" not in pod
    assert container["securityContext"] == proxy_security_context()
    assert {v["name"] for v in pod["volumes"]} == OURS
    # OpenShift-style: only the UID changes; read-only root, dropped capabilities, seccomp stay.
    _, container = _pod({"containerSecurityContext": {"runAsUser": 1000700000}})
    assert container["securityContext"] == {**proxy_security_context(), "runAsUser": 1000700000}


REFUSED = [
    ({"volumes": [{"name": "tmp", "emptyDir": {}}]}, "spec.pod.volumes: Value error, tmp: the operator's own"),
    ({"volumes": [{"name": "prometheus", "emptyDir": {}}]}, "spec.pod.volumes: Value error, prometheus"),
    ({"volumes": [{"name": "a", "emptyDir": {}}, {"name": "a", "emptyDir": {}}]}, "spec.pod.volumes"),
    ({"volumes": [{"name": "a"}]}, "spec.pod.volumes.0: Value error, volume a: set exactly one of"),
    (
        {"volumes": [{"name": "a", "emptyDir": {}, "secret": {"secretName": "s"}}]},
        "spec.pod.volumes.0: Value error, volume a: set exactly one of",
    ),
    ({"volumes": [{"name": "a", "hostPath": {"path": "/"}}]}, "spec.pod.volumes.0.hostPath: Extra inputs"),
    ({"volumeMounts": [{"name": "config", "mountPath": "/x"}]}, "volumeMounts: config not in spec.pod.volumes"),
    *[
        (
            {"volumes": [{"name": "a", "emptyDir": {}}], "volumeMounts": [{"name": "a", "mountPath": path}]},
            "spec.pod.volumeMounts",
        )
        for path in ("/tmp", "/tmp/x", "/etc/kubegate", "/etc/kubegate/policy", "/var/run/kubegate/prometheus/x")
    ],
    (
        {"volumes": [{"name": "a", "emptyDir": {}}], "volumeMounts": [{"name": "a", "mountPath": "/x/../tmp"}]},
        "spec.pod.volumeMounts.0.mountPath",
    ),
    ({"securityContext": {"fsGroupp": 1}}, "spec.pod.securityContext.fsGroupp: Extra inputs"),
]


@pytest.mark.parametrize(("pod", "message"), REFUSED)
def test_collisions_and_unknown_fields_are_refused_naming_the_field(pod, message):
    """The operator parses the Gateway with the same model: a refused spec is Ready=False InvalidSpec with this
    text (the CRD's rules refuse the same at apply: tests/operator/test_crd.py)."""
    body = {"metadata": {"name": "main"}, "spec": {"pod": copy.deepcopy(pod)}}
    with pytest.raises(ValidationError) as info:
        crd.LLMGateway.model_validate(body)
    assert message in field_errors(info.value)
