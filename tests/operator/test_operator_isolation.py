"""Per-object isolation against the real API server, the operator running as its ServiceAccount (rbac.RULES).

Each case from issue 13: the API server refuses what its schema can check, naming the field; what it cannot check
is left out by the operator with Ready=False and the field named, while the rest of the Gateway keeps working.
"""

from __future__ import annotations

import base64
import secrets

import pytest
from gateway_operator.kube import children
from gateway_operator.kube import client as kube_client
from kubernetes import client

from gateway_plugins.policy import hash_key
from tests.operator.test_operator_e2e import GROUP, VERSION, _policy, _wait, operator_kubeconfig  # noqa: F401
from tests.operator.test_operator_status import _condition, _obj, _reason, operator  # noqa: F401


def _create(custom, ns: str, plural: str, kind: str, name: str, spec: dict) -> None:
    custom.create_namespaced_custom_object(GROUP, VERSION, ns, plural, _obj(kind, name, spec))


def _refused(custom, ns: str, plural: str, kind: str, spec: dict, field: str) -> str:
    with pytest.raises(client.ApiException) as err:
        _create(custom, ns, plural, kind, "refused", spec)
    assert err.value.status == 422, err.value.body
    assert field in err.value.body, err.value.body
    return err.value.body


@pytest.fixture
def resyncing_operator(monkeypatch, operator):  # noqa: F811
    monkeypatch.setenv("KUBEGATE_RESYNC_SECONDS", "1")
    return operator


def test_schema_refuses_at_apply_with_the_field_named(operator_kubeconfig, admin_api, namespace):  # noqa: F811
    custom = client.CustomObjectsApi(admin_api)
    budget = {"tenant": "a", "limitUSD": "10"}
    _refused(custom, namespace, "budgets", "Budget", {**budget, "limitUSD": "0"}, "spec.limitUSD")
    _refused(custom, namespace, "budgets", "Budget", {**budget, "limitUSD": "0.0000001"}, "spec.limitUSD")
    three = {"a": "b", "b": "c", "c": "a"}
    _refused(custom, namespace, "budgets", "Budget", {**budget, "downgrade": three}, "spec.downgrade")
    _refused(custom, namespace, "budgets", "Budget", {**budget, "timezone": "Mars Olympus"}, "spec.timezone")
    tenant = {"gateway": "main"}
    _refused(custom, namespace, "tenants", "Tenant", {**tenant, "allowedRegions": ["eu west"]}, "allowedRegions")
    _refused(custom, namespace, "tenants", "Tenant", {**tenant, "allowedRegions": ["eu", "eu"]}, "allowedRegions")
    pii = {"entities": {"email_address": "mask"}}
    _refused(custom, namespace, "tenants", "Tenant", {**tenant, "pii": pii}, "spec.pii.entities")
    # NER types in a language the proxy image has no model for (only English ships): refused, languages named.
    ner_de = {"entities": {"PERSON": "mask"}, "languages": ["en", "de"]}
    body = _refused(custom, namespace, "tenants", "Tenant", {**tenant, "pii": ner_de}, "spec.pii.languages")
    assert "ships one only for en" in body, body
    _refused(custom, namespace, "tenantplans", "TenantPlan", {"pii": ner_de}, "spec.pii.languages")
    ner_fr = {"entities": {"LOCATION": "mask"}, "language": "fr"}
    _refused(custom, namespace, "tenants", "Tenant", {**tenant, "pii": ner_fr}, "spec.pii.languages")
    # The structured types need no model: any language is accepted.
    _create(custom, namespace, "tenants", "Tenant", "german", {**tenant, "pii": {"languages": ["de", "en"]}})
    dep = {"name": "a", "model": "m", "region": "eu"}
    route = {"gateway": "main", "modelName": "m", "deployments": [dep, dep]}
    _refused(custom, namespace, "modelroutes", "ModelRoute", route, "spec.deployments")
    quantity = {"resources": {"limits": {"memory": "2 GB"}}}
    _refused(custom, namespace, "llmgateways", "LLMGateway", quantity, "spec.resources.limits.memory")


def test_objects_the_schema_cannot_judge_are_left_out_and_the_gateway_keeps_working(
    resyncing_operator, admin_api, namespace
):
    custom = client.CustomObjectsApi(admin_api)
    core = client.CoreV1Api(admin_api)
    _create(custom, namespace, "llmgateways", "LLMGateway", "main", {})
    _create(custom, namespace, "tenants", "Tenant", "good", {"gateway": "main", "allowedModels": ["*"]})
    # Valid to the API server, unusable at run time: a zone that does not exist, a cycle longer than the CEL
    # rules look, a second route for a model another route already serves.
    _create(
        custom, namespace, "budgets", "Budget", "mars", {"tenant": "good", "limitUSD": "5", "timezone": "Mars/Olympus"}
    )
    cycle = {"a": "b", "b": "c", "c": "d", "d": "a"}
    _create(custom, namespace, "budgets", "Budget", "cycle", {"tenant": "good", "limitUSD": "5", "downgrade": cycle})
    _create(custom, namespace, "budgets", "Budget", "fine", {"tenant": "good", "limitUSD": "5"})
    dep = {"name": "a", "model": "m", "region": "eu-west-1"}
    _create(
        custom,
        namespace,
        "modelroutes",
        "ModelRoute",
        "first",
        {"gateway": "main", "modelName": "m", "deployments": [dep], "free": True},
    )
    _create(
        custom,
        namespace,
        "modelroutes",
        "ModelRoute",
        "second",
        {"gateway": "main", "modelName": "m", "deployments": [dep], "free": True},
    )

    # No price set and none in LiteLLM's price map: never served as free.
    unpriced = {"gateway": "main", "modelName": "in-house", "deployments": [{**dep, "model": "in-house-llm"}]}
    _create(custom, namespace, "modelroutes", "ModelRoute", "unpriced", unpriced)

    mars = _reason(custom, namespace, "budgets", "mars", "Ready", "InvalidSpec")
    assert mars["status"] == "False" and "spec.timezone" in mars["message"] and "Mars/Olympus" in mars["message"]
    loop = _reason(custom, namespace, "budgets", "cycle", "Ready", "InvalidSpec")
    assert "spec.downgrade" in loop["message"] and "a -> b -> c -> d -> a" in loop["message"]
    dup = _reason(custom, namespace, "modelroutes", "second", "Ready", "DuplicateModel")
    assert "spec.modelName" in dup["message"] and "first" in dup["message"]
    assert _reason(custom, namespace, "modelroutes", "first", "Ready", "Rendered")["status"] == "True"
    price = _reason(custom, namespace, "modelroutes", "unpriced", "Ready", "PriceUnknown")
    assert price["status"] == "False" and "spec.deployments" in price["message"]
    ready = _reason(custom, namespace, "llmgateways", "main", "Ready", "Reconciled")
    assert ready["status"] == "True"
    reconciled = _condition(custom, namespace, "llmgateways", "main", "Reconciled")
    assert "Budget/mars: InvalidSpec" in reconciled["message"]

    # The rest keeps reconciling: a new Tenant's key works (its hash is in the policy), a deleted policy
    # ConfigMap comes back, and only the valid Budget is in the policy.
    _create(custom, namespace, "tenants", "Tenant", "late", {"gateway": "main"})
    assert _reason(custom, namespace, "tenants", "late", "Ready", "Rendered")["status"] == "True"
    secret = _wait("late's key Secret", lambda: _secret(core, namespace, "late-kubegate-key"))
    key = base64.b64decode(secret.data["api-key"]).decode()

    def late_in_policy():
        policy = _policy(core, namespace)
        tenants = {t["id"]: t for t in (policy or {}).get("tenants", [])}
        return policy if "late" in tenants and tenants["late"]["keys"][0]["sha256"] == hash_key(key) else None

    policy = _wait("late's key in the policy", late_in_policy)
    assert [b["name"] for b in policy["budgets"]] == ["fine"]
    assert [m["name"] for m in policy["models"]] == ["m"]
    core.delete_namespaced_config_map("main-policy", namespace)
    _wait("policy ConfigMap re-created", lambda: _policy(core, namespace))

    # Fixed in place: the Budget is rendered and leaves InvalidSpec.
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, "budgets", "mars", {"spec": {"timezone": "Europe/Berlin"}}
    )
    _wait(
        "mars in the policy", lambda: "mars" in [b["name"] for b in (_policy(core, namespace) or {}).get("budgets", [])]
    )


def _secret(core, ns: str, name: str):
    try:
        return core.read_namespaced_secret(name, ns)
    except client.ApiException:
        return None


def test_policy_too_large_is_refused_with_a_reason_and_the_last_policy_stays(resyncing_operator, admin_api, namespace):
    custom = client.CustomObjectsApi(admin_api)
    core = client.CoreV1Api(admin_api)
    _create(custom, namespace, "llmgateways", "LLMGateway", "main", {})
    _create(custom, namespace, "tenants", "Tenant", "small", {"gateway": "main"})
    _wait("first policy", lambda: "small" in [t["id"] for t in (_policy(core, namespace) or {}).get("tenants", [])])
    # Random terms do not compress: three Tenants of ~600 KB each make a policy well over one ConfigMap.
    for i in range(3):
        allow = [secrets.token_urlsafe(750) for _ in range(800)]
        _create(custom, namespace, "tenants", "Tenant", f"big-{i}", {"gateway": "main", "pii": {"allowList": allow}})
    ready = _reason(custom, namespace, "llmgateways", "main", "Ready", "PolicyTooLarge")
    assert ready["status"] == "False" and "ConfigMap limit" in ready["message"]
    assert _condition(custom, namespace, "llmgateways", "main", "PolicyPublished")["reason"] == "PolicyTooLarge"
    assert _reason(custom, namespace, "tenants", "big-2", "Ready", "PolicyTooLarge")["status"] == "False"
    # The last policy that fit stays (one big Tenant alone fits, two do not; events may coalesce).
    assert {t["id"] for t in _policy(core, namespace)["tenants"]} in ({"small"}, {"small", "big-0"})
    # Back under the limit: published again, Ready again.
    for i in range(2):
        custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, "tenants", f"big-{i}")
    assert _reason(custom, namespace, "llmgateways", "main", "Ready", "Reconciled")["status"] == "True"
    assert sorted(t["id"] for t in _policy(core, namespace)["tenants"]) == ["big-2", "small"]


def test_a_refused_child_reports_the_api_servers_message(admin_api, namespace):
    """An apply the API server cannot even type (invalid quantity) is named with its message, not `HTTP 500`,
    and the other children are still applied."""
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ok", "namespace": namespace}, "data": {}}
    container = {"name": "c", "image": "x", "resources": {"limits": {"memory": "2 GB"}}}
    bad = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "bad", "namespace": namespace},
        "spec": {
            "selector": {"matchLabels": {"a": "b"}},
            "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [container]}},
        },
    }
    with pytest.raises(children.ChildRejected) as err:
        children.sync(admin_api, [bad, cm], verify=False)
    assert err.value.written == ["ConfigMap/ok"]
    message = err.value.failed["Deployment/bad"]
    assert "quantities must match the regular expression" in message, message
    kube_client.reset()
