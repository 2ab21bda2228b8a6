"""Operator lifecycle against the real API server, the operator running as its ServiceAccount (rbac.RULES):
Gateway deletion, restart mid-reconcile, writes per single change, missing ModelRoute Secrets, Ready columns."""

from __future__ import annotations

import base64
import collections
import gzip
import json
import sys
import time
from pathlib import Path

import yaml
from gateway_operator.builders.proxy import CHECKSUM_ANNOTATION
from gateway_operator.crd import models as crd
from gateway_operator.render.gateway import render_budget
from kubernetes import client

from gateway_plugins.policy.budget_state import MICRO
from gateway_plugins.policy.keys import GatewayKeys
from gateway_plugins.policy.periods import period_bounds, period_key
from tests.helm.operator_process import OperatorProcess
from tests.operator.kopf_runner import FAST_LOOPS, operator_user, running_operator
from tests.operator.test_operator_e2e import GROUP, VERSION, _wait, operator_kubeconfig  # noqa: F401
from tests.operator.test_operator_status import _table_row
from tests.operator.trust import gateway_keys, published, verifier_of

CHILD_KINDS = (
    "deployments",
    "statefulsets",
    "networkpolicies",
    "secrets",
    "services",
    "configmaps",
    "horizontalpodautoscalers",
    "poddisruptionbudgets",
)


def _obj(kind: str, name: str, spec: dict) -> dict:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": kind, "metadata": {"name": name}, "spec": spec}


def _create(custom, ns: str, plural: str, body: dict) -> dict:
    return custom.create_namespaced_custom_object(GROUP, VERSION, ns, plural, body)


def _get(custom, ns: str, plural: str, name: str) -> dict | None:
    try:
        return custom.get_namespaced_custom_object(GROUP, VERSION, ns, plural, name)
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise


def _ready(obj: dict | None, reason: str | None = None) -> bool:
    conds = {c["type"]: c for c in ((obj or {}).get("status") or {}).get("conditions", [])}
    ready = conds.get("Ready")
    return bool(ready) and ready["status"] == "True" and (reason is None or ready["reason"] == reason)


def _secret(core, ns: str, name: str, data: dict[str, str]) -> None:
    body = {"metadata": {"name": name}, "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}
    core.create_namespaced_secret(ns, body)


def _children(admin_api, ns: str, gateway: str) -> dict[str, list[str]]:
    """Every object of a child kind labelled as belonging to ``gateway``, by kind."""
    selector = f"kubegate.dev/gateway={gateway}"
    apps, core = client.AppsV1Api(admin_api), client.CoreV1Api(admin_api)
    hpa, pdb = client.AutoscalingV2Api(admin_api), client.PolicyV1Api(admin_api)
    net = client.NetworkingV1Api(admin_api)
    lists = {
        "deployments": apps.list_namespaced_deployment(ns, label_selector=selector).items,
        "statefulsets": apps.list_namespaced_stateful_set(ns, label_selector=selector).items,
        "networkpolicies": net.list_namespaced_network_policy(ns, label_selector=selector).items,
        # The Gateway's trust Secrets (tenant key Secrets belong to their Tenants, not the Gateway).
        "secrets": [
            s
            for s in core.list_namespaced_secret(ns, label_selector=selector).items
            if s.metadata.labels.get("kubegate.dev/component") != "tenant-key"
        ],
        "services": core.list_namespaced_service(ns, label_selector=selector).items,
        "configmaps": core.list_namespaced_config_map(ns, label_selector=selector).items,
        "horizontalpodautoscalers": hpa.list_namespaced_horizontal_pod_autoscaler(ns, label_selector=selector).items,
        "poddisruptionbudgets": pdb.list_namespaced_pod_disruption_budget(ns, label_selector=selector).items,
    }
    return {kind: sorted(o.metadata.name for o in items) for kind, items in lists.items()}


def _cm(core, ns: str, name: str):
    try:
        return core.read_namespaced_config_map(name, ns)
    except client.ApiException:
        return None


def _policy(core, ns: str, gateway: str) -> dict | None:
    """The policy ConfigMap's document, verified with the Gateway's public key as a proxy reads it."""
    cm = _cm(core, ns, f"{gateway}-policy")
    if cm is None:
        return None
    verifier = verifier_of(client.CustomObjectsApi(core.api_client), ns, gateway)
    return json.loads(gzip.decompress(verifier.open(base64.b64decode(cm.binary_data["policy.json.gz"]))))


def _route(gateway: str, model: str, secret: str | None = None, region: str = "eu-west-1", extra: tuple = ()) -> dict:
    dep = {"name": "a", "model": model, "region": region}
    if secret:
        dep["apiKeySecretRef"] = {"name": secret, "key": "k"}
    return {"gateway": gateway, "modelName": model, "free": True, "deployments": [dep, *extra]}


def _external(core, ns: str, redis_server) -> dict:
    _secret(core, ns, "redis-url", {"url": redis_server.url})
    return {"redis": {"mode": "external", "urlSecretRef": {"name": "redis-url", "key": "url"}}}


EXPECTED_CHILDREN = {
    "deployments": ["main-proxy"],
    "statefulsets": ["main-redis"],
    "networkpolicies": ["main-proxy", "main-redis"],
    "secrets": [
        "main-kubegate-audit-key",
        "main-kubegate-audit-log-signing",
        "main-kubegate-pii",
        "main-kubegate-policy-signing",
        "main-kubegate-redis",
    ],
    "services": ["main", "main-metrics", "main-redis"],
    "configmaps": ["main-litellm-config", "main-policy"],
    "horizontalpodautoscalers": ["main-proxy"],
    "poddisruptionbudgets": ["main-proxy"],
}
NO_CHILDREN = {kind: [] for kind in CHILD_KINDS}


def test_gateway_deletion_removes_children_without_finalizers(operator_kubeconfig, admin_api, namespace):  # noqa: F811
    custom, core = client.CustomObjectsApi(admin_api), client.CoreV1Api(admin_api)
    _secret(core, namespace, "up", {"k": "sk-test"})
    with running_operator(operator_kubeconfig, namespace):
        _create(custom, namespace, "llmgateways", _obj("LLMGateway", "main", {}))
        _create(custom, namespace, "modelroutes", _obj("ModelRoute", "m", _route("main", "m", "up")))
        _create(custom, namespace, "tenants", _obj("Tenant", "t", {"gateway": "main"}))
        _create(custom, namespace, "budgets", _obj("Budget", "b", {"tenant": "t", "limitUSD": "5"}))
        _wait("children", lambda: _children(admin_api, namespace, "main") == EXPECTED_CHILDREN)
        _wait("tenant Ready", lambda: _ready(_get(custom, namespace, "tenants", "t")))
        _wait("route Ready", lambda: _ready(_get(custom, namespace, "modelroutes", "m")))
        first_uid = _get(custom, namespace, "llmgateways", "main")["metadata"]["uid"]
        # No kopf finalizer anywhere: a stopped or uninstalled operator cannot block a deletion.
        for plural, name in (("llmgateways", "main"), ("tenants", "t"), ("budgets", "b"), ("modelroutes", "m")):
            assert not _get(custom, namespace, plural, name)["metadata"].get("finalizers"), plural

        # Foreground: the Gateway stays (deletionTimestamp set) until the garbage collector removed every child;
        # an operator re-creating children meanwhile would keep it from ever going.
        custom.delete_namespaced_custom_object(
            GROUP, VERSION, namespace, "llmgateways", "main", body={"propagationPolicy": "Foreground"}
        )
        _wait("Gateway gone", lambda: _get(custom, namespace, "llmgateways", "main") is None, timeout=90)
        assert _children(admin_api, namespace, "main") == NO_CHILDREN

        # A change after the deletion reaches the operator, which reports the missing Gateway and builds nothing.
        custom.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, "tenants", "t", {"spec": {"allowedRegions": ["eu-west-1"]}}
        )
        _wait(
            "tenant GatewayNotFound",
            lambda: (
                (t := _get(custom, namespace, "tenants", "t"))
                and t["status"]["observedGeneration"] == t["metadata"]["generation"]
                and t["status"]["conditions"][0]["reason"] == "GatewayNotFound"
            ),
        )
        assert _get(custom, namespace, "modelroutes", "m")["status"]["conditions"][0]["reason"] == "GatewayNotFound"
        assert _children(admin_api, namespace, "main") == NO_CHILDREN
        # The tenant's key Secret belongs to the Tenant, not the Gateway: it survives, unchanged.
        key_before = core.read_namespaced_secret("t-kubegate-key", namespace).data

        # Re-created under the same name (new uid): every child comes back, owned by the new Gateway.
        _create(custom, namespace, "llmgateways", _obj("LLMGateway", "main", {}))
        _wait("children again", lambda: _children(admin_api, namespace, "main") == EXPECTED_CHILDREN)
        new_uid = _get(custom, namespace, "llmgateways", "main")["metadata"]["uid"]
        assert new_uid != first_uid
        dep = client.AppsV1Api(admin_api).read_namespaced_deployment("main-proxy", namespace)
        assert [r.uid for r in dep.metadata.owner_references] == [new_uid]
        _wait("tenant Ready again", lambda: _ready(_get(custom, namespace, "tenants", "t")))
        assert core.read_namespaced_secret("t-kubegate-key", namespace).data == key_before

    # With the operator stopped, the namespace (Gateway, Budget, children and all) still deletes.
    core.delete_namespace(namespace)

    def namespace_gone() -> bool:
        try:
            core.read_namespace(namespace)
        except client.ApiException as exc:
            return exc.status == 404
        return False

    _wait("namespace deleted", namespace_gone, timeout=120)


def _operator_process(kubeconfig: str, namespace: str, log: Path) -> OperatorProcess:
    """The operator as its own process (as in a pod), so that it can crash for real and never outlive the test."""
    argv = [
        sys.executable,
        "-m",
        "kopf",
        "run",
        "--standalone",
        "--namespace",
        namespace,
        "-m",
        "gateway_operator.handlers",
    ]
    return OperatorProcess(argv, dict(FAST_LOOPS), Path(kubeconfig), log).start()


def test_restart_mid_reconcile_converges_without_duplicates(
    operator_kubeconfig,  # noqa: F811
    admin_api,
    namespace,
    redis_server,
    audit_log,
    tmp_path,
):
    custom, core = client.CustomObjectsApi(admin_api), client.CoreV1Api(admin_api)
    gw = f"rs-{namespace}"
    spec = _external(core, namespace, redis_server)
    _secret(core, namespace, "up", {"k": "sk-test"})
    tenants = [f"t{i}" for i in range(8)]
    models = ["m0", "m1", "m2"]
    # t0's Budget is already at 60 % (spend recorded by the proxies): exactly one BudgetNotify Event, whichever
    # operator life sees it first.
    notify_spec = {
        "tenant": "t0",
        "limitUSD": "10",
        "thresholds": [{"percent": 50, "action": "notify"}, {"percent": 100, "action": "block"}],
    }
    budget = render_budget(crd.Budget.model_validate(_obj("Budget", "t0-b", notify_spec)))
    redis_server.client().hincrby(
        period_key(GatewayKeys(namespace, gw), budget, period_bounds(budget)[0]), "spent", 6 * MICRO
    )

    def key_secrets() -> dict[str, list]:
        items = core.list_namespaced_secret(namespace, label_selector="kubegate.dev/component=tenant-key").items
        by_tenant = collections.defaultdict(list)
        for s in items:
            by_tenant[s.metadata.labels["kubegate.dev/tenant"]].append(s.data["api-key"])
        return by_tenant

    def create_tenant(t: str) -> None:
        _create(custom, namespace, "tenants", _obj("Tenant", t, {"gateway": gw, "allowedModels": ["*"]}))
        budget_spec = notify_spec if t == "t0" else {"tenant": t, "limitUSD": "10"}
        _create(custom, namespace, "budgets", _obj("Budget", f"{t}-b", budget_spec))

    first = _operator_process(operator_kubeconfig, namespace, tmp_path / "first.log")
    try:
        _create(custom, namespace, "llmgateways", _obj("LLMGateway", gw, spec))
        for m in models:
            _create(custom, namespace, "modelroutes", _obj("ModelRoute", m, _route(gw, m, "up")))
        for t in tenants[:4]:
            create_tenant(t)
        # Poll tightly: one reconcile writes all key Secrets within a few hundred milliseconds.
        deadline = time.monotonic() + 90
        while not key_secrets():
            assert first.alive() and time.monotonic() < deadline, first.tail()
            time.sleep(0.01)
    finally:
        first.kill()  # a crash mid-reconcile: no graceful shutdown, requests in flight are cut
    # Half the Tenants arrive while no operator runs: the next one has work left whenever the crash happened.
    for t in tenants[4:]:
        create_tenant(t)
    before = key_secrets()
    assert len(before) < len(tenants), "nothing left to do"

    second = _operator_process(operator_kubeconfig, namespace, tmp_path / "second.log")
    try:

        def converged() -> bool:
            p = _policy(core, namespace, gw)
            return bool(
                p
                and sorted(t["id"] for t in p["tenants"]) == tenants
                and len(p["budgets"]) == len(tenants)
                and sorted(m["name"] for m in p["models"]) == models
                and all(_ready(_get(custom, namespace, "tenants", t), "Rendered") for t in tenants)
                and all(_ready(_get(custom, namespace, "budgets", f"{t}-b"), "Refreshed") for t in tenants)
                and all(_ready(_get(custom, namespace, "modelroutes", m), "Rendered") for m in models)
            )

        second.wait_for("convergence after the restart", converged, timeout=120)
        status = _get(custom, namespace, "llmgateways", gw)["status"]
        assert {c["type"]: c["status"] for c in status["conditions"]} == {
            "Ready": "True",
            "Reconciled": "True",
            "PolicyPublished": "True",
        }
        doc_key, rev_key, _ = gateway_keys(namespace, gw)
        r = redis_server.client()
        assert int(r.get(rev_key)) == status["policyRevision"]
        assert {t.id for t in published(custom, namespace, gw, r.get(doc_key)).tenants} == set(tenants)
        assert _get(custom, namespace, "budgets", "t0-b")["status"]["state"] == "notify"
        _wait(
            "the BudgetNotify Event",
            lambda: any(e.reason == "BudgetNotify" for e in core.list_namespaced_event(namespace).items),
        )
        audit_log.quiet(operator_user(namespace))  # several refresh rounds: any duplicate would be posted by now
    finally:
        second.stop(grace=30)
    for bad in ("Forbidden", "HTTP 403", "Traceback"):
        assert bad not in second.output(), second.tail()

    after = key_secrets()
    assert sorted(after) == tenants
    assert all(len(values) == 1 for values in after.values()), after.keys()
    for tenant, values in before.items():
        assert after[tenant] == values, f"key of {tenant} changed across the restart"
    children = _children(admin_api, namespace, gw)
    assert children == {
        "deployments": [f"{gw}-proxy"],
        "statefulsets": [],  # external Redis: no managed one, and no policy fencing it
        "networkpolicies": [f"{gw}-proxy"],
        "secrets": [
            f"{gw}-kubegate-audit-key",
            f"{gw}-kubegate-audit-log-signing",
            f"{gw}-kubegate-pii",
            f"{gw}-kubegate-policy-signing",
        ],
        "services": [gw, f"{gw}-metrics"],
        "configmaps": [f"{gw}-litellm-config", f"{gw}-policy"],
        "horizontalpodautoscalers": [f"{gw}-proxy"],
        "poddisruptionbudgets": [f"{gw}-proxy"],
    }
    # The operator's own Events (the API server may add its own, e.g. a ClusterIP repair after the crash).
    events = collections.Counter(
        (e.involved_object.name, e.reason)
        for e in core.list_namespaced_event(namespace).items
        if (e.source and e.source.component == "kubegate-operator") or e.reporting_component == "kubegate-operator"
    )
    assert events == {("t0-b", "BudgetNotify"): 1}, events  # one crossing, one Event, across both lives


def _change_tenant_and_count_writes(custom, core, audit_log, ns: str, gw: str, tenant: str) -> list[str]:
    user = operator_user(ns)
    start = audit_log.quiet(user)
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, ns, "tenants", tenant, {"spec": {"allowedRegions": ["eu-west-1"]}}
    )

    def applied() -> bool:
        p = _policy(core, ns, gw)
        t = _get(custom, ns, "tenants", tenant)
        return bool(
            p
            and any(x["id"] == tenant and x["allowed_regions"] == ["eu-west-1"] for x in p["tenants"])
            and t["status"]["observedGeneration"] == t["metadata"]["generation"]
        )

    _wait(f"{tenant} change in the policy", applied)
    audit_log.quiet(user)
    return audit_log.writes(user, start)


def test_one_tenant_change_costs_a_constant_number_of_writes(
    operator_kubeconfig,  # noqa: F811
    admin_api,
    namespace,
    redis_server,
    audit_log,
):
    custom, core = client.CustomObjectsApi(admin_api), client.CoreV1Api(admin_api)
    spec = _external(core, namespace, redis_server)
    sizes = {f"small-{namespace}": 5, f"large-{namespace}": 20}
    user = operator_user(namespace)
    with running_operator(operator_kubeconfig, namespace):
        for gw, n in sizes.items():
            _create(custom, namespace, "llmgateways", _obj("LLMGateway", gw, spec))
            for i in range(n):
                _create(custom, namespace, "tenants", _obj("Tenant", f"{gw}-t{i}", {"gateway": gw}))
                _create(
                    custom,
                    namespace,
                    "budgets",
                    _obj("Budget", f"{gw}-b{i}", {"tenant": f"{gw}-t{i}", "limitUSD": "1"}),
                )
        for gw, n in sizes.items():
            _wait(
                f"{gw} complete", lambda gw=gw, n=n: len((_policy(core, namespace, gw) or {}).get("budgets", [])) == n
            )
        _wait(
            "every budget refreshed",
            lambda: all(
                _ready(b, "Refreshed")
                for b in custom.list_namespaced_custom_object(GROUP, VERSION, namespace, "budgets")["items"]
            ),
        )

        # Idle: several resync and budget-refresh rounds (1 s each here) write nothing at all.
        idle_from = audit_log.quiet(user)
        assert audit_log.quiet(user, seconds=4) and audit_log.writes(user, idle_from) == []

        counts = {
            gw: _change_tenant_and_count_writes(custom, core, audit_log, namespace, gw, f"{gw}-t3") for gw in sizes
        }
    small, large = (sorted(w.rsplit(" ", 1)[0] for w in counts[gw]) for gw in sizes)
    # The policy ConfigMap, that Tenant's status, the Gateway's status (new policy revision): nothing per sibling.
    assert small == large == ["patch configmaps", "patch llmgateways/status", "patch tenants/status"], counts


def test_route_with_missing_secret_is_left_out_until_the_secret_appears(
    operator_kubeconfig,  # noqa: F811
    admin_api,
    namespace,
):
    custom, core = client.CustomObjectsApi(admin_api), client.CoreV1Api(admin_api)
    apps = client.AppsV1Api(admin_api)
    _secret(core, namespace, "good-key", {"k": "sk-good"})
    _secret(core, namespace, "openai-eu", {"other": "sk-not-this-one"})  # the Secret exists, the key does not
    partial = _route(
        "main",
        "partial",
        "openai-eu",
        extra=(
            {
                "name": "b",
                "model": "partial",
                "region": "us-east-1",
                "apiKeySecretRef": {"name": "good-key", "key": "k"},
            },
        ),
    )

    def config() -> dict:
        return yaml.safe_load(core.read_namespaced_config_map("main-litellm-config", namespace).data["config.yaml"])

    def env_refs() -> set[str]:
        """Upstream key Secrets the pod references (the Gateway's own audit key and Redis password aside)."""
        dep = apps.read_namespaced_deployment("main-proxy", namespace)
        env = dep.spec.template.spec.containers[0].env
        own = {"main-kubegate-audit-key", "main-kubegate-redis"}
        return {e.value_from.secret_key_ref.name for e in env if e.value_from and e.value_from.secret_key_ref} - own

    def served() -> set[str]:
        return {e["model_info"]["id"] for e in config()["model_list"] if "@" not in e["model_info"]["id"]}

    with running_operator(operator_kubeconfig, namespace):
        _create(custom, namespace, "llmgateways", _obj("LLMGateway", "main", {}))
        _create(custom, namespace, "modelroutes", _obj("ModelRoute", "good", _route("main", "good", "good-key")))
        _create(custom, namespace, "modelroutes", _obj("ModelRoute", "partial", partial))
        _create(custom, namespace, "modelroutes", _obj("ModelRoute", "dark", _route("main", "dark", "nowhere")))
        _create(custom, namespace, "tenants", _obj("Tenant", "t", {"gateway": "main"}))
        _create(custom, namespace, "budgets", _obj("Budget", "b", {"tenant": "t", "limitUSD": "5"}))

        def reason(name: str) -> str | None:
            obj = _get(custom, namespace, "modelroutes", name)
            conds = {c["type"]: c for c in (obj.get("status") or {}).get("conditions", [])}
            return conds.get("Ready", {}).get("reason")

        _wait(
            "route conditions",
            lambda: (
                (reason("good"), reason("partial"), reason("dark"))
                == ("Rendered", "SecretKeyNotFound", "SecretNotFound")
            ),
        )
        dark = _get(custom, namespace, "modelroutes", "dark")["status"]["conditions"][0]
        assert dark["status"] == "False" and "'nowhere'" in dark["message"]
        partial_cond = _get(custom, namespace, "modelroutes", "partial")["status"]["conditions"][0]
        assert "'openai-eu'" in partial_cond["message"] and "'k'" in partial_cond["message"]
        statuses = json.dumps(
            [
                o.get("status")
                for p in ("modelroutes", "llmgateways")
                for o in custom.list_namespaced_custom_object(GROUP, VERSION, namespace, p)["items"]
            ]
        )
        assert "sk-not-this-one" not in statuses and "sk-good" not in statuses
        # The pod could start: no reference to a missing Secret or key; the other routes keep serving.
        _wait("model list without the unavailable deployments", lambda: served() == {"good/a", "partial/b"})
        assert env_refs() == {"good-key", "main-kubegate-pii"}
        assert sorted(m["name"] for m in _policy(core, namespace, "main")["models"]) == ["good", "partial"]
        checksum = apps.read_namespaced_deployment("main-proxy", namespace).spec.template.metadata.annotations[
            CHECKSUM_ANNOTATION
        ]

        # Printer columns: what `kubectl get` shows in READY for every kind.
        _wait("budget refreshed", lambda: (b := _get(custom, namespace, "budgets", "b")) and b.get("status"))
        assert _table_row(admin_api, namespace, "modelroutes", "dark")["Ready"] == "False"
        assert _table_row(admin_api, namespace, "modelroutes", "good")["Ready"] == "True"
        assert _table_row(admin_api, namespace, "llmgateways", "main")["Ready"] == "True"
        assert _table_row(admin_api, namespace, "tenants", "t")["Ready"] == "True"
        # Managed Redis cannot run here (no kubelet): the Budget's spend is unknown and it says so.
        assert _table_row(admin_api, namespace, "budgets", "b")["Ready"] == "False"

        # The key is added and the other Secret created: the resync picks both up, pods roll to the new model list.
        core.patch_namespaced_secret("openai-eu", namespace, {"stringData": {"k": "sk-eu"}})
        _secret(core, namespace, "nowhere", {"k": "sk-dark"})
        _wait("routes Ready", lambda: (reason("good"), reason("partial"), reason("dark")) == ("Rendered",) * 3)
        _wait("every deployment served", lambda: served() == {"good/a", "partial/a", "partial/b", "dark/a"})
        assert env_refs() == {"good-key", "openai-eu", "nowhere", "main-kubegate-pii"}
        after = apps.read_namespaced_deployment("main-proxy", namespace).spec.template.metadata.annotations
        assert after[CHECKSUM_ANNOTATION] != checksum
        assert _table_row(admin_api, namespace, "modelroutes", "dark")["Ready"] == "True"
