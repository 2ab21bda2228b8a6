"""TenantPlans on the real API server, the operator running as its ServiceAccount: a plan edit reaches every
Tenant on it (its policy entry and its status) with no restart, a Tenant's override survives the edit, the plan's
budget is each Tenant's own, and a Tenant naming a missing plan is Ready=False while the Gateway serves the rest."""

from __future__ import annotations

from kubernetes import client

from tests.operator.test_operator_e2e import GROUP, VERSION, _wait, operator_kubeconfig  # noqa: F401
from tests.operator.test_operator_status import _obj, _reason, _secret, _table_row, operator  # noqa: F401
from tests.operator.trust import gateway_keys, published

PRO = {
    "allowedModels": ["gpt", "mini"],
    "allowedRegions": ["eu-west-1"],
    "rateLimits": {"rpm": 60, "tpm": 10000},
    "budget": {"limitUSD": "100", "limitTokens": 5000000, "period": "monthly"},
}


def test_a_plan_edit_reaches_every_tenant_and_overrides_survive(
    operator,  # noqa: F811
    admin_api,
    namespace,
    redis_server,
):
    custom = client.CustomObjectsApi(admin_api)
    core = client.CoreV1Api(admin_api)
    _secret(core, namespace, "redis-url", {"url": redis_server.url})
    gw_name = f"plan-{namespace}"
    spec = {"redis": {"mode": "external", "urlSecretRef": {"name": "redis-url", "key": "url"}}}
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "llmgateways", _obj("LLMGateway", gw_name, spec))
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "tenantplans", _obj("TenantPlan", "pro", PRO))
    tenants = {
        "a": {"gateway": gw_name, "plan": "pro"},
        "b": {"gateway": gw_name, "plan": "pro"},
        # Overrides: its own models, and a higher rpm (the plan's tpm kept).
        "c": {"gateway": gw_name, "plan": "pro", "allowedModels": ["gpt"], "rateLimits": {"rpm": 600}},
        "lost": {"gateway": gw_name, "plan": "enterprise"},
        "plain": {"gateway": gw_name, "allowedModels": ["*"]},
    }
    for name, tenant_spec in tenants.items():
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "tenants", _obj("Tenant", name, tenant_spec))
    r = redis_server.client()
    doc_key, _, _ = gateway_keys(namespace, gw_name)

    def policy():
        raw = r.get(doc_key)
        return published(custom, namespace, gw_name, raw) if raw else None

    def entries(check):
        def read():
            p = policy()
            if p is None:
                return None
            got = {t.id: t for t in p.tenants}, {b.name: b for b in p.budgets}
            return got if check(*got) else None

        return read

    tenants_in, budgets_in = _wait(
        "tenants on the plan rendered", entries(lambda t, b: {"a", "b", "c", "plain"} <= set(t) and len(b) == 3)
    )
    assert "lost" not in tenants_in  # its plan does not exist: left out, the others served
    for name in ("a", "b"):
        t = tenants_in[name]
        assert (t.allowed_models, t.allowed_regions) == (["gpt", "mini"], ["eu-west-1"])
        assert (t.rate_limits.rpm, t.rate_limits.tpm) == (60, 10000)
        b = budgets_in[f"plan.{name}"]
        assert (b.tenant, str(b.limit_usd), b.limit_tokens) == (name, "100", 5000000)
    c = tenants_in["c"]
    assert c.allowed_models == ["gpt"] and (c.rate_limits.rpm, c.rate_limits.tpm) == (600, 10000)
    assert tenants_in["plain"].allowed_models == ["*"]

    lost = _reason(custom, namespace, "tenants", "lost", "Ready", "PlanNotFound")
    assert lost["status"] == "False" and "enterprise" in lost["message"]
    status_a = _wait(
        "tenant a status shows its plan",
        lambda: (
            (s := custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "tenants", "a").get("status"))
            and s.get("effective")
            and s
        ),
    )
    assert status_a["plan"] == "pro"
    assert status_a["effective"]["rateLimits"] == {"rpm": 60, "tpm": 10000}
    assert status_a["effective"]["budget"] == {
        "name": "plan.a",
        "limitUSD": "100",
        "limitTokens": 5000000,
        "period": "monthly",
    }
    assert _table_row(admin_api, namespace, "tenants", "a")["Plan"] == "pro"
    plan_row = _table_row(admin_api, namespace, "tenantplans", "pro")
    assert (plan_row["RPM"], plan_row["LimitUSD"], plan_row["LimitTokens"]) == (60, "100", 5000000)

    # Edit the plan: every tenant on it changes live, the override stays.
    generations = {
        n: custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "tenants", n)["metadata"]["generation"]
        for n in ("a", "b", "c")
    }
    custom.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        "tenantplans",
        "pro",
        {"spec": {"allowedModels": ["gpt", "mini", "big"], "rateLimits": {"rpm": 120}, "budget": {"limitUSD": "250"}}},
    )
    tenants_in, budgets_in = _wait(
        "the plan edit in the policy",
        entries(lambda t, b: "a" in t and t["a"].rate_limits.rpm == 120 and t["b"].rate_limits.rpm == 120),
    )
    for name in ("a", "b"):
        assert tenants_in[name].allowed_models == ["gpt", "mini", "big"]
        assert str(budgets_in[f"plan.{name}"].limit_usd) == "250"
    assert tenants_in["c"].allowed_models == ["gpt"] and tenants_in["c"].rate_limits.rpm == 600
    assert tenants_in["c"].rate_limits.tpm == 10000
    _wait(
        "tenant b status shows the edited plan",
        lambda: (
            (custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "tenants", "b").get("status") or {})
            .get("effective", {})
            .get("rateLimits", {})
            .get("rpm")
            == 120
        ),
    )
    # The Tenants themselves were not written: only the plan changed.
    for name, generation in generations.items():
        obj = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "tenants", name)
        assert obj["metadata"]["generation"] == generation

    # The missing plan appears: its tenant is served from then on.
    enterprise = {"allowedModels": ["*"], "budget": {"limitTokens": 100000000}}
    custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, "tenantplans", _obj("TenantPlan", "enterprise", enterprise)
    )
    tenants_in, budgets_in = _wait("lost is served once its plan exists", entries(lambda t, b: "lost" in t))
    assert budgets_in["plan.lost"].limit_tokens == 100000000 and budgets_in["plan.lost"].limit_usd is None
    _reason(custom, namespace, "tenants", "lost", "Ready", "Rendered")
