"""The Sentinel primary is SIGKILLed under load (two real proxies, 64 clients, spec.redis.sentinel.replicaAcks 1 on
a primary with two replicas): after the promotion no spend is lost or counted twice and every request's audit record
is in the verified chain. The refusal window itself is a time, measured by bench/bench_redis_failover.py."""

from __future__ import annotations

import asyncio
import time

import httpx
from gateway_operator.audit_cli import main as audit_main

from gateway_plugins.policy.keys import GatewayKeys
from gateway_plugins.policy.periods import period_bounds, period_key
from tests.harness.proxy import AUDIT_KEY_B64, ProxyServer
from tests.harness.redis_topologies import MASTER, SentinelGroup
from tests.harness.rendered import cr, echo_route, render_proxy

GW, TENANT = "main", "load"
KEY = "sk-failover-load-0123456789"
COST_MICRO = 2000  # 2 completion tokens x 0.001 USD
BODY = {"model": "big", "messages": [{"role": "user", "content": "abcdefgh"}], "max_tokens": 2}
CLIENTS = 64


def _render(group: SentinelGroup, echo_base: str):
    redis = {
        "mode": "external",
        "topology": "sentinel",
        "sentinel": {
            "addresses": [f"127.0.0.1:{p}" for p in group.sentinel_ports],
            "masterName": MASTER,
            "replicaAcks": 1,
        },
        "passwordSecretRef": {"name": "redis", "key": "password"},
    }
    objects = [
        cr("LLMGateway", GW, {"redis": redis}),
        echo_route(GW, "big", echo_base, upstream_model="big-echo", output_price="0.001"),
        cr("Tenant", TENANT, {"gateway": GW, "allowedModels": ["big"]}),
        # Hard and far from its limit: every refusal is the outage's.
        cr("Budget", "load-b", {"tenant": TENANT, "limitUSD": "100000", "period": "monthly"}),
    ]
    return render_proxy(objects, keys={TENANT: KEY}, secrets={("redis", "password"): group.password})


async def _load(urls: list[str], group: SentinelGroup, statuses: list[int]) -> None:
    """64 clients until 40 requests were answered after the new primary was known to the sentinels."""
    promoted = asyncio.Event()
    after: list[int] = []

    async def client(i: int) -> None:
        async with httpx.AsyncClient(timeout=60, headers={"Authorization": f"Bearer {KEY}"}) as http:
            while not (promoted.is_set() and sum(1 for s in after if s == 200) >= 40):
                status = (await http.post(urls[i % 2] + "/v1/chat/completions", json=BODY)).status_code
                statuses.append(status)
                if promoted.is_set():
                    after.append(status)

    async def outage() -> None:
        while sum(1 for s in statuses if s == 200) < 100:  # under load first
            await asyncio.sleep(0.05)
        old = await asyncio.to_thread(group.kill_primary)
        while await asyncio.to_thread(group.primary_port) == old:
            await asyncio.sleep(0.1)
        promoted.set()

    await asyncio.gather(outage(), *(client(i) for i in range(CLIENTS)))


def test_killing_the_primary_loses_no_spend_and_no_audit_record(echo_upstream, tmp_path, capsys):
    group = SentinelGroup(replicas=2).start()
    proxies: list[ProxyServer] = []
    try:
        inputs = _render(group, echo_upstream.base_url)
        assert inputs.env["KUBEGATE_REDIS_REPLICA_ACKS"] == "1"
        proxies = [ProxyServer(inputs.config, inputs.policy, env=inputs.env).start() for _ in range(2)]
        statuses: list[int] = []
        asyncio.run(_load([p.base_url for p in proxies], group, statuses))
        # Every answer is served or refused for the outage, nothing else.
        assert set(statuses) <= {200, 503}, sorted(set(statuses))
        served = statuses.count(200)
        keys = GatewayKeys("default", GW)
        (budget,) = inputs.policy.budgets
        spend_key = period_key(keys, budget, period_bounds(budget)[0])
        client = group.client()
        try:
            # Settles that failed in the outage are retried in the background; audit records wait in the spools.
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline and (
                int(client.hget(spend_key, "reserved") or 0) or client.xlen(keys.audit_stream) < len(statuses)
            ):
                time.sleep(0.2)
            assert int(client.hget(spend_key, "reserved") or 0) == 0
            assert int(client.hget(spend_key, "spent")) == served * COST_MICRO, (served, statuses.count(503))
            records = client.xlen(keys.audit_stream)
            assert records == len(statuses)
        finally:
            client.close()
    finally:
        for p in proxies:
            p.stop()
    try:
        key_file = tmp_path / "audit.key"
        key_file.write_text(AUDIT_KEY_B64)
        capsys.readouterr()
        code = audit_main(
            ["verify", "--redis-url", group.url_with_credentials, "--gateway", GW, "--key-file", str(key_file)]
        )
        out = capsys.readouterr()
        assert code == 0 and f"OK: {records} records" in out.out, out.out + out.err
    finally:
        group.stop()
