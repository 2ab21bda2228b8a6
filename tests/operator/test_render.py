"""Renderer: CRs -> LiteLLM config + Policy (pure, no cluster)."""

from __future__ import annotations

import glob

import pytest
import yaml
from gateway_operator.crd import models as crd
from gateway_operator.render import render_gateway

from gateway_plugins.policy import Policy, parse_policy
from gateway_plugins.policy.schema import DEFAULT_PII_ENTITIES

KEY_A = "a" * 64
KEY_B = "b" * 64


def _examples() -> dict[str, list]:
    out: dict[str, list] = {k: [] for k in crd.KINDS}
    for path in sorted(glob.glob("examples/quickstart/*.yaml")):
        with open(path) as fh:
            for doc in yaml.safe_load_all(fh):
                out[doc["kind"]].append(crd.KINDS[doc["kind"]].model_validate(doc))
    return out


def _route(name: str, model: str, deployments: list[dict], **spec) -> crd.ModelRoute:
    return crd.ModelRoute.model_validate(
        {
            "metadata": {"name": name},
            "spec": {"gateway": "main", "modelName": model, "deployments": deployments, **spec},
        }
    )


def _dep(name: str, region: str, price: str = "0.000001", **extra) -> dict:
    return {
        "name": name,
        "model": "m",
        "region": region,
        "inputCostPerToken": price,
        "outputCostPerToken": price,
        **extra,
    }


def _render(routes=(), tenants=(), budgets=(), keys=None, revision=1):
    gw = crd.LLMGateway.model_validate({"metadata": {"name": "main"}})
    return render_gateway(gw, routes, tenants, budgets, tenant_key_hashes=keys or {}, revision=revision)


def test_examples_render_to_a_valid_policy_round_trip():
    ex = _examples()
    out = render_gateway(
        ex["LLMGateway"][0],
        ex["ModelRoute"],
        ex["Tenant"],
        ex["Budget"],
        tenant_key_hashes={"team-eu": [KEY_A]},
        revision=7,
    )
    again = parse_policy(out.policy.model_dump_json(by_alias=True))
    assert again == out.policy
    assert out.policy.revision == 7
    assert [t.id for t in out.policy.tenants] == ["team-eu", "team-us"]
    assert out.policy.tenants[0].keys[0].sha256 == KEY_A
    assert out.policy.budgets[0].name == "team-eu-monthly"
    general = out.litellm_config["general_settings"]
    assert general["custom_auth"] == "gateway_plugins.auth.user_api_key_auth"
    assert "database_url" not in general
    assert out.litellm_config["litellm_settings"]["callbacks"] == ["gateway_plugins.hooks.proxy_handler_instance"]


def test_deployments_public_and_regional_groups_with_unique_ids():
    route = _route("gpt", "gpt", [_dep("eu", "eu-west-1", rpm=10, tpm=100), _dep("us", "us-east-1")], numRetries=4)
    out = _render([route])
    entries = out.litellm_config["model_list"]
    groups = sorted(e["model_name"] for e in entries)
    assert groups == ["gpt", "gpt", "gpt@eu-west-1", "gpt@us-east-1"]
    ids = [e["model_info"]["id"] for e in entries]
    assert len(set(ids)) == len(ids)
    assert {d.id for d in out.policy.deployments} == set(ids)
    eu_regional = next(e for e in entries if e["model_name"] == "gpt@eu-west-1")
    assert eu_regional["model_info"]["region"] == "eu-west-1"
    assert eu_regional["litellm_params"]["rpm"] == 10 and eu_regional["litellm_params"]["tpm"] == 100
    assert eu_regional["litellm_params"]["input_cost_per_token"] == 1e-06
    assert next(e for e in entries if e["model_name"] == "gpt@us-east-1")["model_info"]["region"] == "us-east-1"
    meta = out.policy.models[0]
    assert meta.regional_groups == {"eu-west-1": "gpt@eu-west-1", "us-east-1": "gpt@us-east-1"}
    assert meta.zero_price is False
    policy = out.litellm_config["router_settings"]["model_group_retry_policy"]["gpt@eu-west-1"]
    assert policy["TimeoutErrorRetries"] == 4 and policy["BadRequestErrorRetries"] == 0


def test_fallbacks_never_cross_regions():
    big = _route("big", "big", [_dep("eu", "eu-west-1"), _dep("us", "us-east-1")], fallbacks=["small", "missing"])
    small = _route("small", "small", [_dep("us", "us-east-1")])
    out = _render([big, small])
    fallbacks = out.litellm_config["router_settings"]["fallbacks"]
    assert {"big": ["small"]} in fallbacks
    assert {"big@us-east-1": ["small@us-east-1"]} in fallbacks
    # small has no EU deployment: the EU group of big gets no fallback at all rather than a US one.
    assert not any("big@eu-west-1" in f for f in fallbacks)
    for entry in fallbacks:
        for src, dsts in entry.items():
            src_region = src.partition("@")[2]
            assert all(d.partition("@")[2] == src_region for d in dsts)


def test_zero_price_and_api_key_env():
    ref = {"name": "openai", "key": "api-key"}
    route = _route("free", "free", [_dep("a", "eu-west-1", price="0", apiKeySecretRef=ref)])
    out = _render([route])
    assert out.policy.models[0].zero_price is True
    (env,) = out.api_key_env
    assert out.api_key_env[env].name == "openai"
    assert all(e["litellm_params"]["api_key"] == f"os.environ/{env}" for e in out.litellm_config["model_list"])
    assert "api-key" not in str(out.policy.model_dump())


def test_checksum_changes_with_models_only():
    route = _route("r", "r", [_dep("a", "eu-west-1")])
    tenant = crd.Tenant.model_validate({"metadata": {"name": "t"}, "spec": {"gateway": "main"}})
    base = _render([route])
    with_tenant = _render([route], [tenant], keys={"t": [KEY_A]}, revision=2)
    assert base.model_list_checksum == with_tenant.model_list_checksum
    other = _render([_route("r", "r", [_dep("a", "eu-west-1", weight=3)])])
    assert other.model_list_checksum != base.model_list_checksum


def test_pii_empty_entities_get_defaults_and_budget_without_tenant_is_skipped():
    tenant = crd.Tenant.model_validate({"metadata": {"name": "t"}, "spec": {"gateway": "main", "pii": {}}})
    other_gw = crd.Tenant.model_validate({"metadata": {"name": "x"}, "spec": {"gateway": "other"}})
    ok = crd.Budget.model_validate({"metadata": {"name": "b1"}, "spec": {"tenant": "t", "limitUSD": "5"}})
    orphan = crd.Budget.model_validate({"metadata": {"name": "b2"}, "spec": {"tenant": "x", "limitUSD": "5"}})
    out = _render([], [tenant, other_gw], [ok, orphan])
    assert isinstance(out.policy, Policy)
    assert [t.id for t in out.policy.tenants] == ["t"]
    assert out.policy.tenants[0].pii.entities == DEFAULT_PII_ENTITIES
    assert [b.name for b in out.policy.budgets] == ["b1"]
    assert "Budget/b2" in out.skipped and "x" in out.skipped["Budget/b2"]


def test_key_claimed_by_two_tenants_goes_to_the_first_only():
    t1 = crd.Tenant.model_validate({"metadata": {"name": "a"}, "spec": {"gateway": "main"}})
    t2 = crd.Tenant.model_validate({"metadata": {"name": "b"}, "spec": {"gateway": "main"}})
    out = _render([], [t2, t1], keys={"a": [KEY_A], "b": [KEY_A, KEY_B]})
    keys = {t.id: [k.sha256 for k in t.keys] for t in out.policy.tenants}
    assert keys == {"a": [KEY_A], "b": [KEY_B]}
    assert "Tenant/b" in out.skipped


def test_timeouts_and_retries_in_a_form_litellm_router_honours(monkeypatch):
    """Built into LiteLLM's own Router the way its proxy does: no ignored router_settings key, per-deployment
    timeouts for plain and streaming calls, and retry counts per exception type for each group."""
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm
    from litellm.constants import ROUTER_SETTINGS_MANAGED_OUTSIDE_CONFIG

    slow = _route("slow", "slow", [_dep("eu", "eu-west-1", apiBase="http://127.0.0.1:9/v1")], timeoutSeconds=7.5)
    quick = _route("quick", "quick", [_dep("eu", "eu-west-1", apiBase="http://127.0.0.1:9/v1")], numRetries=1)
    out = _render([slow, quick])
    settings = out.litellm_config["router_settings"]
    valid = set(litellm.Router.get_valid_args()) - ROUTER_SETTINGS_MANAGED_OUTSIDE_CONFIG
    assert set(settings) <= valid, set(settings) - valid  # the proxy would log and drop the rest
    router = litellm.Router(model_list=out.litellm_config["model_list"], **settings)
    for group, expected in (("slow", 7.5), ("slow@eu-west-1", 7.5), ("quick", 600)):
        (deployment,) = router.get_model_list(model_name=group)
        params = deployment["litellm_params"]
        assert router._get_timeout(kwargs={}, data=params) == expected
        assert router._get_timeout(kwargs={"stream": True}, data=params) == expected
    timeout = litellm.Timeout("slow", model="m", llm_provider="openai")
    bad = litellm.BadRequestError("bad", model="m", llm_provider="openai")
    assert router.get_num_retries_from_retry_policy(timeout, model_group="quick@eu-west-1") == 1
    assert router.get_num_retries_from_retry_policy(timeout, model_group="slow") == 2
    assert router.get_num_retries_from_retry_policy(bad, model_group="slow") == 0


def test_deployments_with_an_unavailable_key_are_left_out():
    ref = {"name": "eu-key", "key": "k"}
    mixed = _route("mixed", "mixed", [_dep("a", "eu-west-1", apiKeySecretRef=ref), _dep("b", "us-east-1")])
    dark = _route("dark", "dark", [_dep("a", "eu-west-1", apiKeySecretRef=ref)])
    big = _route("big", "big", [_dep("a", "eu-west-1")], fallbacks=["dark", "mixed"])
    gw = crd.LLMGateway.model_validate({"metadata": {"name": "main"}})
    out = render_gateway(
        gw, [mixed, dark, big], [], [], tenant_key_hashes={}, revision=1, unavailable_secrets={("eu-key", "k")}
    )
    ids = {e["model_info"]["id"] for e in out.litellm_config["model_list"]}
    assert ids == {"mixed/b", "mixed/b@us-east-1", "big/a", "big/a@eu-west-1"}
    assert out.api_key_env == {}  # no pod env var points at the missing key
    assert [m.name for m in out.policy.models] == ["big", "mixed"]
    assert out.litellm_config["router_settings"]["fallbacks"] == [{"big": ["mixed"]}]  # never to a dark model
    assert "eu-key" in out.skipped["ModelRoute/dark"] and "ModelRoute/big" not in out.skipped
    everything = render_gateway(gw, [mixed, dark, big], [], [], tenant_key_hashes={}, revision=1)
    assert everything.model_list_checksum != out.model_list_checksum  # the Secret appearing rolls the pods


def test_request_contract_fields_reach_the_policy():
    """Gateway requestLimits, ModelRoute maxOutputTokens and fallbacks, Tenant PII contract fields: each
    changes what the proxies enforce."""
    gw = crd.LLMGateway.model_validate(
        {"metadata": {"name": "main"}, "spec": {"requestLimits": {"maxBodyBytes": 65536, "maxN": 2, "maxMessages": 9}}}
    )
    routes = [
        _route("big", "big", [_dep("d1", "eu-west-1")], maxOutputTokens=512, fallbacks=["small"]),
        _route("small", "small", [_dep("d2", "eu-west-1")], timeoutSeconds=2.5, numRetries=3),
    ]
    tenant = crd.Tenant.model_validate(
        {
            "metadata": {"name": "t"},
            "spec": {
                "gateway": "main",
                "allowedModels": ["*"],
                "pii": {"allowUninspectableContent": True, "maxTextChars": 1000},
            },
        }
    )
    out = render_gateway(gw, routes, [tenant], [], tenant_key_hashes={"t": [KEY_A]}, revision=1)
    limits = out.policy.limits
    assert (limits.max_body_bytes, limits.max_n, limits.max_messages) == (65536, 2, 9)
    models = {m.name: m for m in out.policy.models}
    assert models["big"].max_output_tokens == 512 and models["big"].fallbacks == ["small"]
    assert models["small"].max_output_tokens == 4096 and models["small"].fallbacks == []
    # A reservation's lease: the upstream timeout times every attempt (600 s x 3 by default).
    assert (models["big"].max_call_seconds, models["small"].max_call_seconds) == (1800, 10)
    pii = out.policy.tenants[0].pii
    assert pii.allow_uninspectable_content is True and pii.max_text_chars == 1000
    assert set(crd.RequestLimitsSpec.model_fields) == set(type(limits).model_fields)


def test_hosted_tools_reach_the_policy_default_none_and_are_a_closed_unique_set():
    def tenant(name: str, **spec) -> crd.Tenant:
        return crd.Tenant.model_validate({"metadata": {"name": name}, "spec": {"gateway": "main", **spec}})

    out = _render([], [tenant("a", hostedTools=["web_search", "code_execution"]), tenant("b")])
    hosted = {t.id: t.hosted_tools for t in out.policy.tenants}
    assert hosted == {"a": ["web_search", "code_execution"], "b": []}
    assert parse_policy(out.policy.model_dump_json()).tenants[0].hosted_tools == ["web_search", "code_execution"]
    for bad in (["web_search", "web_search"], ["file_search"]):
        with pytest.raises(ValueError, match="hostedTools"):
            tenant("c", hostedTools=bad)


def test_a_deployment_without_prices_uses_litellms_bundled_price_or_is_left_out():
    known = _route("known", "gpt", [{"name": "a", "model": "gpt-4o", "region": "eu"}])
    unknown = _route("unknown", "own", [{"name": "a", "model": "in-house-llm", "region": "eu"}])
    free = _route("free", "own-free", [{"name": "a", "model": "in-house-llm", "region": "eu"}], free=True)
    out = _render(routes=[known, unknown, free])
    deployments = {d.id: d for d in out.policy.deployments}
    # gpt-4o from the JSON shipped inside the litellm package (read without importing litellm).
    assert deployments["known/a"].input_cost_per_token > 0 and deployments["known/a"].output_cost_per_token > 0
    assert {m.name: m.zero_price for m in out.policy.models} == {"gpt": False, "own-free": True}
    assert out.problems["ModelRoute/unknown"].reason == "PriceUnknown"
    assert "ModelRoute/free" not in out.problems


def test_max_output_tokens_default_to_the_smallest_limit_litellms_map_gives_the_upstream_models():
    """Issue #20: Anthropic clients ask max_tokens 32000 or 64000; a route without spec.maxOutputTokens admits what
    its upstream models can answer (LiteLLM's bundled map, read offline), not a blanket 4096."""

    bedrock_claude = "anthropic.claude-3-5-sonnet-20240620-v1:0"

    def dep(name: str, model: str, provider: str = "openai", **extra) -> dict:
        return {"name": name, "provider": provider, "model": model, "region": "eu-west-1", **extra}

    azure = {
        "apiBase": "https://example.openai.azure.com",
        "azure": {"apiVersion": "2024-10-21"},
        "inputCostPerToken": "0.000001",
        "outputCostPerToken": "0.000001",
    }
    routes = [
        _route("claude", "claude", [dep("a", "claude-sonnet-4-5", "anthropic")]),
        _route("mini", "mini", [dep("a", "gpt-4o-mini")]),
        # Any deployment may answer: the smallest limit of the route's upstream models.
        _route("mixed", "mixed", [dep("a", "gpt-4.1"), dep("b", "gpt-4o")]),
        _route("bedrock", "bedrock", [dep("a", bedrock_claude, "bedrock", bedrock={"region": "eu-central-1"})]),
        # One upstream model the map does not know (an Azure deployment name): the default.
        _route("partly-known", "partly-known", [dep("a", "gpt-4o"), dep("b", "my-gpt-4o", "azure", **azure)]),
        _route("echo", "echo", [dep("a", "echo-echo")], free=True),
        # spec.maxOutputTokens wins either way.
        _route("lower", "lower", [dep("a", "claude-sonnet-4-5", "anthropic")], maxOutputTokens=1000),
        _route("higher", "higher", [dep("a", "echo-echo")], maxOutputTokens=64000, free=True),
    ]
    out = _render(routes=routes)
    assert not out.problems, out.skipped
    limits = {m.name: m.max_output_tokens for m in out.policy.models}
    assert limits == {
        "claude": 64000,
        "mini": 16384,
        "mixed": 16384,
        "bedrock": 4096,
        "partly-known": 4096,
        "echo": 4096,
        "lower": 1000,
        "higher": 64000,
    }
    # What the data plane enforces: 64000 is admitted on the Claude route, one more is not.
    from gateway_plugins.contract.validate import ContractError, check_for_tenant
    from gateway_plugins.policy.schema import Tenant

    models = {m.name: m for m in out.policy.models}
    body = {"model": "claude", "max_tokens": 64000, "messages": [{"role": "user", "content": "hi"}]}
    check_for_tenant(body, Tenant(id="t"), models)
    with pytest.raises(ContractError):
        check_for_tenant({**body, "max_tokens": 64001}, Tenant(id="t"), models)


def test_bundled_output_limit_is_max_output_tokens_else_max_tokens(monkeypatch):
    from gateway_operator.render import prices

    entries = {
        "sample_spec": {"max_output_tokens": "a description", "max_tokens": "another"},
        "out": {"litellm_provider": "openai", "max_output_tokens": 8000, "max_tokens": 8000},
        "legacy": {"litellm_provider": "openai", "max_tokens": 2000},
        "none": {"litellm_provider": "openai"},
        "anthropic/claude-x": {"litellm_provider": "anthropic", "max_output_tokens": 64000},
        "claude-y": {"litellm_provider": "anthropic", "max_output_tokens": 32000},
    }
    prices.bundled_output_limits.cache_clear()
    monkeypatch.setattr(prices, "_entries", lambda: entries)
    try:
        assert prices.bundled_max_output_tokens("openai", "out") == 8000
        assert prices.bundled_max_output_tokens("openai", "legacy") == 2000
        assert prices.bundled_max_output_tokens("openai", "none") is None
        assert prices.bundled_max_output_tokens("openai", "sample_spec") is None
        assert prices.bundled_max_output_tokens("anthropic", "claude-x") == 64000
        assert prices.bundled_max_output_tokens("anthropic", "claude-y") == 32000
        # Listed for another provider: not this one's model.
        assert prices.bundled_max_output_tokens("openai", "claude-y") is None
    finally:
        prices.bundled_output_limits.cache_clear()


def _cost_routed(name: str, model: str, candidates: list[dict], **spec) -> crd.ModelRoute:
    return crd.ModelRoute.model_validate(
        {"metadata": {"name": name}, "spec": {"gateway": "main", "modelName": model, "candidates": candidates, **spec}}
    )


def test_a_cost_routed_route_renders_its_served_candidates_and_no_deployments():
    routes = [
        _route("small", "small", [_dep("a", "eu-west-1")], maxOutputTokens=100),
        _route("large", "large", [_dep("a", "eu-west-1")], maxOutputTokens=300),
        _cost_routed("auto", "auto", [{"model": "small", "tier": 1}, {"model": "large", "tier": 3}]),
        _cost_routed("auto-2", "auto-2", [{"model": "small", "tier": 1}, {"model": "gone", "tier": 2}]),
    ]
    out = _render(routes)
    models = {m.name: m for m in out.policy.models}
    auto = models["auto"]
    assert [(c.model, c.tier) for c in auto.candidates] == [("small", 1), ("large", 3)]
    # Any candidate may serve: the largest output limit, and no deployments or LiteLLM groups of its own.
    assert auto.max_output_tokens == 300 and auto.regional_groups == {}
    assert not [e for e in out.litellm_config["model_list"] if e["model_name"].startswith("auto")]
    # A candidate no route serves is left out, and the route's status says which.
    assert [c.model for c in models["auto-2"].candidates] == ["small"]
    problem = out.problems["ModelRoute/auto-2"]
    assert problem.reason == "CandidateNotFound" and "gone" in problem.message
    assert parse_policy(out.policy.model_dump(mode="json", by_alias=True)) == out.policy
    # Routes without candidates keep their documents' bytes (no empty candidates key).
    assert "candidates" not in models["small"].model_dump(mode="json")


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ({"deployments": [_dep("a", "eu-west-1")], "candidates": [{"model": "x", "tier": 1}]}, "not both"),
        ({}, "not both or none"),
        ({"candidates": [{"model": "x", "tier": 1}, {"model": "x", "tier": 2}]}, "each model once"),
        ({"candidates": [{"model": "auto", "tier": 1}]}, "own modelName"),
        ({"candidates": [{"model": "x", "tier": 11}]}, "less than or equal to 10"),
    ],
)
def test_a_cost_routed_route_is_validated(spec, words):
    with pytest.raises(ValueError, match=words):
        crd.ModelRoute.model_validate(
            {"metadata": {"name": "auto"}, "spec": {"gateway": "main", "modelName": "auto", **spec}}
        )


def test_the_policy_refuses_a_candidate_it_does_not_serve():
    doc = {
        "gateway": "main",
        "models": [{"name": "auto", "candidates": [{"model": "nowhere", "tier": 1}]}],
    }
    with pytest.raises(ValueError, match=r"models\.auto\.candidates: 'nowhere'"):
        parse_policy(doc)


def test_volume_discounts_reach_the_policy_and_are_validated():
    gw = crd.LLMGateway.model_validate(
        {
            "metadata": {"name": "main"},
            "spec": {"volumeDiscounts": [{"fromUSD": "1000", "percent": "5"}, {"fromUSD": "10000", "percent": "12.5"}]},
        }
    )
    policy = render_gateway(gw, [], [], [], tenant_key_hashes={}, revision=1).policy
    assert [(str(t.from_usd), t.basis_points) for t in policy.volume_discounts] == [("1000", 500), ("10000", 1250)]
    assert policy.discount_basis_points(999_999_999) == 0 and policy.discount_basis_points(10_000_000_000) == 1250
    assert parse_policy(policy.model_dump(mode="json", by_alias=True)) == policy
    # Without tiers the document keeps its bytes (no empty key).
    assert "volume_discounts" not in _render().policy.model_dump(mode="json")
    for tiers, words in [
        ([{"fromUSD": "10", "percent": "5"}, {"fromUSD": "10", "percent": "6"}], "ascending by fromUSD"),
        ([{"fromUSD": "10", "percent": "5"}, {"fromUSD": "20", "percent": "5"}], "ascending by percent"),
        ([{"fromUSD": "10", "percent": "100"}], "less than 100"),
    ]:
        with pytest.raises(ValueError, match=words):
            crd.LLMGatewaySpec.model_validate({"volumeDiscounts": tiers})
