"""LLMGateway spec.pod and the Secrets-derived settings land in the Deployment the API server stores (the operator
running as its ServiceAccount)."""

from __future__ import annotations

import base64
import hashlib

import pytest
from gateway_operator.crd.core import OPERATOR_MOUNTS
from kubernetes import client

from tests.operator.test_operator_e2e import GROUP, VERSION, _wait, operator_kubeconfig  # noqa: F401
from tests.operator.test_operator_status import _obj, _secret, operator  # noqa: F401
from tests.operator.test_pod_volumes import POD as TYPED

POD = {
    "env": [
        {"name": "HTTPS_PROXY", "value": "http://egress:3128"},
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "t", "key": "k"}}},
    ],
    "envFrom": [{"configMapRef": {"name": "extra"}}],
    "serviceAccountName": "llm-proxy",
    "imagePullSecrets": ["regcred"],
    "nodeSelector": {"pool": "llm"},
    "tolerations": [{"key": "llm", "operator": "Exists", "effect": "NoSchedule"}],
    "affinity": {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [{"key": "gpu", "operator": "DoesNotExist"}]}]
            }
        }
    },
    "priorityClassName": "system-cluster-critical",
    "labels": {"team": "ml", "kubegate.dev/component": "mine"},
    "annotations": {"example.com/owner": "ml"},
}


def _contains(stored, sent, where: str = "") -> None:
    """Everything sent is stored (the API server only adds its defaults): nothing dropped as unknown or gated."""
    if isinstance(sent, dict):
        assert isinstance(stored, dict), where
        for key, value in sent.items():
            assert key in stored, f"{where}.{key} dropped"
            _contains(stored[key], value, f"{where}.{key}")
    elif isinstance(sent, list):
        assert isinstance(stored, list) and len(stored) == len(sent), where
        for i, (a, b) in enumerate(zip(stored, sent, strict=True)):
            _contains(a, b, f"{where}[{i}]")
    else:
        assert stored == sent, f"{where}: {stored!r} != {sent!r}"


def test_typed_pod_fields_are_valid_core_v1_and_stored_whole(operator, admin_api, namespace):  # noqa: F811
    """spec.pod.securityContext, containerSecurityContext, volumes and volumeMounts with every typed field set: the
    API server accepts the Deployment the operator renders from them and keeps every field."""
    custom, apps = client.CustomObjectsApi(admin_api), client.AppsV1Api(admin_api)
    custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, "llmgateways", _obj("LLMGateway", "main", {"pod": TYPED})
    )
    dep = _wait("proxy Deployment", lambda: _deployment(apps, namespace))
    stored = admin_api.sanitize_for_serialization(dep)["spec"]["template"]["spec"]
    (container,) = stored["containers"]
    _contains(stored["securityContext"], TYPED["securityContext"], "securityContext")
    _contains(container["securityContext"], TYPED["containerSecurityContext"], "containerSecurityContext")
    _contains(
        [v for v in stored["volumes"] if v["name"] in {v["name"] for v in TYPED["volumes"]}],
        TYPED["volumes"],
        "volumes",
    )
    _contains(container["volumeMounts"][-len(TYPED["volumeMounts"]) :], TYPED["volumeMounts"], "volumeMounts")
    # The operator's own mounts are still there, where the proxy reads them.
    assert {m["name"]: m["mountPath"] for m in container["volumeMounts"][:3]} == {
        k: v
        for k, v in OPERATOR_MOUNTS.items()
        if k not in ("prometheus", "redis-ca", "redis-client-cert")  # mounted only when needed
    }


def _deployment(apps, ns):
    try:
        return apps.read_namespaced_deployment("main-proxy", ns)
    except client.ApiException:
        return None


def test_pod_template_fields_land_in_the_stored_deployment(operator, admin_api, namespace):  # noqa: F811
    custom, core, apps = client.CustomObjectsApi(admin_api), client.CoreV1Api(admin_api), client.AppsV1Api(admin_api)
    _secret(core, namespace, "admin", {"key": "sk-admin-1"})
    spec = {"pod": POD, "masterKeySecretRef": {"name": "admin", "key": "key"}}
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "llmgateways", _obj("LLMGateway", "main", spec))
    dep = _wait("proxy Deployment", lambda: _deployment(apps, namespace))
    pod = dep.spec.template.spec
    container = pod.containers[0]
    assert pod.service_account_name == "llm-proxy"
    assert [s.name for s in pod.image_pull_secrets] == ["regcred"]
    assert pod.node_selector == {"pool": "llm"}
    assert [(t.key, t.operator, t.effect) for t in pod.tolerations] == [("llm", "Exists", "NoSchedule")]
    term = pod.affinity.node_affinity.required_during_scheduling_ignored_during_execution.node_selector_terms[0]
    assert term.match_expressions[0].key == "gpu"
    assert pod.priority_class_name == "system-cluster-critical"
    # Unset topologySpreadConstraints: spread across zones by default.
    assert [(c.topology_key, c.when_unsatisfiable) for c in pod.topology_spread_constraints] == [
        ("topology.kubernetes.io/zone", "ScheduleAnyway")
    ]
    labels = dep.spec.template.metadata.labels
    assert labels["team"] == "ml" and labels["kubegate.dev/component"] == "proxy"  # the selector label wins
    assert dep.spec.template.metadata.annotations["example.com/owner"] == "ml"
    env = {e.name: e for e in container.env}
    assert env["HTTPS_PROXY"].value == "http://egress:3128"
    assert env["TOKEN"].value_from.secret_key_ref.name == "t"
    assert container.env_from[0].config_map_ref.name == "extra"
    # The admin key reaches the proxy as its hash (the front door's KUBEGATE_MASTER_KEY_SHA256) and as LiteLLM's key.
    assert env["KUBEGATE_MASTER_KEY_SHA256"].value == hashlib.sha256(b"sk-admin-1").hexdigest()
    assert env["LITELLM_MASTER_KEY"].value_from.secret_key_ref.name == "admin"
    # A PII hash key Secret per Gateway, generated once and mounted.
    ref = env["KUBEGATE_PII_HASH_KEY"].value_from.secret_key_ref
    secret = _wait("PII hash key Secret", lambda: core.read_namespaced_secret(ref.name, namespace))
    assert len(base64.b64decode(secret.data[ref.key])) >= 32
    assert secret.metadata.owner_references[0].name == "main"

    # An explicit empty list turns the default spread off.
    patch = {"spec": {"pod": {"topologySpreadConstraints": []}}}
    custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, "llmgateways", "main", patch)
    _wait("no spread", lambda: not _deployment(apps, namespace).spec.template.spec.topology_spread_constraints)
    assert core.read_namespaced_secret(ref.name, namespace).data == secret.data  # never regenerated


@pytest.mark.parametrize("name", ["KUBEGATE_GATEWAY", "KG_KEY_X", "LITELLM_MASTER_KEY"])
def test_reserved_env_names_are_refused_at_apply(operator_kubeconfig, admin_api, namespace, name):  # noqa: F811
    custom = client.CustomObjectsApi(admin_api)
    body = _obj("LLMGateway", "main", {"pod": {"env": [{"name": name, "value": "x"}]}})
    with pytest.raises(client.ApiException) as err:
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "llmgateways", body)
    assert err.value.status == 422 and "spec.pod.env" in err.value.body
