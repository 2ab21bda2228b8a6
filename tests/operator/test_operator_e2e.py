"""The operator, running in-process as a ServiceAccount bound to exactly ``gateway_operator.rbac.RULES``."""

from __future__ import annotations

import base64
import gzip
import json
import os
import time
import uuid

import pytest
from gateway_operator import rbac
from gateway_operator.kube import client as kube_client
from gateway_operator.reconcile import gateway as gw_reconcile
from kopf.testing import KopfRunner
from kubernetes import client

from gateway_plugins.policy import hash_key
from tests.operator.test_crd import _install_crds
from tests.operator.trust import verifier_of

GROUP, VERSION = "kubegate.dev", "v1alpha1"


def _wait(what, check, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def operator_kubeconfig(control_plane, admin_api, namespace):
    _install_crds(admin_api)
    rbac_api = client.RbacAuthorizationV1Api(admin_api)
    role = f"kubegate-op-{uuid.uuid4().hex[:6]}"
    rbac_api.create_cluster_role({"metadata": {"name": role}, "rules": rbac.RULES})
    rbac_api.create_cluster_role_binding(
        {
            "metadata": {"name": role},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": [{"kind": "ServiceAccount", "name": "kubegate-operator", "namespace": namespace}],
        }
    )
    token = control_plane.token_for_service_account(namespace, "kubegate-operator")
    path = control_plane.kubeconfig_for_token(token)
    yield str(path)
    rbac_api.delete_cluster_role_binding(role)
    rbac_api.delete_cluster_role(role)


def _policy(core: client.CoreV1Api, ns: str) -> dict | None:
    try:
        cm = core.read_namespaced_config_map("main-policy", ns)
    except client.ApiException:
        return None
    try:
        verifier = verifier_of(client.CustomObjectsApi(core.api_client), ns, "main", wait=0)  # as a proxy reads it
    except KeyError:  # status not written yet
        return None
    return json.loads(gzip.decompress(verifier.open(base64.b64decode(cm.binary_data["policy.json.gz"]))))


def test_gateway_and_tenant_reconcile_as_service_account(operator_kubeconfig, admin_api, namespace, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", operator_kubeconfig)
    kube_client.reset()
    custom = client.CustomObjectsApi(admin_api)
    core = client.CoreV1Api(admin_api)
    args = ["run", "--standalone", "--namespace", namespace, "-m", "gateway_operator.handlers"]
    with KopfRunner(args, timeout=60) as runner:
        custom.create_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            "llmgateways",
            {"apiVersion": f"{GROUP}/{VERSION}", "kind": "LLMGateway", "metadata": {"name": "main"}, "spec": {}},
        )
        custom.create_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            "tenants",
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "Tenant",
                "metadata": {"name": "team"},
                "spec": {"gateway": "main"},
            },
        )
        policy = _wait("tenant in policy", lambda: (p := _policy(core, namespace)) and p["tenants"] and p)
        secret = core.read_namespaced_secret("team-kubegate-key", namespace)
        raw = base64.b64decode(secret.data["api-key"]).decode()
        assert policy["tenants"][0]["keys"] == [{"sha256": hash_key(raw)}]
        assert raw not in json.dumps(policy)
        dep = client.AppsV1Api(admin_api).read_namespaced_deployment("main-proxy", namespace)
        assert dep.metadata.owner_references[0].kind == "LLMGateway"

        custom.create_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            "budgets",
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "Budget",
                "metadata": {"name": "team-monthly"},
                "spec": {"tenant": "team", "limitUSD": "10"},
            },
        )
        _wait("budget in policy", lambda: (p := _policy(core, namespace)) and p["budgets"])
        status = _wait(
            "Reconciled condition",
            lambda: custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "llmgateways", "main").get("status"),
        )
        conditions = {c["type"]: c["status"] for c in status["conditions"]}
        assert conditions["Reconciled"] == "True" and conditions["Ready"] == "True"

        # A second reconcile with nothing changed writes nothing, and never replaces the key.
        def versions():
            cms = core.list_namespaced_config_map(namespace).items
            deps = client.AppsV1Api(admin_api).list_namespaced_deployment(namespace).items
            return {o.metadata.name: o.metadata.resource_version for o in [*cms, *deps]}

        before = versions()
        gw_reconcile.reconcile(namespace, "main")
        assert versions() == before
        assert core.read_namespaced_secret("team-kubegate-key", namespace).data == secret.data

        # A child deleted by hand is put back by the next reconcile.
        core.delete_namespaced_config_map("main-litellm-config", namespace)
        gw_reconcile.reconcile(namespace, "main")
        assert core.read_namespaced_config_map("main-litellm-config", namespace).data["config.yaml"]
    assert runner.exit_code == 0, runner.output
    assert runner.exception is None
    # Not a bare "403": log timestamps carry milliseconds.
    assert "Forbidden" not in runner.output and "HTTP 403" not in runner.output, runner.output[-3000:]
    os.environ.pop("KUBECONFIG", None)
