"""Load through two proxies while a Redis primary is lost, and the checks that nothing was lost: used by the
external Sentinel and Cluster tests and the managed high-availability test (the groups differ, the guarantees do
not)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from gateway_operator.audit_cli import main as audit_main

from gateway_plugins.policy.keys import GatewayKeys
from gateway_plugins.policy.periods import period_bounds, period_key
from tests.harness.proxy import AUDIT_KEY_B64, ProxyServer
from tests.harness.rendered import cr, echo_route, render_proxy

TENANT = "load"
KEY = "sk-failover-load-0123456789"
COST_MICRO = 2000  # 2 completion tokens x 0.001 USD
BODY = {"model": "big", "messages": [{"role": "user", "content": "abcdefgh"}], "max_tokens": 2}


def render_load(gateway: dict[str, Any], echo_base: str, secrets: dict[tuple[str, str], str]):
    """render_proxy of ``gateway`` with one route and one tenant whose budget is hard and far from its limit, so
    every refusal is the outage's."""
    gw = gateway["metadata"]["name"]
    objects = [
        gateway,
        echo_route(gw, "big", echo_base, upstream_model="big-echo", output_price="0.001"),
        cr("Tenant", TENANT, {"gateway": gw, "allowedModels": ["big"]}),
        cr("Budget", "load-b", {"tenant": TENANT, "limitUSD": "100000", "period": "monthly"}),
    ]
    return render_proxy(objects, keys={TENANT: KEY}, secrets=secrets)


async def load_through_failover(
    urls: list[str],
    key: str,
    body: dict[str, Any],
    kill_primary: Callable[[], int],
    primary_port: Callable[[], int],
    statuses: list[int],
    unexpected: list[str],
    clients: int = 64,
) -> None:
    """``clients`` clients until 40 requests were answered after the new primary was known to the sentinels; the
    primary is killed once 100 were served. ``unexpected``: the first bodies of answers neither 200 nor 503."""
    promoted = asyncio.Event()
    after: list[int] = []

    async def client(i: int) -> None:
        async with httpx.AsyncClient(timeout=60, headers={"Authorization": f"Bearer {key}"}) as http:
            while not (promoted.is_set() and sum(1 for s in after if s == 200) >= 40):
                answer = await http.post(urls[i % len(urls)] + "/v1/chat/completions", json=body)
                status = answer.status_code
                statuses.append(status)
                if status not in (200, 503) and len(unexpected) < 5:
                    unexpected.append(answer.text[:500])
                if promoted.is_set():
                    after.append(status)

    async def outage() -> None:
        while sum(1 for s in statuses if s == 200) < 100:  # under load first
            await asyncio.sleep(0.05)
        old = await asyncio.to_thread(kill_primary)
        while True:
            try:
                if await asyncio.to_thread(primary_port) != old:
                    break
            except Exception:  # a sentinel of the lost pod itself, or one busy electing
                pass
            await asyncio.sleep(0.1)
        promoted.set()

    await asyncio.gather(outage(), *(client(i) for i in range(clients)))


def failover_under_load(
    inputs,
    kill_primary: Callable[[], int],
    primary_port: Callable[[], int],
    store_client: Callable[[], Any],
    *,
    gateway: str,
    env: dict[str, str] | None = None,
) -> int:
    """Two proxies from ``inputs`` (render_load's; ``env`` in place of its own), 64 clients through the failover:
    every answer served or refused for the outage, then every served request charged once and every answer audited;
    returns the number of audit records."""
    proxies = []
    try:
        proxies = [ProxyServer(inputs.config, inputs.policy, env=env or inputs.env).start() for _ in range(2)]
        statuses: list[int] = []
        unexpected: list[str] = []
        urls = [p.base_url for p in proxies]
        asyncio.run(load_through_failover(urls, KEY, BODY, kill_primary, primary_port, statuses, unexpected))
        assert set(statuses) <= {200, 503}, (sorted(set(statuses)), unexpected)
        client = store_client()
        try:
            return assert_spend_and_records_kept(client, inputs.policy, gateway, statuses, COST_MICRO)
        finally:
            client.close()
    finally:
        for p in proxies:
            p.stop()


def assert_spend_and_records_kept(client, policy, gateway: str, statuses: list[int], cost_micro: int) -> int:
    """Every served request charged once, every answer audited, once the proxies' retries and spools are done;
    returns the number of audit records."""
    served = statuses.count(200)
    keys = GatewayKeys("default", gateway)
    (budget,) = policy.budgets
    spend_key = period_key(keys, budget, period_bounds(budget)[0])
    # Settles that failed in the outage are retried in the background; audit records wait in the spools.
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and (
        int(client.hget(spend_key, "reserved") or 0) or client.xlen(keys.audit_stream) < len(statuses)
    ):
        time.sleep(0.2)
    leases = client.zrange(keys.budget_leases(TENANT, budget.name, period_bounds(budget)[0]), 0, -1)
    reserved = int(client.hget(spend_key, "reserved") or 0)
    assert reserved == 0, (reserved, len(leases), statuses.count(503))
    assert int(client.hget(spend_key, "spent")) == served * cost_micro, (served, statuses.count(503))
    records = client.xlen(keys.audit_stream)
    assert records == len(statuses)
    return records


def assert_chain_verifies(url: str, gateway: str, records: int, tmp_path: Path, capsys) -> None:
    key_file = tmp_path / "audit.key"
    key_file.write_text(AUDIT_KEY_B64)
    capsys.readouterr()
    code = audit_main(["verify", "--redis-url", url, "--gateway", gateway, "--key-file", str(key_file)])
    out = capsys.readouterr()
    assert code == 0 and f"OK: {records} records" in out.out, out.out + out.err
