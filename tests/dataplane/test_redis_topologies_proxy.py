"""A real proxy on an external Redis Cluster (3 masters, ACL user) and on a Sentinel group (primary, replica, three
sentinels), configured as the operator renders it from ``spec.redis``: budgets exact to the micro-dollar, a budget
that blocks, the response cache, and an audit chain that ``kubegate audit verify`` accepts with every record."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest
from gateway_operator.audit_cli import main as audit_main
from redis.cluster import RedisCluster

from gateway_plugins.policy.keys import GatewayKeys
from gateway_plugins.policy.periods import period_bounds, period_key
from tests.harness.proxy import AUDIT_KEY_B64, ProxyServer
from tests.harness.redis_topologies import MASTER, RedisClusterGroup, SentinelGroup
from tests.harness.rendered import ProxyInputs, cr, echo_route, render_proxy

GW = "main"
KEYS = GatewayKeys("default", GW)
COST_MICRO = 2000  # 2 completion tokens x 0.001 USD (the echo answers "abcdefgh" in 2 tokens)
# alpha, beta and gamma hash to different thirds of the slots: on the 3-master Cluster, one node each.
TENANTS = ("alpha", "beta", "gamma")
BETA_CALLS = 24


def key(tenant: str) -> str:
    return f"sk-topology-{tenant}-0123456789"


def _redis_spec(group: RedisClusterGroup | SentinelGroup) -> dict:
    if isinstance(group, RedisClusterGroup):
        return group.gateway_spec()
    sentinels = [f"127.0.0.1:{p}" for p in group.sentinel_ports]
    return {
        "mode": "external",
        "topology": "sentinel",
        "sentinel": {"addresses": sentinels, "masterName": MASTER},
        "passwordSecretRef": {"name": "redis-acl", "key": "password"},
    }


def render(group: RedisClusterGroup | SentinelGroup, echo_base: str) -> ProxyInputs:
    objects = [
        cr("LLMGateway", GW, {"redis": _redis_spec(group)}),
        echo_route(GW, "big", echo_base, upstream_model="big-echo", output_price="0.001"),
        *(cr("Tenant", t, {"gateway": GW, "allowedModels": ["big"]}) for t in ("alpha", "beta")),
        cr("Tenant", "gamma", {"gateway": GW, "allowedModels": ["big"], "cache": {}}),
        cr("Budget", "alpha-b", {"tenant": "alpha", "limitUSD": "0.005", "period": "daily"}),
        cr("Budget", "beta-b", {"tenant": "beta", "limitUSD": "1", "period": "daily"}),
    ]
    secrets = group.secrets if isinstance(group, RedisClusterGroup) else {("redis-acl", "password"): group.password}
    return render_proxy(objects, keys={t: key(t) for t in TENANTS}, secrets=secrets)


def ask(proxy: ProxyServer, tenant: str, **extra) -> tuple[int, dict]:
    api = openai.OpenAI(base_url=proxy.base_url + "/v1", api_key=key(tenant), max_retries=0, timeout=60)
    try:
        raw = api.chat.completions.with_raw_response.create(
            model="big", messages=[{"role": "user", "content": "abcdefgh"}], max_tokens=2, **extra
        )
        return 200, dict(raw.headers)
    except openai.APIStatusError as exc:
        return exc.status_code, dict(exc.response.headers)


@pytest.fixture(params=["cluster", "sentinel"])
def group(request):
    g = RedisClusterGroup() if request.param == "cluster" else SentinelGroup()
    try:
        yield g.start()
    finally:
        g.stop()


def _settled(client, budget_keys: list[str]) -> None:
    # Settle runs in LiteLLM's success callback, after the response was sent: wait for no reservation left.
    deadline = time.monotonic() + 30
    while any(int(client.hget(k, "reserved") or 0) for k in budget_keys):
        assert time.monotonic() < deadline, "reservations still open after 30 s"
        time.sleep(0.05)


def _check_redis(client, inputs: ProxyInputs, alpha: list[int], requests: int) -> None:
    budgets = {b.tenant: b for b in inputs.policy.budgets}
    keys = {t: period_key(KEYS, b, period_bounds(b)[0]) for t, b in budgets.items()}
    _settled(client, list(keys.values()))
    assert int(client.hget(keys["beta"], "spent")) == BETA_CALLS * COST_MICRO
    assert int(client.hget(keys["alpha"], "spent")) == alpha.count(200) * COST_MICRO
    if isinstance(client, RedisCluster):
        # One tenant's keys share a slot (ADMIT/SETTLE are single-slot scripts); the tenants spread over nodes.
        minute_keys = [k.decode() for k in client.scan_iter(match="kubegate:{default:main:beta}:*")]
        assert len({client.keyslot(k) for k in [*minute_keys, keys["beta"]]}) == 1, minute_keys
        holders = {client.get_node_from_key(keys[t]).name for t in ("alpha", "beta")}
        holders.add(client.get_node_from_key(KEYS.audit_stream).name)
        assert len(holders) == 3, holders
    # The audit stream: one record per request (written in the background, soon after each answer).
    deadline = time.monotonic() + 30
    while client.xlen(KEYS.audit_stream) < requests and time.monotonic() < deadline:
        time.sleep(0.1)
    assert client.xlen(KEYS.audit_stream) == requests


def test_budgets_cache_and_audit_through_each_topology(group, echo_upstream, tmp_path, capsys):
    inputs = render(group, echo_upstream.base_url)
    # What the operator put in the proxy's environment: the address without credentials, which come apart.
    assert inputs.env["KUBEGATE_REDIS_URL"] == group.url
    assert inputs.env["KUBEGATE_REDIS_PASSWORD"] == group.password
    proxy = ProxyServer(inputs.config, inputs.policy, env=inputs.env).start()
    try:
        # beta: concurrent calls, each billed exactly once.
        with ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(lambda _: ask(proxy, "beta")[0], range(BETA_CALLS)))
        assert codes == [200] * BETA_CALLS
        # alpha: 0.005 USD holds two 0.002 calls; a later one is refused by the budget (the admit of a call can
        # come before the previous call's settle, which the reservation covers).
        alpha = []
        while len(alpha) < 6 and (not alpha or alpha[-1] == 200):
            alpha.append(ask(proxy, "alpha")[0])
        assert alpha[-1] == 429 and alpha.count(200) >= 2, alpha
        # gamma: the second identical request is answered from the cache (a shard's script on one slot).
        first, second = ask(proxy, "gamma", temperature=0), None
        gamma_calls = 1
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            second = ask(proxy, "gamma", temperature=0)
            gamma_calls += 1
            if second[1].get("x-kubegate-cache") == "hit":
                break
            time.sleep(0.1)  # the store runs after the answer was sent
        assert first[0] == 200 and first[1].get("x-kubegate-cache") == "miss", first
        assert second is not None and second[1].get("x-kubegate-cache") == "hit", second
        requests = BETA_CALLS + len(alpha) + gamma_calls
        client = group.client()
        try:
            _check_redis(client, inputs, alpha, requests)
            records = client.xlen(KEYS.audit_stream)
        finally:
            client.close()
    finally:
        proxy.stop()
    key_file = tmp_path / "audit.key"
    key_file.write_text(AUDIT_KEY_B64)
    capsys.readouterr()
    code = audit_main(
        ["verify", "--redis-url", group.url_with_credentials, "--gateway", GW, "--key-file", str(key_file)]
    )
    out = capsys.readouterr()
    assert code == 0, out.out + out.err
    assert f"{records} records" in out.out, out.out
