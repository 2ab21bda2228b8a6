"""Two Gateways named ``main`` in namespaces ``team-x`` and ``team-y`` share one Redis: separate policies (published
to Redis, each signed with its own Gateway's key) and separate budgets, through real proxies."""

from __future__ import annotations

import time

import openai
import redis

from gateway_plugins.policy.keys import GatewayKeys
from gateway_plugins.policy.periods import period_bounds
from gateway_plugins.policy.signing import PolicySigner
from gateway_plugins.policy.store import policy_keys, publish_policy_sync
from tests.dataplane.test_budget_proxy import OUT_PRICE, TEXT, key
from tests.harness.proxy import ProxyServer
from tests.harness.rendered import ProxyInputs, cr, echo_route, render_proxy

NAMESPACES = ("team-x", "team-y")


def _render(ns: str, echo_base: str, revision: int, limit: str | None) -> ProxyInputs:
    """Gateway ``main`` in ``ns`` from CR objects; ``limit``: the tenant ``hard`` and its Budget, None for neither."""
    objects = [
        cr("LLMGateway", "main", {}, namespace=ns),
        echo_route("main", "big", echo_base, upstream_model="big-echo", output_price=str(OUT_PRICE), namespace=ns),
    ]
    if limit is not None:
        # Same tenant and budget names in both namespaces; only the key differs.
        objects += [
            cr("Tenant", "hard", {"gateway": "main", "allowedModels": ["big"]}, namespace=ns),
            cr("Budget", "hard-b", {"tenant": "hard", "limitUSD": limit, "period": "daily"}, namespace=ns),
        ]
    return render_proxy(objects, keys={"hard": key(ns)} if limit is not None else {}, revision=revision)


def _ask(proxy: ProxyServer, tenant_key: str) -> int:
    api = openai.OpenAI(base_url=proxy.base_url + "/v1", api_key=tenant_key, max_retries=0, timeout=60)
    try:
        api.chat.completions.create(model="big", messages=[{"role": "user", "content": TEXT}], max_tokens=2)
        return 200
    except openai.APIStatusError as exc:
        return exc.status_code


def test_same_name_gateways_in_two_namespaces_keep_separate_policies_and_budgets(redis_server, echo_upstream):
    r = redis.Redis.from_url(redis_server.url)
    signers = {ns: PolicySigner.generate() for ns in NAMESPACES}
    proxies: dict[str, ProxyServer] = {}
    try:
        for ns in NAMESPACES:
            # Start from a file policy with no tenant budget yet; the real one arrives through the shared Redis.
            initial = _render(ns, echo_upstream.base_url, 1, None)
            assert initial.policy.namespace == ns and not initial.policy.tenants
            proxies[ns] = ProxyServer(
                initial.config, initial.policy, redis_url=redis_server.url, env=initial.env, signer=signers[ns]
            ).start()
        # team-x: a 0.005 USD budget (two 0.002 calls fit, the third is blocked); team-y: 1 USD.
        for ns, limit in zip(NAMESPACES, ("0.005", "1"), strict=True):
            policy = _render(ns, echo_upstream.base_url, 5, limit).policy
            assert publish_policy_sync(r, policy, signers[ns])
        assert policy_keys(GatewayKeys("team-x", "main")) != policy_keys(GatewayKeys("team-y", "main"))
        served = dict.fromkeys(NAMESPACES, 0)
        for ns in NAMESPACES:
            deadline = time.monotonic() + 30
            while (code := _ask(proxies[ns], key(ns))) == 401:
                assert time.monotonic() < deadline, proxies[ns].logs()
                time.sleep(0.2)
            assert code == 200
            served[ns] += 1
        # Each proxy took its own namespace's policy: the other namespace's tenant key is unknown there.
        assert _ask(proxies["team-x"], key("team-y")) == 401
        assert _ask(proxies["team-y"], key("team-x")) == 401
        # team-x spends its budget until blocked; team-y's same-named budget is untouched and keeps serving.
        for _ in range(5):
            code = _ask(proxies["team-x"], key("team-x"))
            if code != 200:
                break
            served["team-x"] += 1
        assert code == 429 and served["team-x"] >= 2, (code, served)
        assert _ask(proxies["team-y"], key("team-y")) == 200
        served["team-y"] += 1
        px = _render("team-x", echo_upstream.base_url, 5, "0.005").policy
        start = period_bounds(px.budgets[0])[0]
        budget_keys = {ns: GatewayKeys(ns, "main").budget(px.budgets[0].tenant, "hard-b", start) for ns in NAMESPACES}
        # Settle runs in LiteLLM's success callback, after the response was sent: wait for no reservation left.
        deadline = time.monotonic() + 30
        while any(int(r.hget(k, "reserved") or 0) for k in budget_keys.values()):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        spent = {ns: int(r.hget(k, "spent") or 0) for ns, k in budget_keys.items()}
        # Each namespace's counter holds exactly its own calls (0.002 USD each), nothing of the other's.
        assert spent == {ns: 2000 * served[ns] for ns in NAMESPACES}, (spent, served)
    finally:
        for proxy in proxies.values():
            proxy.stop()
        for ns in NAMESPACES:
            r.delete(*policy_keys(GatewayKeys(ns, "main"))[:2])
        r.close()
