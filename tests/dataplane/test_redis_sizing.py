"""A small managed Redis filled to its caps under load (#26 item 0): no refusal, no lost record, never OOM.

redis-server runs with exactly the arguments the operator renders for a Gateway with a small audit stream
(``streamMaxLen`` 1000) and a small cache (``maxTotalBytes`` 256 KiB): ``maxmemory`` derived from them with
``noeviction``, the append-only file as in the pod. A real proxy, rendered from the same objects, serves a few thousand
concurrent requests (one in ten streamed, every one cacheable and priced against a Budget), so the stream passes its
cap several times and the cache fills. The measured costs are printed (docs/operations.md quotes them).
"""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import redis
from gateway_operator.builders import redis_sizing as sizing
from gateway_operator.builders.redis import build_redis
from prometheus_client.parser import text_string_to_metric_families

from gateway_plugins.policy.keys import GatewayKeys, audit_heads, audit_trims
from tests.harness.proxy import ProxyServer
from tests.harness.redis import RedisServer
from tests.harness.rendered import cr, echo_route, render_proxy

GW = "sized"
KEYS = GatewayKeys("default", GW)
KEY = "sk-sized-team-0123456789"
STREAM_MAX_LEN = 1000
CACHE_MAX_BYTES = 262_144
SPEC = {"audit": {"streamMaxLen": STREAM_MAX_LEN}, "cache": {"maxTotalBytes": CACHE_MAX_BYTES}}
REQUESTS = 2500
CONCURRENCY = 32


def _objects(echo_base: str) -> list[dict]:
    return [
        cr("LLMGateway", GW, SPEC),
        echo_route(GW, "echo", echo_base, input_price="0.000001", output_price="0.000002"),
        cr("Tenant", "team", {"gateway": GW, "allowedModels": ["*"], "cache": {}}),
        cr("Budget", "team-monthly", {"tenant": "team", "limitUSD": "1000"}),
    ]


def _rendered_args(password: str) -> list[str]:
    gateway = {**cr("LLMGateway", GW, SPEC), "metadata": {"name": GW, "namespace": "default", "uid": "u"}}
    statefulset, _ = build_redis(gateway)
    (container,) = statefulset["spec"]["template"]["spec"]["containers"]
    return [a.replace("$(REDIS_PASSWORD)", password) for a in container["args"]]


@pytest.fixture(scope="module")
def sized_redis() -> Iterator[RedisServer]:
    password = secrets.token_urlsafe(16)
    server = RedisServer(args=_rendered_args(password), password=password).start()
    yield server
    server.stop()


class MemorySampler(threading.Thread):
    """Reads INFO memory every 50 ms while the load runs: the peak, not just the end state."""

    def __init__(self, client: redis.Redis) -> None:
        super().__init__(daemon=True)
        self.client, self.peak, self.stop_event = client, 0, threading.Event()

    def run(self) -> None:
        while not self.stop_event.is_set():
            self.peak = max(self.peak, int(self.client.info("memory")["used_memory"]))
            time.sleep(0.05)


async def _load(base_url: str) -> tuple[list[int], list[str]]:
    statuses: list[int] = []
    refusals: list[str] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(REQUESTS):
        queue.put_nowait(i)
    headers = {"Authorization": f"Bearer {KEY}"}

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            i = queue.get_nowait()
            body = {
                "model": "echo",
                "messages": [{"role": "user", "content": f"request {i}: summarise the sizing of a small Redis"}],
                "max_tokens": 16,
                "temperature": 0,
                "stream": i % 10 == 0,
            }
            async with client.stream("POST", "/v1/chat/completions", json=body, headers=headers) as response:
                body = await response.aread()
                statuses.append(response.status_code)
                if response.status_code != 200:
                    refusals.append(body.decode(errors="replace")[:300])

    limits = httpx.Limits(max_connections=CONCURRENCY)
    async with httpx.AsyncClient(base_url=base_url, timeout=60, limits=limits) as client:
        await asyncio.gather(*(worker(client) for _ in range(CONCURRENCY)))
    return statuses, refusals


def _samples(text: str, name: str) -> dict[str, float]:
    """``name``'s samples by their ``outcome`` label (or '' without one)."""
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found[sample.labels.get("outcome", "")] = sample.value
    return found


@pytest.mark.slow
def test_a_small_managed_redis_filled_past_its_caps_refuses_nothing_and_loses_nothing(
    sized_redis, echo_upstream, make_proxy
):
    inputs = render_proxy(_objects(echo_upstream.base_url), keys={"team": KEY})
    size = sizing.size(STREAM_MAX_LEN, CACHE_MAX_BYTES)
    rds = sized_redis.client()
    assert int(rds.config_get("maxmemory")["maxmemory"]) == size.maxmemory
    assert rds.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
    assert rds.config_get("appendonly")["appendonly"] == "yes"
    # The stream cap reaches the proxy as the Deployment's env says.
    assert inputs.env["KUBEGATE_AUDIT_STREAM_MAXLEN"] == str(STREAM_MAX_LEN)
    proxy: ProxyServer = make_proxy(
        inputs.config,
        inputs.policy,
        redis_url=sized_redis.url,
        env={**inputs.env, "KUBEGATE_REDIS_MEMORY_POLL_SECONDS": "0.5"},
    )
    before = int(rds.info("memory")["used_memory"])
    sampler = MemorySampler(sized_redis.client())
    sampler.start()
    started = time.monotonic()
    try:
        statuses, refusals = asyncio.run(_load(proxy.base_url))
    finally:
        sampler.stop_event.set()
        sampler.join()
    elapsed = time.monotonic() - started

    # No refusal.
    assert len(statuses) == REQUESTS and set(statuses) == {200}, refusals

    # No lost record: the one chain's head is at REQUESTS, the stream holds the last STREAM_MAX_LEN and the trim
    # mark accounts for every record before them.
    stream = KEYS.audit_stream
    deadline = time.monotonic() + 30
    heads: dict[bytes, bytes] = {}
    while time.monotonic() < deadline:
        heads = rds.hgetall(audit_heads(stream))
        if sum(int(v.split(b":")[0]) for v in heads.values()) >= REQUESTS:
            break
        time.sleep(0.1)
    ((chain, head),) = heads.items()
    assert int(head.split(b":")[0]) == REQUESTS
    length = rds.xlen(stream)
    assert length == STREAM_MAX_LEN
    trimmed = rds.hget(audit_trims(stream), chain)
    assert int(trimmed.split(b":")[0]) == REQUESTS - length

    # The writer wrote everything at once: nothing spooled, nothing dropped.
    text = proxy.metrics()
    records = _samples(text, "kubegate_audit_records_total")
    assert records.get("written") == REQUESTS, records
    assert records.get("spooled", 0) == 0 and records.get("dropped", 0) == 0, records

    # Never OOM, and under maxmemory throughout.
    errors = rds.info("errorstats")
    assert not any("OOM" in name for name in errors), errors
    assert sampler.peak < size.maxmemory

    # The caps' costs as sized: a record takes less than RECORD_MEMORY_BYTES, a cache entry less than its value
    # times CACHE_OVERHEAD_FACTOR, and the cache stays within its cap.
    per_record = rds.memory_usage(stream, samples=0) / length
    entries = list(rds.scan_iter(match=KEYS.cache_entry_pattern("team"), count=1000))
    values = sum(rds.strlen(k) for k in entries)
    index = rds.memory_usage(KEYS.cache_index(0), samples=0)
    cache_memory = sum(rds.memory_usage(k, samples=0) for k in entries) + index
    aof = int(rds.info("persistence")["aof_current_size"])
    print(
        f"\n{REQUESTS} requests in {elapsed:.1f}s ({REQUESTS / elapsed:.0f}/s); maxmemory {size.maxmemory:,}; "
        f"used_memory {before:,} before, peak {sampler.peak:,}; stream {per_record:.0f} B/record; "
        f"cache {len(entries)} entries, {values:,} B of values in {cache_memory:,} B "
        f"({(cache_memory - values) / max(1, len(entries)):.0f} B/entry more); AOF {aof / REQUESTS:.0f} B/request"
    )
    assert per_record < sizing.RECORD_MEMORY_BYTES
    assert entries, "nothing was cached"
    assert int(rds.get(KEYS.cache_bytes(0))) == values <= CACHE_MAX_BYTES
    assert cache_memory < values * sizing.CACHE_OVERHEAD_FACTOR

    # The proxies report Redis memory against maxmemory (what the KubegateRedisMemory* alerts watch).
    assert _samples(text, "kubegate_redis_maxmemory_bytes") == {"": float(size.maxmemory)}
    assert 0 < _samples(text, "kubegate_redis_used_memory_bytes")[""] < size.maxmemory
