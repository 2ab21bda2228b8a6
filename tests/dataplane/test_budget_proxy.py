"""Budgets through the real proxy with the official openai SDK: block with headers, downgrade chain,
zero-price models, and 64 concurrent clients against TWO proxies sharing one Redis; a Claude route's real
output limit (LiteLLM's model map) reserved in full, with the anthropic SDK.

Prices: input 0, output 0.001 USD/token; the echo upstream answers "abcdefgh" with 2 completion tokens
and requests ask ``max_tokens=2``, so the reservation equals the real cost (0.002 USD) and totals are exact.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from decimal import Decimal

import anthropic
import openai
import pytest
import redis.asyncio as aioredis
from prometheus_client.parser import text_string_to_metric_families

from gateway_plugins.policy.budget_state import read_budget_state
from gateway_plugins.policy.keys import GatewayKeys
from gateway_plugins.policy.periods import period_bounds, period_key
from gateway_plugins.policy.schema import Budget, Policy
from tests.harness.proxy import ProxyServer
from tests.harness.rendered import ProxyInputs, cr, echo_route, render_proxy

GW = "main"
OUT_PRICE = Decimal("0.001")
COST = 0.002  # 2 completion tokens x OUT_PRICE
TEXT = "abcdefgh"
TENANTS = ("hard", "down", "free", "race", "rel", "maxed", "tok", "tokrace", "planned")
TOKEN_LIMIT = 100_000
MODELS = ("big", "mid", "small", "free")
# Served by an anthropic/ deployment whose model LiteLLM's map gives 64000 output tokens (the route sets no
# maxOutputTokens); the echo answers it after a delay, long enough to see the reservation while it is in flight.
CLAUDE = "claude"
CLAUDE_MAX = 64000
CLAUDE_DELAY_MS = 3000


def key(tenant: str) -> str:
    return f"sk-budget-{tenant}-0123456789"


def budgets() -> dict[str, dict]:
    """Budget name -> its spec."""
    return {
        "hard-b": {"tenant": "hard", "limitUSD": "0.005", "period": "daily"},
        "down-b": {
            "tenant": "down",
            "limitUSD": "1",
            "thresholds": [{"percent": 50, "action": "downgrade"}, {"percent": 100, "action": "block"}],
            "downgrade": {"big": "mid", "mid": "small"},
        },
        "free-b": {"tenant": "free", "limitUSD": "0.001"},
        "race-b": {"tenant": "race", "limitUSD": "0.021", "period": "weekly"},
        "rel-b": {"tenant": "rel", "limitUSD": "1"},
        # Exactly one answer of the real maximum (64000 x 0.001 USD).
        "maxed-b": {"tenant": "maxed", "limitUSD": "64"},
        # Token quotas: one alone, one beside a USD limit far away (the nearer limit decides).
        "tok-b": {"tenant": "tok", "limitTokens": TOKEN_LIMIT, "period": "daily"},
        "tokrace-b": {"tenant": "tokrace", "limitTokens": TOKEN_LIMIT, "limitUSD": "1000", "period": "weekly"},
    }


def setup(echo_base: str) -> ProxyInputs:
    """The proxy's inputs, rendered from CR objects."""
    objects = [
        cr("LLMGateway", GW, {}),
        *(
            # Distinct upstream model names so the echo's received log shows which deployment served.
            echo_route(
                GW, m, echo_base, upstream_model=f"{m}-echo", output_price="0" if m == "free" else str(OUT_PRICE)
            )
            for m in MODELS
        ),
        echo_route(
            GW,
            CLAUDE,
            # LiteLLM's anthropic/ calls append /v1/messages to the base.
            f"{echo_base.removesuffix('/v1')}/delay/{CLAUDE_DELAY_MS}",
            provider="anthropic",
            upstream_model="claude-sonnet-4-5",
            output_price=str(OUT_PRICE),
        ),
        *(cr("Tenant", t, {"gateway": GW, "allowedModels": [*MODELS, CLAUDE]}) for t in TENANTS if t != "planned"),
        # On a plan: its models and its token budget (policy budget plan.planned) come from the TenantPlan.
        cr("TenantPlan", "starter", {"allowedModels": ["big"], "budget": {"limitTokens": TOKEN_LIMIT}}),
        cr("Tenant", "planned", {"gateway": GW, "plan": "starter"}),
        *(cr("Budget", name, spec) for name, spec in budgets().items()),
    ]
    return render_proxy(objects, keys={t: key(t) for t in TENANTS})


@pytest.fixture(scope="module")
def proxies(redis_server, echo_upstream) -> Iterator[tuple[ProxyServer, ProxyServer, Policy]]:
    rendered = setup(echo_upstream.base_url)
    started: list[ProxyServer] = []
    try:
        for _ in range(2):
            started.append(
                ProxyServer(rendered.config, rendered.policy, redis_url=redis_server.url, env=rendered.env).start()
            )
        yield started[0], started[1], rendered.policy
    finally:
        for p in started:
            p.stop()


def client(proxy: ProxyServer, tenant: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=proxy.base_url + "/v1", api_key=key(tenant), max_retries=0, timeout=60)


def ask(c: openai.OpenAI, model: str = "big"):
    return c.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": TEXT}], max_tokens=2
    )


def budget(policy: Policy, name: str) -> Budget:
    return next(b for b in policy.budgets if b.name == name)


async def _budget_state(url: str, b: Budget):
    r = aioredis.from_url(url)
    try:
        return await read_budget_state(r, GatewayKeys("default", GW), b)
    finally:
        await r.aclose()


def state(url: str, b: Budget):
    """Budget state once every in-flight reservation has settled (LiteLLM runs the success callback,
    hence our settle, after the response has been sent)."""

    async def read():
        r = aioredis.from_url(url)
        try:
            for _ in range(100):
                st = await read_budget_state(r, GatewayKeys("default", GW), b)
                if st.reserved_usd == 0:
                    break
                await asyncio.sleep(0.1)
            return st
        finally:
            await r.aclose()

    return asyncio.run(read())


def budget_gauge(proxy: ProxyServer, tenant: str) -> float | None:
    """``kubegate_budget_used_ratio`` of ``tenant`` as served by the proxy's ``/metrics``."""
    for family in text_string_to_metric_families(proxy.metrics()):
        if family.name == "kubegate_budget_used_ratio":
            for sample in family.samples:
                if sample.labels.get("tenant") == tenant:
                    return sample.value
    return None


def preset_spent(redis_server, b: Budget, usd: float) -> None:
    start, _ = period_bounds(b, datetime.now(UTC))
    redis_server.client().hset(period_key(GatewayKeys("default", GW), b, start), "spent", int(usd * 1_000_000))


def preset_tokens(redis_server, b: Budget, tokens: int) -> None:
    start, _ = period_bounds(b, datetime.now(UTC))
    redis_server.client().hset(period_key(GatewayKeys("default", GW), b, start), "spent_tokens", tokens)


def settled_tokens(url: str, b: Budget):
    """Budget state once no tokens are reserved any more (settles follow the response)."""

    async def read():
        r = aioredis.from_url(url)
        try:
            for _ in range(100):
                st = await read_budget_state(r, GatewayKeys("default", GW), b)
                if st.reserved_tokens == 0:
                    break
                await asyncio.sleep(0.1)
            return st
        finally:
            await r.aclose()

    return asyncio.run(read())


def test_a_token_quota_blocks_at_its_limit_with_headers(proxies, redis_server):
    proxy, _, policy = proxies
    b = budget(policy, "tok-b")
    preset_tokens(redis_server, b, TOKEN_LIMIT - 5)
    c = client(proxy, "tok")
    first = ask(c)
    assert first.headers["x-kubegate-budget-remaining-tokens"] == "5"
    assert "x-kubegate-budget-remaining-usd" not in first.headers  # the budget has no USD limit
    used = first.parse().usage.total_tokens
    assert settled_tokens(redis_server.url, b).spent_tokens == TOKEN_LIMIT - 5 + used  # as the answer counts them
    served = 1
    while True:
        try:
            ask(c)
        except openai.RateLimitError as exc:
            err = exc
            break
        served += 1
        assert served < 10, "the token quota never blocked"
    assert err.status_code == 429 and err.body["code"] == "budget_exceeded"
    assert f"{TOKEN_LIMIT} tokens" in err.body["message"]
    headers = err.response.headers
    assert headers["x-kubegate-budget-state"] == "blocked"
    assert headers["x-kubegate-budget-remaining-tokens"] == "0"
    assert "x-kubegate-budget-remaining-usd" not in headers and int(headers["Retry-After"]) >= 1
    st = settled_tokens(redis_server.url, b)
    # Admitted while spent + reserved is below the limit: the last one served crossed it by less than itself.
    assert TOKEN_LIMIT <= st.spent_tokens < TOKEN_LIMIT + used
    assert st.spent_tokens == TOKEN_LIMIT - 5 + served * used
    assert st.state == "blocked" and st.reserved_tokens == 0


def test_64_clients_two_proxies_hold_a_token_quota_to_one_request(proxies, redis_server):
    """Every client asks again after a refusal until the settled spend reaches the quota (a refusal may come from
    the other clients' reservations, each the request's worst case, far above what it really uses)."""
    a, b_proxy, policy = proxies
    b = budget(policy, "tokrace-b")
    probe = client(a, "tokrace")
    used = ask(probe).parse().usage.total_tokens
    before = settled_tokens(redis_server.url, b).spent_tokens
    assert before == used
    preset_tokens(redis_server, b, TOKEN_LIMIT - 40 * used - 1)
    clients = [client(a if i % 2 else b_proxy, "tokrace") for i in range(64)]
    served, refused = [0], [0]
    lock = threading.Lock()

    def spent() -> int:
        return int(
            redis_server.client().hget(period_key(GatewayKeys("default", GW), b, period_bounds(b)[0]), "spent_tokens")
        )

    def one(c: openai.OpenAI) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                ask(c)
                with lock:
                    served[0] += 1
            except openai.RateLimitError as exc:
                assert exc.body["code"] == "budget_exceeded"
                with lock:
                    refused[0] += 1
                if spent() >= TOKEN_LIMIT:
                    return
                time.sleep(0.05)

    with ThreadPoolExecutor(64) as pool:
        list(pool.map(one, clients))
    st = settled_tokens(redis_server.url, b)
    assert st.reserved_tokens == 0 and refused[0] >= 64
    assert st.spent_tokens == TOKEN_LIMIT - 40 * used - 1 + served[0] * used
    assert TOKEN_LIMIT <= st.spent_tokens < TOKEN_LIMIT + used  # over by less than one request
    assert served[0] == 41


def test_a_tenant_on_a_plan_gets_its_models_and_its_own_plan_budget(proxies, redis_server):
    proxy, _, policy = proxies
    b = budget(policy, "plan.planned")
    assert (b.tenant, b.limit_tokens, b.limit_usd) == ("planned", TOKEN_LIMIT, None)
    c = client(proxy, "planned")
    assert ask(c).headers["x-kubegate-budget-remaining-tokens"] == str(TOKEN_LIMIT)
    with pytest.raises(openai.NotFoundError) as refused:
        ask(c, "mid")  # not in the plan's allowedModels
    assert refused.value.body["code"] == "model_not_found"
    preset_tokens(redis_server, b, TOKEN_LIMIT)
    with pytest.raises(openai.RateLimitError) as exc:
        ask(c)
    assert exc.value.body["code"] == "budget_exceeded" and "plan.planned" in exc.value.body["message"]


def test_hard_limit_blocks_with_headers(proxies, redis_server):
    proxy, _, policy = proxies
    c = client(proxy, "hard")
    served = 0
    for _ in range(10):
        try:
            ask(c)
        except openai.RateLimitError as exc:
            err = exc
            break
        served += 1
    else:
        pytest.fail("hard budget never blocked")
    # limit 0.005 / cost 0.002: admitted while spent < limit -> 3 served (0.006), the 4th refused.
    assert served == 3
    assert err.status_code == 429
    assert err.body["code"] == "budget_exceeded"
    assert "hard-b" in err.body["message"]
    headers = err.response.headers
    assert float(headers["x-kubegate-budget-remaining-usd"]) == 0.0
    reset = datetime.fromisoformat(headers["x-kubegate-budget-reset"].replace("Z", "+00:00"))
    _, end = period_bounds(budget(policy, "hard-b"))
    assert reset == end
    assert 0 < int(headers["Retry-After"]) <= 86400
    st = state(redis_server.url, budget(policy, "hard-b"))
    assert st.spent_usd == pytest.approx(3 * COST)
    assert st.reserved_usd == 0
    assert st.state == "blocked"
    # The refused admit saw spent + reserved = 3 requests' cost (settled or still reserved, same sum).
    assert budget_gauge(proxy, "hard") == pytest.approx(3 * COST / 0.005)


def test_downgrade_follows_chain_to_the_end(proxies, redis_server, echo_upstream):
    proxy, _, policy = proxies
    c = client(proxy, "down")
    ask(c)
    assert echo_upstream.received()[-1]["body"]["model"] == "big-echo"  # below 50 %: served as asked
    preset_spent(redis_server, budget(policy, "down-b"), 0.6)
    raw = ask(c)
    assert raw.parse().choices[0].message.content == TEXT
    assert echo_upstream.received()[-1]["body"]["model"] == "small-echo"  # big -> mid -> small
    assert state(redis_server.url, budget(policy, "down-b")).state == "downgrade"


def test_zero_price_model_never_blocked(proxies, redis_server):
    proxy, _, policy = proxies
    preset_spent(redis_server, budget(policy, "free-b"), 5.0)
    c = client(proxy, "free")
    with pytest.raises(openai.RateLimitError) as exc:
        ask(c, "big")
    assert exc.value.body["code"] == "budget_exceeded"
    for _ in range(3):
        assert ask(c, "free").parse().choices[0].message.content == TEXT
    # A zero reservation must settle cleanly (Lua -0 once made HINCRBY refuse it).
    assert "settle failed" not in proxy.logs()
    assert state(redis_server.url, budget(policy, "free-b")).reserved_usd == 0


def test_64_clients_two_proxies_overshoot_below_one_request(proxies, redis_server):
    a, b, policy = proxies
    clients = [client(a if i % 2 else b, "race") for i in range(64)]

    def one(c: openai.OpenAI) -> str:
        try:
            ask(c)
            return "ok"
        except openai.RateLimitError as exc:
            return exc.body["code"]

    with ThreadPoolExecutor(64) as pool:
        outcomes = list(pool.map(one, clients))
    served = outcomes.count("ok")
    assert outcomes.count("budget_exceeded") == 64 - served
    st = state(redis_server.url, budget(policy, "race-b"))
    limit = float(budget(policy, "race-b").limit_usd)
    assert st.reserved_usd == 0
    assert st.spent_usd == pytest.approx(served * COST)
    # Admission stops once spent + reserved reaches the limit: 0.021 / 0.002 -> exactly 11 served.
    assert served == 11
    assert 0 <= st.spent_usd - limit < COST


def test_failed_call_releases_its_reservation(proxies, redis_server, echo_upstream):
    proxy, _, policy = proxies
    c = client(proxy, "rel")
    ask(c)
    echo_upstream.fail_next(500, 1)
    with pytest.raises(openai.APIStatusError) as exc:
        ask(c)
    assert exc.value.status_code >= 500
    ask(c)
    st = state(redis_server.url, budget(policy, "rel-b"))
    assert st.reserved_usd == 0
    assert st.spent_usd == pytest.approx(2 * COST)  # the failed call costs nothing


def test_a_claude_route_admits_its_real_output_limit_and_reserves_all_of_it(proxies, redis_server, echo_upstream):
    """Issue #20: Anthropic clients ask max_tokens 64000 (frameworks) or 32000 (Claude Code). The route sets no
    maxOutputTokens: the cap is claude-sonnet-4-5's output limit in LiteLLM's map, and a request at that limit
    reserves it all (64000 x 0.001 USD), so a second request is refused while the first is in flight."""
    proxy, _, policy = proxies
    assert {m.name: m.max_output_tokens for m in policy.models}[CLAUDE] == CLAUDE_MAX
    c = anthropic.Anthropic(base_url=proxy.base_url, api_key=key("maxed"), max_retries=0, timeout=60)
    b = budget(policy, "maxed-b")

    def ask_claude(max_tokens: int):
        return c.messages.create(model=CLAUDE, max_tokens=max_tokens, messages=[{"role": "user", "content": TEXT}])

    with pytest.raises(anthropic.BadRequestError) as exc:
        ask_claude(CLAUDE_MAX + 1)
    assert f"at most {CLAUDE_MAX}" in str(exc.value.body)

    answers: list = []
    first = threading.Thread(target=lambda: answers.append(ask_claude(CLAUDE_MAX)))
    first.start()
    try:
        deadline = time.monotonic() + CLAUDE_DELAY_MS / 1000
        reserved = 0.0
        while time.monotonic() < deadline and not reserved:
            reserved = asyncio.run(_budget_state(redis_server.url, b)).reserved_usd
            time.sleep(0.05)
        # The body's bytes at input price 0 plus every output token the model may give.
        assert reserved == pytest.approx(CLAUDE_MAX * float(OUT_PRICE))
        # All 64 USD are held (a request is admitted while spent + reserved is below the limit): the next request,
        # of any size, is refused until the first settles.
        with pytest.raises(anthropic.RateLimitError) as refused:
            ask_claude(2)
        assert refused.value.status_code == 429 and refused.value.body["error"]["code"] == "budget_exceeded"
    finally:
        first.join()
    assert answers and answers[0].content[0].text == TEXT
    assert echo_upstream.received()[-1]["body"]["max_tokens"] == CLAUDE_MAX
    settled = state(redis_server.url, b)
    assert settled.reserved_usd == 0 and 0 < settled.spent_usd < 1  # billed what the echo answered
    # Settled: the budget covers the real maximum again.
    assert ask_claude(CLAUDE_MAX).content[0].text == TEXT
