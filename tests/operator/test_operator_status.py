"""Status conditions and Redis publication, with the operator running as its ServiceAccount (rbac.RULES)."""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime

import pytest
import redis.asyncio as aioredis
from gateway_operator.crd import models as crd
from gateway_operator.kube import client as kube_client
from gateway_operator.reconcile import budgets
from gateway_operator.reconcile import gateway as gw_reconcile
from gateway_operator.reconcile.checkpoints import checkpoint as checkpoint_round
from gateway_operator.render.gateway import render_budget
from kopf.testing import KopfRunner
from kubernetes import client

from gateway_plugins.audit import AuditWriter
from gateway_plugins.audit.writer import heads_key
from gateway_plugins.policy import hash_key
from gateway_plugins.policy.audit.chain import checkpoint_tag, decode_key, head_value
from gateway_plugins.policy.budget_state import MICRO, BudgetState
from gateway_plugins.policy.keys import GatewayKeys
from gateway_plugins.policy.periods import period_bounds, period_key
from tests.operator.test_operator_e2e import GROUP, VERSION, _wait, operator_kubeconfig  # noqa: F401
from tests.operator.trust import gateway_keys, published, verifier_of


def _obj(kind: str, name: str, spec: dict, annotations: dict | None = None) -> dict:
    meta = {"name": name, **({"annotations": annotations} if annotations else {})}
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": kind, "metadata": meta, "spec": spec}


def _condition(custom, ns: str, plural: str, name: str, kind: str) -> dict | None:
    obj = custom.get_namespaced_custom_object(GROUP, VERSION, ns, plural, name)
    return next((c for c in (obj.get("status") or {}).get("conditions", []) if c["type"] == kind), None)


def _reason(custom, ns, plural, name, kind, reason):
    def check():
        cond = _condition(custom, ns, plural, name, kind)
        return cond if cond and cond["reason"] == reason else None

    return _wait(f"{plural}/{name} {kind} reason {reason}", check)


@pytest.fixture
def operator(operator_kubeconfig, namespace, monkeypatch):  # noqa: F811
    monkeypatch.setenv("KUBECONFIG", operator_kubeconfig)
    monkeypatch.setenv("KUBEGATE_BUDGET_REFRESH_SECONDS", "1")
    monkeypatch.setenv("KUBEGATE_AUDIT_CHECKPOINT_SECONDS", "1")
    kube_client.reset()
    args = ["run", "--standalone", "--namespace", namespace, "-m", "gateway_operator.handlers"]
    with KopfRunner(args, timeout=90) as runner:
        yield runner
    assert runner.exception is None
    assert runner.exit_code == 0, runner.output[-3000:]
    # Not a bare "403": log timestamps carry milliseconds.
    assert "Forbidden" not in runner.output and "HTTP 403" not in runner.output, runner.output[-3000:]
    kube_client.reset()
    os.environ.pop("KUBECONFIG", None)


def _secret(core, ns: str, name: str, data: dict[str, str]) -> None:
    body = {"metadata": {"name": name}, "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}
    core.create_namespaced_secret(ns, body)


def test_missing_gateway_and_secret_give_false_ready_conditions(operator, admin_api, namespace):
    custom = client.CustomObjectsApi(admin_api)
    core = client.CoreV1Api(admin_api)
    custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, "tenants", _obj("Tenant", "early", {"gateway": "main"})
    )
    cond = _reason(custom, namespace, "tenants", "early", "Ready", "GatewayNotFound")
    assert cond["status"] == "False" and "main" in cond["message"]
    tenant = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "tenants", "early")
    assert tenant["status"]["observedGeneration"] == tenant["metadata"]["generation"]

    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "llmgateways", _obj("LLMGateway", "main", {}))
    cond = _reason(custom, namespace, "tenants", "early", "Ready", "Rendered")
    assert cond["status"] == "True"

    route = {
        "gateway": "main",
        "modelName": "gpt",
        "deployments": [
            {"name": "a", "model": "gpt-4o", "region": "eu-west-1", "apiKeySecretRef": {"name": "openai", "key": "k"}}
        ],
    }
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "modelroutes", _obj("ModelRoute", "gpt", route))
    cond = _reason(custom, namespace, "modelroutes", "gpt", "Ready", "SecretNotFound")
    assert cond["status"] == "False" and "openai" in cond["message"]
    orphan = {**route, "gateway": "nowhere"}
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "modelroutes", _obj("ModelRoute", "lost", orphan))
    assert _reason(custom, namespace, "modelroutes", "lost", "Ready", "GatewayNotFound")["status"] == "False"

    # The Secret appears: the next reconcile (timer or any change) marks the route Ready; no crash loop meanwhile.
    _secret(core, namespace, "openai", {"k": "sk-test"})
    gw_reconcile.reconcile(namespace, "main")
    assert _condition(custom, namespace, "modelroutes", "gpt", "Ready")["status"] == "True"
    # The max_tokens cap in force (the MaxTokens column): gpt-4o's output limit in LiteLLM's bundled model map.
    status = {
        r: custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "modelroutes", r)["status"]
        for r in ("gpt", "lost")
    }
    assert status["gpt"]["maxOutputTokens"] == 16384 and "maxOutputTokens" not in status["lost"]
    assert _table_row(admin_api, namespace, "modelroutes", "gpt")["MaxTokens"] == 16384
    # Managed Redis has no kubelet here: unreachable, reported, and reconciliation still succeeded.
    published = _reason(custom, namespace, "llmgateways", "main", "PolicyPublished", "RedisUnreachable")
    assert published["status"] == "False"
    assert _condition(custom, namespace, "llmgateways", "main", "Reconciled")["status"] == "True"

    # Nothing changed: a reconcile writes no status either.
    objs = lambda p: {  # noqa: E731
        o["metadata"]["name"]: o["metadata"]["resourceVersion"]
        for o in custom.list_namespaced_custom_object(GROUP, VERSION, namespace, p)["items"]
    }
    before = {p: objs(p) for p in ("tenants", "modelroutes", "llmgateways")}
    gw_reconcile.reconcile(namespace, "main")
    assert {p: objs(p) for p in ("tenants", "modelroutes", "llmgateways")} == before


def test_policy_published_to_external_redis(operator, admin_api, namespace, redis_server):
    custom = client.CustomObjectsApi(admin_api)
    core = client.CoreV1Api(admin_api)
    _secret(core, namespace, "redis-url", {"url": redis_server.url})
    spec = {"redis": {"mode": "external", "urlSecretRef": {"name": "redis-url", "key": "url"}}}
    gw_name = f"ext-{namespace}"  # Redis is shared by the session: keep the key space per test
    r = redis_server.client()
    doc_key, rev_key, _ = gateway_keys(namespace, gw_name)
    r.set(rev_key, 41)  # left by an earlier life of this Gateway (status lost): the operator must climb above it
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "llmgateways", _obj("LLMGateway", gw_name, spec))
    custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, "tenants", _obj("Tenant", "a", {"gateway": gw_name})
    )

    def tenants_in_redis():
        raw = r.get(doc_key)
        return {t.id for t in published(custom, namespace, gw_name, raw).tenants} if raw else set()

    _wait("tenant a in Redis", lambda: tenants_in_redis() == {"a"})
    first = int(r.get(rev_key))
    assert first > 41
    assert _reason(custom, namespace, "llmgateways", gw_name, "PolicyPublished", "Published")["status"] == "True"

    custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, "tenants", _obj("Tenant", "b", {"gateway": gw_name})
    )
    _wait("tenant b in Redis", lambda: tenants_in_redis() == {"a", "b"})
    assert int(r.get(rev_key)) > first
    key_b = base64.b64decode(core.read_namespaced_secret("b-kubegate-key", namespace).data["api-key"]).decode()
    policy = published(custom, namespace, gw_name, r.get(doc_key))
    assert [k.sha256 for k in next(t for t in policy.tenants if t.id == "b").keys] == [hash_key(key_b)]
    status = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "llmgateways", gw_name)["status"]
    assert status["policyRevision"] == int(r.get(rev_key))

    # A deleted Tenant leaves the published policy (and its revision still only rises).
    second = int(r.get(rev_key))
    custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, "tenants", "a")
    _wait("tenant a gone from Redis", lambda: tenants_in_redis() == {"b"})
    assert int(r.get(rev_key)) > second


def _events(core, ns: str, name: str) -> set[str]:
    return {e.reason for e in core.list_namespaced_event(ns).items if e.involved_object.name == name}


def _table_row(admin_api, ns: str, plural: str, name: str) -> dict[str, object]:
    """What ``kubectl get`` prints: the CRD's printer columns, as the API server renders them."""
    response = admin_api.call_api(
        "GET",
        f"{admin_api.configuration.host}/apis/{GROUP}/{VERSION}/namespaces/{ns}/{plural}/{name}",
        header_params={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io", **_auth(admin_api)},
    )
    response.read()
    table = json.loads(response.data)
    names = [c["name"] for c in table["columnDefinitions"]]
    return dict(zip(names, table["rows"][0]["cells"], strict=True))


def _auth(admin_api) -> dict[str, str]:
    headers: dict[str, str] = {}
    admin_api.update_params_for_auth(headers, [], ["BearerToken"], "", "GET", None)
    return headers


def test_budget_status_refreshed_from_redis_with_threshold_events(operator, admin_api, namespace, redis_server):
    custom = client.CustomObjectsApi(admin_api)
    core = client.CoreV1Api(admin_api)
    _secret(core, namespace, "redis-url", {"url": redis_server.url})
    spec = {"redis": {"mode": "external", "urlSecretRef": {"name": "redis-url", "key": "url"}}}
    gw_name = f"bud-{namespace}"
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "llmgateways", _obj("LLMGateway", gw_name, spec))
    custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, "tenants", _obj("Tenant", "t", {"gateway": gw_name})
    )
    budget_spec = {
        "tenant": "t",
        "limitUSD": "10",
        "thresholds": [{"percent": 50, "action": "notify"}, {"percent": 100, "action": "block"}],
    }
    obj = custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "budgets", _obj("Budget", "m", budget_spec))
    budget = render_budget(crd.Budget.model_validate(obj))
    start, _ = period_bounds(budget)
    key = period_key(GatewayKeys(namespace, gw_name), budget, start)  # the limits engine's own key layout
    r = redis_server.client()

    def status_state(state):
        def check():
            s = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "budgets", "m").get("status") or {}
            return s if s.get("state") == state else None

        return check

    ok = _wait("budget ok", status_state("ok"))
    assert ok["spentUSD"] == "0.0000" and ok["percent"] == 0
    assert datetime.fromisoformat(ok["periodStart"]) == start
    assert _events(core, namespace, "m") == set()

    r.hincrby(key, "spent", 6 * MICRO)
    notify = _wait("budget notify", status_state("notify"))
    assert notify["spentUSD"] == "6.0000" and notify["percent"] == 60
    _wait("BudgetNotify event", lambda: "BudgetNotify" in _events(core, namespace, "m"))
    row = _table_row(admin_api, namespace, "budgets", "m")
    assert (row["Spent"], row["Percent"], row["State"]) == ("6.0000", 60, "notify")

    r.hincrby(key, "spent", 5 * MICRO)
    blocked = _wait("budget blocked", status_state("blocked"))
    assert blocked["percent"] == 110
    _wait("BudgetBlocked event", lambda: "BudgetBlocked" in _events(core, namespace, "m"))


def test_a_token_budget_status_shows_tokens_and_the_nearer_limit(operator, admin_api, namespace, redis_server):
    custom = client.CustomObjectsApi(admin_api)
    core = client.CoreV1Api(admin_api)
    _secret(core, namespace, "redis-url", {"url": redis_server.url})
    spec = {"redis": {"mode": "external", "urlSecretRef": {"name": "redis-url", "key": "url"}}}
    gw_name = f"tok-{namespace}"
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "llmgateways", _obj("LLMGateway", gw_name, spec))
    custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, "tenants", _obj("Tenant", "t", {"gateway": gw_name})
    )
    thresholds = [{"percent": 50, "action": "notify"}, {"percent": 100, "action": "block"}]
    both = {"tenant": "t", "limitUSD": "10", "limitTokens": 1000, "thresholds": thresholds}
    only = {"tenant": "t", "limitTokens": 2000, "period": "daily", "thresholds": [{"percent": 100, "action": "block"}]}
    keys = {}
    for name, budget_spec in (("both", both), ("only", only)):
        obj = custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, "budgets", _obj("Budget", name, budget_spec)
        )
        budget = render_budget(crd.Budget.model_validate(obj))
        keys[name] = period_key(GatewayKeys(namespace, gw_name), budget, period_bounds(budget)[0])
    r = redis_server.client()

    def status(name, check):
        def read():
            s = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "budgets", name).get("status") or {}
            return s if check(s) else None

        return read

    r.hset(keys["both"], mapping={"spent": 1 * MICRO, "spent_tokens": 600})  # 10 % of the USD, 60 % of the tokens
    both_status = _wait("token notify", status("both", lambda s: s.get("state") == "notify"))
    assert both_status["percent"] == 60 and both_status["spentTokens"] == 600
    assert (both_status["remainingTokens"], both_status["remainingUSD"]) == (400, "9.0000")
    _wait("BudgetNotify event", lambda: "BudgetNotify" in _events(core, namespace, "both"))
    row = _table_row(admin_api, namespace, "budgets", "both")
    assert (row["Tokens"], row["SpentTokens"], row["Percent"], row["State"]) == (1000, 600, 60, "notify")

    r.hset(keys["only"], "spent_tokens", 2500)
    only_status = _wait("token blocked", status("only", lambda s: s.get("state") == "blocked"))
    assert only_status["percent"] == 125 and only_status["remainingTokens"] == 0
    assert "remainingUSD" not in only_status and only_status["spentUSD"] == "0.0000"
    _wait("BudgetBlocked event", lambda: "BudgetBlocked" in _events(core, namespace, "only"))


def test_a_threshold_event_is_posted_once_when_its_status_was_never_written(
    operator_kubeconfig,  # noqa: F811
    admin_api,
    namespace,
    monkeypatch,
):
    """An operator that crashes after a threshold's Event and before the status recording it: the next one decides
    the same threshold again, and the Event's fixed name (Budget, period, threshold) keeps it from being posted
    twice. A new period is a new Event."""
    custom, core = client.CustomObjectsApi(admin_api), client.CoreV1Api(admin_api)
    spec = {"tenant": "t", "limitUSD": "10", "thresholds": [{"percent": 50, "action": "notify"}]}
    raw = custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "budgets", _obj("Budget", "b", spec))
    monkeypatch.setenv("KUBECONFIG", operator_kubeconfig)  # posted as the operator's ServiceAccount
    kube_client.reset()
    try:

        def life(start: datetime, end: datetime) -> list[float]:
            state = BudgetState(6.0, 0.0, 60.0, "notify", start, end)
            reached, _ = budgets._notify(raw, None, state, previous=[])  # nothing recorded in the status
            return reached

        december = (datetime(2026, 12, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))
        assert life(*december) == [50.0]
        assert life(*december) == [50.0]
        events = [e for e in core.list_namespaced_event(namespace).items if e.reason == "BudgetNotify"]
        assert len(events) == 1 and events[0].involved_object.uid == raw["metadata"]["uid"]
        life(datetime(2027, 1, 1, tzinfo=UTC), datetime(2027, 2, 1, tzinfo=UTC))
        assert sum(e.reason == "BudgetNotify" for e in core.list_namespaced_event(namespace).items) == 2
    finally:
        kube_client.reset()
        os.environ.pop("KUBECONFIG", None)


def test_key_rotation_once_per_nonce(operator, admin_api, namespace, redis_server):
    custom = client.CustomObjectsApi(admin_api)
    core = client.CoreV1Api(admin_api)
    _secret(core, namespace, "redis-url", {"url": redis_server.url})
    spec = {"redis": {"mode": "external", "urlSecretRef": {"name": "redis-url", "key": "url"}}}
    gw_name = f"rot-{namespace}"
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "llmgateways", _obj("LLMGateway", gw_name, spec))
    # No grace period: the old key stops at once (grace periods: test_key_rotation_grace_period).
    tenant_spec = {"gateway": gw_name, "keyRotationGracePeriod": "0s"}
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "tenants", _obj("Tenant", "t", tenant_spec))
    r = redis_server.client()
    doc_key = gateway_keys(namespace, gw_name)[0]

    def key() -> str:
        return base64.b64decode(core.read_namespaced_secret("t-kubegate-key", namespace).data["api-key"]).decode()

    def hashes_in_redis() -> list[str]:
        raw = r.get(doc_key)
        tenants = published(custom, namespace, gw_name, raw).tenants if raw else []
        return [k.sha256 for t in tenants if t.id == "t" for k in t.keys]

    first = _wait("key Secret", lambda: _secret_key_or_none(core, namespace))
    _wait("first key in Redis", lambda: hashes_in_redis() == [hash_key(first)])

    def rotate(nonce: str) -> None:
        body = {"metadata": {"annotations": {gw_reconcile.ROTATE_ANNOTATION: nonce}}}
        custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, "tenants", "t", body)

    rotate("n1")
    second = _wait("rotated key", lambda: (k := key()) != first and k)
    secret = core.read_namespaced_secret("t-kubegate-key", namespace)
    assert secret.metadata.annotations[gw_reconcile.ROTATION_HANDLED] == "n1"
    _wait(
        "nonce recorded in status",
        lambda: (
            custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "tenants", "t")["status"].get("keyRotation")
            == "n1"
        ),
    )
    _wait("old hash gone from Redis", lambda: hashes_in_redis() == [hash_key(second)])
    policy_cm = _wait("policy ConfigMap", lambda: _cm_policy(core, namespace, gw_name))
    assert [k["sha256"] for t in policy_cm["tenants"] for k in t["keys"]] == [hash_key(second)]

    # The same nonce again (any later reconcile) never generates another key.
    gw_reconcile.reconcile(namespace, gw_name)
    custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, "tenants", "t", {"spec": {"failOpen": True}})
    _wait("tenant change handled", lambda: _cm_policy(core, namespace, gw_name)["tenants"][0].get("fail_open"))
    assert key() == second

    rotate("n2")
    third = _wait("second rotation", lambda: (k := key()) != second and k)
    assert third != first
    _wait("newest hash only", lambda: hashes_in_redis() == [hash_key(third)])


def test_key_rotation_grace_period_and_deleted_secret(operator, admin_api, namespace, redis_server):
    """Both keys in the policy during the grace period, the old one with its expiry (which the proxies enforce,
    tests/dataplane/test_key_grace_proxy.py); status shows both ids; a deleted key Secret is an Event and status."""
    custom = client.CustomObjectsApi(admin_api)
    core = client.CoreV1Api(admin_api)
    _secret(core, namespace, "redis-url", {"url": redis_server.url})
    spec = {"redis": {"mode": "external", "urlSecretRef": {"name": "redis-url", "key": "url"}}}
    gw_name = f"grace-{namespace}"
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "llmgateways", _obj("LLMGateway", gw_name, spec))
    tenant_spec = {"gateway": gw_name, "keyRotationGracePeriod": "1h30m"}
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "tenants", _obj("Tenant", "t", tenant_spec))
    r = redis_server.client()
    doc_key = gateway_keys(namespace, gw_name)[0]

    def keys_in_redis() -> dict[str, int | None]:
        raw = r.get(doc_key)
        tenants = published(custom, namespace, gw_name, raw).tenants if raw else []
        return {k.sha256: k.not_after for t in tenants if t.id == "t" for k in t.keys}

    def tenant_status() -> dict:
        return custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "tenants", "t").get("status") or {}

    first = _wait("key Secret", lambda: _secret_key_or_none(core, namespace))
    _wait("first key in Redis", lambda: keys_in_redis() == {hash_key(first): None})
    _wait("key id in status", lambda: (tenant_status().get("keys") or {}).get("current") == hash_key(first)[:12])
    before = int(time.time())
    body = {"metadata": {"annotations": {gw_reconcile.ROTATE_ANNOTATION: "g1"}}}
    custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, "tenants", "t", body)
    second = _wait("rotated key", lambda: (k := _secret_key_or_none(core, namespace)) != first and k)
    after = int(time.time())
    both = _wait("both keys in Redis", lambda: k if len(k := keys_in_redis()) == 2 else None)
    assert both[hash_key(second)] is None
    expiry = both[hash_key(first)]
    assert before + 5400 <= expiry <= after + 5400
    keys_status = _wait("status with both ids", lambda: (s := tenant_status().get("keys") or {}).get("previous") and s)
    assert keys_status == {
        "current": hash_key(second)[:12],
        "previous": hash_key(first)[:12],
        "previousExpiresAt": datetime.fromtimestamp(expiry, UTC).isoformat().replace("+00:00", "Z"),
    }

    # The key Secret is deleted by accident: a new key, a Warning Event and the status say so.
    core.delete_namespaced_secret("t-kubegate-key", namespace)
    third = _wait("a new key", lambda: (k := _secret_key_or_none(core, namespace)) not in (None, second) and k)
    _wait("KeySecretRecreated event", lambda: "KeySecretRecreated" in _events(core, namespace, "t"))
    recreated = _wait("status says so", lambda: (tenant_status().get("keys") or {}).get("secretRecreated"))
    assert hash_key(second)[:12] in recreated and hash_key(third)[:12] in recreated and "no longer works" in recreated
    _wait("only the new key in Redis", lambda: keys_in_redis() == {hash_key(third): None})


def _secret_key_or_none(core, ns: str) -> str | None:
    try:
        secret = core.read_namespaced_secret("t-kubegate-key", ns)
    except client.ApiException:
        return None
    return base64.b64decode(secret.data["api-key"]).decode()


def _cm_policy(core, ns: str, gateway: str) -> dict | None:
    try:
        cm = core.read_namespaced_config_map(f"{gateway}-policy", ns)
    except client.ApiException:
        return None
    blob = base64.b64decode(cm.binary_data["policy.json.gz"])
    try:
        verifier = verifier_of(client.CustomObjectsApi(core.api_client), ns, gateway, wait=0)
    except KeyError:  # status not written yet
        return None
    return json.loads(gzip.decompress(verifier.open(blob)))


def test_audit_checkpoints_outside_redis_catch_a_truncated_tail(operator, admin_api, namespace, redis_server, tmp_path):
    """The operator copies tag-verified chain heads into a ConfigMap; a tail truncated in Redis (head moved back to
    a genuine older value) is refused by the operator and reported by `kubegate audit verify --checkpoints`."""
    custom = client.CustomObjectsApi(admin_api)
    core = client.CoreV1Api(admin_api)
    _secret(core, namespace, "redis-url", {"url": redis_server.url})
    spec = {"redis": {"mode": "external", "urlSecretRef": {"name": "redis-url", "key": "url"}}}
    gw_name = f"cp-{namespace}"
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "llmgateways", _obj("LLMGateway", gw_name, spec))
    secret = _wait("audit key Secret", lambda: _read_secret(core, namespace, f"{gw_name}-kubegate-audit-key"))
    key_b64 = base64.b64decode(secret.data["audit-key"]).decode()
    key = decode_key(key_b64)
    stream = GatewayKeys(namespace, gw_name).audit_stream

    async def write() -> str:
        conn = aioredis.from_url(redis_server.url)
        writer = AuditWriter(conn, stream, key=key, batch=5)
        await writer.start()
        for i in range(10):
            writer.submit({"v": 1, "request_id": f"r{i}"})
        await writer.close()
        await conn.aclose()
        return writer.chain

    chain = asyncio.run(write())

    def checkpoints() -> dict:
        try:
            cm = core.read_namespaced_config_map(f"{gw_name}-audit-checkpoints", namespace)
        except client.ApiException:
            return {}
        return json.loads(cm.data["checkpoints.json"])

    _wait("checkpoint at seq 10", lambda: checkpoints().get(chain, "").startswith("10:"))
    # The transparency log (#23): the same round signs a checkpoint of the 10 records with the Gateway's log key,
    # whose vkey is in the status and the ConfigMap; a proof and its check need no audit key.
    cm = _wait("signed log checkpoint", lambda: _log_checkpoint(core, namespace, gw_name, 10))
    gw_obj = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "llmgateways", gw_name)
    vkey = gw_obj["status"]["auditLogPublicKey"]
    assert vkey == cm.data["tlog-public-key"]
    assert vkey.startswith(f"kubegate.dev/{namespace}/{gw_name}/{gw_obj['metadata']['uid'].replace('-', '')[:8]}+")
    assert core.read_namespaced_secret(f"{gw_name}-kubegate-audit-log-signing", namespace).data["vkey"]
    cp_note = tmp_path / "checkpoint"
    cp_note.write_text(cm.data["tlog-checkpoint"])
    audit = [sys.executable, "-m", "gateway_operator.audit_cli"]
    where = ["--redis-url", redis_server.url, "--namespace", namespace, "--gateway", gw_name]
    no_key = {k: v for k, v in os.environ.items() if k != "KUBEGATE_AUDIT_KEY"}
    done = subprocess.run(
        [*audit, "prove", "r3", *where, "--checkpoint", str(cp_note)],
        capture_output=True,
        text=True,
        timeout=60,
        env=no_key,
    )
    assert done.returncode == 0 and json.loads(done.stdout)["leaf_index"] == 3, done.stderr
    (tmp_path / "proof.json").write_text(done.stdout)
    done = subprocess.run(
        [*audit, "verify", "--public-key", vkey, "--proof", str(tmp_path / "proof.json")],
        capture_output=True, text=True, timeout=60, env=no_key,
    )  # fmt: skip
    assert done.returncode == 0 and "record 3 of the 10-record log" in done.stdout, done.stdout + done.stderr
    r = redis_server.client()
    entries = r.xrange(stream)
    r.delete(stream)
    for sid, fields in entries[:5]:
        r.xadd(stream, fields, id=sid)
    five = json.loads(entries[4][1][b"r"])["hash"]
    r.hset(heads_key(stream), chain, head_value(5, five, checkpoint_tag(key, chain, 5, five)))
    # One round as the operator's loop runs it (as its ServiceAccount): the rolled-back head is refused.
    refused = checkpoint_round(namespace, gw_name)
    assert refused == [f"{chain}: head seq 5 is behind checkpoint seq 10 (tail truncated)"]
    assert checkpoints()[chain].startswith("10:")
    cp_file = tmp_path / "checkpoints.json"
    cp_file.write_text(json.dumps(checkpoints()))
    cmd = [sys.executable, "-m", "gateway_operator.audit_cli", "verify", "--redis-url", redis_server.url]
    cmd += ["--namespace", namespace, "--gateway", gw_name, "--checkpoints", str(cp_file)]
    env = {**os.environ, "KUBEGATE_AUDIT_KEY": key_b64}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 1 and "tail truncated" in done.stderr, done.stdout + done.stderr
    # The signed log says so too, with the public key only.
    done = subprocess.run(
        [*audit, "verify", "--public-key", vkey, *where, "--checkpoint", str(cp_note)],
        capture_output=True, text=True, timeout=60, env=no_key,
    )  # fmt: skip
    assert done.returncode == 1 and "holds 5 records of the log but the checkpoint says 10" in done.stderr, done.stderr


def _log_checkpoint(core, ns: str, gw: str, size: int):
    try:
        cm = core.read_namespaced_config_map(f"{gw}-audit-checkpoints", ns)
    except client.ApiException:
        return None
    note = (cm.data or {}).get("tlog-checkpoint") or ""
    return cm if note.split("\n")[1:2] == [str(size)] else None


def _read_secret(core, ns: str, name: str):
    try:
        return core.read_namespaced_secret(name, ns)
    except client.ApiException:
        return None


def test_the_operator_exports_segments_and_carries_witness_cosignatures(
    operator, admin_api, namespace, redis_server, tmp_path, monkeypatch
):
    """#23 items 3 and 4 with the operator running: spec.audit.export writes sealed segments to the export
    directory (checked with the public key only) and moves the stream's exported mark; a witness's cosigned
    checkpoint handed in through ConfigMap key tlog-cosignatures is carried into tlog-witnessed-checkpoint."""
    from gateway_plugins.policy.audit.note import Verifier
    from gateway_plugins.policy.audit.segments import segments, verify_segments
    from gateway_plugins.policy.audit.witness import Cosigner, Witness, add_cosignatures, cosigned_by, split_note
    from gateway_plugins.policy.keys import audit_exported

    monkeypatch.setenv("KUBEGATE_AUDIT_EXPORT_DIR", str(tmp_path / "pv"))
    custom = client.CustomObjectsApi(admin_api)
    core = client.CoreV1Api(admin_api)
    _secret(core, namespace, "redis-url", {"url": redis_server.url})
    spec = {
        "redis": {"mode": "external", "urlSecretRef": {"name": "redis-url", "key": "url"}},
        "audit": {"export": {"enabled": True}},
    }
    gw_name = f"ex-{namespace}"
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "llmgateways", _obj("LLMGateway", gw_name, spec))
    secret = _wait("audit key Secret", lambda: _read_secret(core, namespace, f"{gw_name}-kubegate-audit-key"))
    key = decode_key(base64.b64decode(secret.data["audit-key"]).decode())
    stream = GatewayKeys(namespace, gw_name).audit_stream

    async def write() -> None:
        conn = aioredis.from_url(redis_server.url)
        writer = AuditWriter(conn, stream, key=key, batch=5)
        await writer.start()
        for i in range(12):
            writer.submit({"v": 1, "request_id": f"r{i}"})
        await writer.close()
        await conn.aclose()

    asyncio.run(write())
    out = tmp_path / "pv" / namespace / gw_name
    gw_obj = _wait(
        "log public key",
        lambda: (
            custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "llmgateways", gw_name).get("status") or {}
        ).get("auditLogPublicKey"),
    )
    verifier = Verifier.parse(gw_obj)
    # Segments are checked with the public key only: signed, contiguous from leaf 0, hashing to their roots.
    _wait(
        "exported segments of 12 records", lambda: segments(out) and verify_segments(segments(out), verifier)[1] == 12
    )
    import redis as sync_redis

    mark = sync_redis.Redis.from_url(redis_server.url).get(audit_exported(stream))
    assert mark and mark != b"0-0"

    cm = _wait("signed log checkpoint", lambda: _log_checkpoint(core, namespace, gw_name, 12))
    note = cm.data["tlog-checkpoint"]
    w = Witness(Cosigner.generate("w.example/w"), tmp_path / "w.json")
    cosigned = add_cosignatures(note, [w.cosign(note, verifier, [])])
    core.patch_namespaced_config_map(
        f"{gw_name}-audit-checkpoints", namespace, {"data": {"tlog-cosignatures": cosigned}}
    )

    def witnessed():
        data = core.read_namespaced_config_map(f"{gw_name}-audit-checkpoints", namespace).data or {}
        return data if "tlog-witnessed-checkpoint" in data else None

    data = _wait("witnessed checkpoint", witnessed)
    assert cosigned_by(data["tlog-witnessed-checkpoint"], [w.cosigner.key]) == ["w.example/w"]

    # With spec.audit.witnesses, only the configured witnesses' valid cosignatures are kept, and the status counts
    # them against the quorum: a stranger's line handed in beside the witness's is dropped.
    stranger = Witness(Cosigner.generate("w.example/stranger"), tmp_path / "s.json")
    w2 = Cosigner.generate("w.example/w2")
    witnesses = {"keys": [w.cosigner.key.vkey(), w2.key.vkey()], "quorum": 2}
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, "llmgateways", gw_name, {"spec": {"audit": {"witnesses": witnesses}}}
    )
    note = _wait("checkpoint", lambda: _log_checkpoint(core, namespace, gw_name, 12)).data["tlog-checkpoint"]
    note = split_note(note)[0] + "\n" + split_note(note)[1][0]  # the log's own signature only
    handed_in = add_cosignatures(note, [stranger.cosign(note, verifier, []), w.cosign(note, verifier, [])])
    core.patch_namespaced_config_map(
        f"{gw_name}-audit-checkpoints", namespace, {"data": {"tlog-cosignatures": handed_in}}
    )

    def status():
        obj = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "llmgateways", gw_name)
        found = (obj.get("status") or {}).get("auditWitnesses")
        return found if found and found.get("cosignedBy") == ["w.example/w"] else None

    assert _wait("witness status", status) == {
        "treeSize": 12, "cosignedBy": ["w.example/w"], "quorum": 2, "quorumMet": False
    }  # fmt: skip
    data = core.read_namespaced_config_map(f"{gw_name}-audit-checkpoints", namespace).data
    assert "w.example/stranger" not in data["tlog-witnessed-checkpoint"]
    assert cosigned_by(data["tlog-witnessed-checkpoint"], [w.cosigner.key]) == ["w.example/w"]


def test_the_operator_exports_segments_to_a_bucket(operator, admin_api, namespace, redis_server, tmp_path):
    """#23 item 4 with the operator running: spec.audit.export.s3 (no volume) uploads sealed segments to a real S3
    server (versitygw, HTTPS with a private CA from caSecretRef, credentials from Secrets, another region, a prefix,
    path-style), each under the configured object-lock retention; status.auditExport reports the last segment and
    the lag; the stream's mark moves only with the bucket."""
    import datetime as dt

    import redis as sync_redis

    from gateway_plugins.policy.audit.note import Verifier
    from gateway_plugins.policy.audit.segments import segments, verify_segments
    from gateway_plugins.policy.keys import audit_exported
    from tests.harness.controlplane import _Pki
    from tests.harness.s3 import S3Server

    (tmp_path / "pki").mkdir()
    pki = _Pki(tmp_path / "pki")
    s3server = S3Server(tmp_path / "s3", region="eu-central-1", tls=(pki.serving_cert, pki.serving_key)).start()
    try:
        s3 = s3server.client(ca_file=pki.ca_cert)
        s3.create_bucket(
            Bucket="audit-bucket",
            ObjectLockEnabledForBucket=True,
            CreateBucketConfiguration={"LocationConstraint": "eu-central-1"},
        )
        custom = client.CustomObjectsApi(admin_api)
        core = client.CoreV1Api(admin_api)
        _secret(core, namespace, "redis-url", {"url": redis_server.url})
        _secret(core, namespace, "s3-creds", {"id": s3server.access_key, "secret": s3server.secret_key})
        _secret(core, namespace, "s3-ca", {"ca.crt": pki.ca_cert.read_text()})
        gw_name = f"s3-{namespace}"
        spec = {
            "redis": {"mode": "external", "urlSecretRef": {"name": "redis-url", "key": "url"}},
            "audit": {
                "export": {
                    "s3": {
                        "endpoint": s3server.url,
                        "bucket": "audit-bucket",
                        "region": "eu-central-1",
                        "prefix": "kubegate/",
                        "pathStyle": True,
                        "accessKeyIdSecretRef": {"name": "s3-creds", "key": "id"},
                        "secretAccessKeySecretRef": {"name": "s3-creds", "key": "secret"},
                        "caSecretRef": {"name": "s3-ca", "key": "ca.crt"},
                        "objectLock": {"mode": "GOVERNANCE", "retentionDays": 2},
                    }
                }
            },
        }
        custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, "llmgateways", _obj("LLMGateway", gw_name, spec)
        )
        secret = _wait("audit key Secret", lambda: _read_secret(core, namespace, f"{gw_name}-kubegate-audit-key"))
        key = decode_key(base64.b64decode(secret.data["audit-key"]).decode())
        stream = GatewayKeys(namespace, gw_name).audit_stream

        async def write() -> None:
            conn = aioredis.from_url(redis_server.url)
            writer = AuditWriter(conn, stream, key=key, batch=5)
            await writer.start()
            for i in range(12):
                writer.submit({"v": 1, "request_id": f"r{i}"})
            await writer.close()
            await conn.aclose()

        asyncio.run(write())

        def exported():
            gw = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "llmgateways", gw_name)
            status = (gw.get("status") or {}).get("auditExport") or {}
            s3_status = status.get("s3") or {}
            return gw if s3_status.get("lastSegment", "").endswith("-000000000012.jsonl") else None

        gw_obj = _wait("status.auditExport.s3 with the segment of 12 records", exported)
        status = gw_obj["status"]["auditExport"]
        assert status["s3"]["error"] == "" and status["s3"]["bucket"] == "audit-bucket"
        assert status["lagSeconds"] == 0 and status["exportedThrough"] == status["s3"]["exportedThrough"]
        assert "volume" not in status
        mark = sync_redis.Redis.from_url(redis_server.url).get(audit_exported(stream))
        assert mark.decode() == status["exportedThrough"]

        prefix = f"kubegate/{namespace}/{gw_name}/"
        from gateway_operator.reconcile.audits3 import fetch_segments

        got, notes = fetch_segments(s3, "audit-bucket", prefix, tmp_path / "fetched")
        assert notes == [] and got >= 1
        verifier = Verifier.parse(gw_obj["status"]["auditLogPublicKey"])
        assert verify_segments(segments(tmp_path / "fetched"), verifier)[1:] == (12, 0)
        for path in segments(tmp_path / "fetched"):
            held = s3.get_object_retention(Bucket="audit-bucket", Key=prefix + path.name)["Retention"]
            left = held["RetainUntilDate"] - dt.datetime.now(dt.UTC)
            assert held["Mode"] == "GOVERNANCE" and dt.timedelta(days=1) < left <= dt.timedelta(days=2)
    finally:
        s3server.stop()


@pytest.mark.parametrize("topology", ["cluster", "sentinel"])
def test_policy_and_budget_status_through_a_cluster_or_sentinel(operator, admin_api, namespace, topology):
    """The operator's own Redis clients (policy publication, budget refresh) on spec.redis.topology, with the ACL
    user and password from Secrets."""
    from tests.harness.redis_topologies import MASTER, RedisClusterGroup, SentinelGroup

    group = RedisClusterGroup() if topology == "cluster" else SentinelGroup()
    group.start()
    try:
        custom = client.CustomObjectsApi(admin_api)
        core = client.CoreV1Api(admin_api)
        user = RedisClusterGroup.USER if topology == "cluster" else "default"
        _secret(core, namespace, "redis-acl", {"username": user, "password": group.password})
        acl = {"usernameSecretRef": {"name": "redis-acl", "key": "username"}}
        acl["passwordSecretRef"] = {"name": "redis-acl", "key": "password"}
        if topology == "cluster":
            where = {"cluster": {"nodes": [f"127.0.0.1:{p}" for p in group.ports]}}
        else:
            where = {"sentinel": {"addresses": [f"127.0.0.1:{p}" for p in group.sentinel_ports], "masterName": MASTER}}
        spec = {"redis": {"mode": "external", "topology": topology, **where, **acl}}
        gw_name = f"{topology}-{namespace}"
        custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, "llmgateways", _obj("LLMGateway", gw_name, spec)
        )
        custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, "tenants", _obj("Tenant", "t", {"gateway": gw_name})
        )
        obj = custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, "budgets", _obj("Budget", "m", {"tenant": "t", "limitUSD": "10"})
        )
        r = group.client()
        doc_key, _, _ = gateway_keys(namespace, gw_name)

        def tenants():
            raw = r.get(doc_key)
            return {t.id for t in published(custom, namespace, gw_name, raw).tenants} if raw else set()

        _wait("tenant t in the policy in Redis", lambda: tenants() == {"t"})
        assert _reason(custom, namespace, "llmgateways", gw_name, "PolicyPublished", "Published")["status"] == "True"
        budget = render_budget(crd.Budget.model_validate(obj))
        r.hincrby(period_key(GatewayKeys(namespace, gw_name), budget, period_bounds(budget)[0]), "spent", 4 * MICRO)

        def spent():
            s = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "budgets", "m").get("status") or {}
            return s.get("spentUSD") == "4.0000"

        _wait("budget spend read from Redis", spent)
        r.close()
    finally:
        group.stop()
