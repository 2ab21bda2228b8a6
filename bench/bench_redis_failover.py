"""Kill the Sentinel primary under load: the refusal window, and whether spend or audit records were lost.

Not a test (the window is a time): two real proxies share a Sentinel group (primary, replica, three sentinels with
``down-after-milliseconds 2000``); 64 clients send budgeted requests (a hard budget far from its limit, so every
refusal is the outage's) for ``--before`` seconds, then the primary is SIGKILLed and the load goes on for
``--after`` seconds. Then it checks, on the promoted replica:

- spend: the budget's ``spent`` equals the answered requests times their exact cost (0.002 USD), no reservation
  left (lost settles, or settles counted twice, show as a difference);
- audit: one record per answered or refused request, and ``kubegate audit verify`` accepts the chain.

It prints the refusal window (first to last refused answer after the kill, and the kill to the first answer after
the last refusal) and a JSON line. ``--replica-acks 1`` runs the proxies with spec.redis.sentinel.replicaAcks 1
(WAIT after each audit append and settle). ``--managed`` runs the managed Redis's high-availability pods instead,
from the StatefulSet the operator renders for ``spec.redis.highAvailability: {replicas: 3}`` (its own
``down-after-milliseconds 5000`` and ``replicaAcks 1``; tests/harness/managed_redis_ha.py), and kills the primary's
whole pod (data node and sentinel).

Usage: .venv/bin/python bench/bench_redis_failover.py [--before 5] [--after 20] [--clients 64] [--replica-acks 0]
       [--replicas 1] [--managed]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import sys
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
from gateway_operator.audit_cli import main as audit_main  # noqa: E402

from gateway_plugins.policy.keys import GatewayKeys  # noqa: E402
from gateway_plugins.policy.periods import period_bounds, period_key  # noqa: E402
from tests.harness.echo import EchoServer  # noqa: E402
from tests.harness.failover import BODY, COST_MICRO, KEY, render_load  # noqa: E402
from tests.harness.managed_redis_ha import RenderedRedisGroup  # noqa: E402
from tests.harness.proxy import AUDIT_KEY_B64, ProxyServer  # noqa: E402
from tests.harness.redis_topologies import MASTER, SentinelGroup  # noqa: E402
from tests.harness.rendered import cr  # noqa: E402

GW = "main"


def render(group: SentinelGroup, echo_base: str, acks: int):
    sentinels = [f"127.0.0.1:{p}" for p in group.sentinel_ports]
    redis = {
        "mode": "external",
        "topology": "sentinel",
        "sentinel": {"addresses": sentinels, "masterName": MASTER, "replicaAcks": acks},
        "passwordSecretRef": {"name": "redis", "key": "password"},
    }
    return render_load(cr("LLMGateway", GW, {"redis": redis}), echo_base, {("redis", "password"): group.password})


def managed_gateway() -> dict:
    gateway = cr("LLMGateway", GW, {"redis": {"highAvailability": {"replicas": 3}}})
    return {**gateway, "metadata": {**gateway["metadata"], "uid": "bench"}}


def managed_group() -> RenderedRedisGroup:
    return RenderedRedisGroup(managed_gateway(), "bench-" + KEY)


def render_managed(group: RenderedRedisGroup, echo_base: str):
    secret = {(f"{GW}-kubegate-redis", "password"): group.password}
    inputs = render_load(managed_gateway(), echo_base, secret)
    inputs.env["KUBEGATE_REDIS_URL"] = group.localize(inputs.env["KUBEGATE_REDIS_URL"])
    return inputs


async def load(urls: list[str], clients: int, stop_at: float, log: list) -> None:
    async def client(i: int) -> None:
        url = urls[i % len(urls)] + "/v1/chat/completions"
        async with httpx.AsyncClient(timeout=30, headers={"Authorization": f"Bearer {KEY}"}) as http:
            while time.monotonic() < stop_at:
                started = time.monotonic()
                try:
                    status = (await http.post(url, json=BODY)).status_code
                except httpx.HTTPError:
                    status = 0  # no answer at all (counted apart: an audit record may or may not exist)
                log.append((started, time.monotonic(), status))

    await asyncio.gather(*(client(i) for i in range(clients)))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--before", type=float, default=5)
    ap.add_argument("--after", type=float, default=20)
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--replica-acks", type=int, default=0)
    ap.add_argument("--replicas", type=int, default=1)
    ap.add_argument("--managed", action="store_true", help="the managed Redis's rendered HA pods (3)")
    args = ap.parse_args()

    echo = EchoServer().start()
    group = managed_group().start() if args.managed else SentinelGroup(replicas=args.replicas).start()
    proxies: list[ProxyServer] = []
    try:
        if args.managed:
            inputs = render_managed(group, echo.base_url)
        else:
            inputs = render(group, echo.base_url, args.replica_acks)
        proxies = [ProxyServer(inputs.config, inputs.policy, env=inputs.env).start() for _ in range(2)]
        log: list[tuple[float, float, int]] = []
        start = time.monotonic()
        kill_at = start + args.before
        stop_at = kill_at + args.after

        async def run() -> float:
            task = asyncio.ensure_future(load([p.base_url for p in proxies], args.clients, stop_at, log))
            await asyncio.sleep(max(0.0, kill_at - time.monotonic()))
            killed = time.monotonic()
            await asyncio.to_thread(group.kill_primary)
            await task
            return killed

        killed = asyncio.run(run())
        ok = sum(1 for *_, s in log if s == 200)
        refused = [(t0, t1, s) for t0, t1, s in log if s != 200]
        statuses: dict[int, int] = {}
        for *_, s in log:
            statuses[s] = statuses.get(s, 0) + 1
        after_kill = [r for r in refused if r[1] >= killed]
        first_refusal = min((r[1] for r in after_kill), default=None)
        last_refusal = max((r[1] for r in after_kill), default=None)
        recovered = min((t1 for t0, t1, s in log if s == 200 and last_refusal and t0 > last_refusal), default=None)
        window = (last_refusal - first_refusal) if first_refusal is not None else 0.0
        outage = (recovered - killed) if recovered is not None else None

        client = group.client()
        keys = GatewayKeys("default", GW)
        (budget,) = inputs.policy.budgets
        spend_key = period_key(keys, budget, period_bounds(budget)[0])
        deadline = time.monotonic() + 90  # settles retried in the background, audit spools drained
        answered = sum(1 for *_, s in log if s != 0)
        while time.monotonic() < deadline:
            reserved = int(client.hget(spend_key, "reserved") or 0)
            if reserved == 0 and client.xlen(keys.audit_stream) >= answered:
                break
            time.sleep(0.5)
        spent = int(client.hget(spend_key, "spent") or 0)
        reserved = int(client.hget(spend_key, "reserved") or 0)
        records = client.xlen(keys.audit_stream)
        client.close()
    finally:
        for p in proxies:
            p.stop()
    try:
        key_file = Path(group.dir) / "audit.key"
        key_file.write_text(AUDIT_KEY_B64)
        out = io.StringIO()
        with redirect_stdout(out), redirect_stderr(out):
            verified = audit_main(
                ["verify", "--redis-url", group.url_with_credentials, "--gateway", GW, "--key-file", str(key_file)]
            )
    finally:
        group.stop()
        echo.stop()
    result = {
        "managed": args.managed,
        "replica_acks": int(inputs.env.get("KUBEGATE_REDIS_REPLICA_ACKS", 0)),
        "replicas": 2 if args.managed else args.replicas,
        "clients": args.clients,
        "requests": len(log),
        "statuses": statuses,
        "refusal_window_s": round(window, 2),
        "kill_to_recovery_s": round(outage, 2) if outage is not None else None,
        "spent_micro": spent,
        "expected_micro": ok * COST_MICRO,
        "spend_difference_micro": spent - ok * COST_MICRO,
        "reserved_left_micro": reserved,
        "audit_records": records,
        "answered": answered,
        "audit_missing": answered - records,
        "audit_verify": out.getvalue().strip().splitlines()[-1] if out.getvalue().strip() else "",
        "audit_verify_exit": verified,
    }
    print(
        f"refusal window {result['refusal_window_s']} s (kill to recovery {result['kill_to_recovery_s']} s); "
        f"{ok} answered, spend difference {result['spend_difference_micro']} micro-USD, "
        f"audit missing {result['audit_missing']}; verify: {result['audit_verify']}"
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
