"""End to end: real LiteLLM proxy with kubegate hooks -> audit stream -> ``python -m gateway_operator.audit_cli``."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import openai
import pytest

from gateway_plugins.policy.keys import GatewayKeys
from tests.harness.echo import EchoServer
from tests.harness.procs import wait_until
from tests.harness.proxy import AUDIT_KEY_B64, ProxyServer
from tests.harness.redis import RedisServer
from tests.harness.rendered import cr, echo_route, render_proxy

ROOT = Path(__file__).resolve().parents[2]
KEY = "sk-kg-e2e-" + "7" * 32
MARKER = "zebra-marker-4f1c9e"
STREAM = GatewayKeys("default", "e2e").audit_stream


@pytest.fixture
def stack(tmp_path):
    rds = RedisServer(workdir=tmp_path, persistent=True).start()
    echo = EchoServer().start()
    rendered = render_proxy(
        [
            cr("LLMGateway", "e2e", {}),
            echo_route("e2e", "echo-model", echo.api_base(), upstream_model="echo-model"),
            cr("Tenant", "acme", {"gateway": "e2e", "allowedModels": ["echo-model"]}),
        ],
        keys={"acme": KEY},
    )
    proxy = ProxyServer(rendered.config, rendered.policy, redis_url=rds.url, env=rendered.env)
    try:
        proxy.start()
        yield rds, f"{proxy.base_url}/v1", proxy.proc
    finally:
        proxy.stop()
        echo.stop()
        rds.stop()


def audit(rds, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gateway_operator.audit_cli", *args, "--redis-url", rds.url, "--gateway", "e2e"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "KUBEGATE_AUDIT_KEY": AUDIT_KEY_B64},
    )


async def test_proxy_writes_verifiable_audit_without_text_or_key(stack, tmp_path):
    rds, base, _ = stack
    good = openai.AsyncOpenAI(base_url=base, api_key=KEY, max_retries=0)
    bad = openai.AsyncOpenAI(base_url=base, api_key="sk-wrong-" + "1" * 30, max_retries=0)
    for i in range(10):
        r = await good.chat.completions.create(
            model="echo-model", messages=[{"role": "user", "content": f"{MARKER} {i}"}]
        )
        assert r.choices
    refused = 0
    for _ in range(3):
        with pytest.raises(openai.APIStatusError) as err:
            await good.chat.completions.create(model="not-allowed", messages=[{"role": "user", "content": MARKER}])
        refused += 1
        assert err.value.status_code in (400, 401, 403, 404)
    with pytest.raises(openai.AuthenticationError):
        await bad.chat.completions.create(model="echo-model", messages=[{"role": "user", "content": MARKER}])

    def written() -> bool:
        # 10 served, the allow-list refusals, and the unknown key's refusal at auth.
        return int(rds_client(rds).xlen(STREAM)) >= 10 + refused + 1

    wait_until(written, timeout=30, what="audit records")
    v = audit(rds, "verify")
    assert v.returncode == 0, v.stderr + v.stdout
    out = tmp_path / "audit.jsonl"
    e = audit(rds, "export", "--out", str(out))
    assert e.returncode == 0, e.stderr
    text = out.read_text()
    records = [json.loads(x) for x in text.splitlines()]
    assert sum(r["status"] != "ok" and r["http_status"] not in (None, 200) for r in records) >= refused
    assert MARKER not in text and KEY not in text and KEY[:20] not in text
    assert MARKER not in text and "sk-wrong-" not in text
    # The unknown key's refusal is its window's sample; a summary record may follow it once the window ends.
    requests = [r for r in records if r["status"] != "summary"]
    assert sorted(r["tenant"] for r in requests) == ["acme"] * (10 + refused) + ["unauthenticated"]


def rds_client(rds):
    import redis

    return redis.Redis.from_url(rds.url)


async def test_redis_restart_under_proxy_load_loses_nothing(stack):
    rds, base, _ = stack
    client = openai.AsyncOpenAI(base_url=base, api_key=KEY, max_retries=0, timeout=30)
    sent = 0

    async def burst(n: int) -> None:
        nonlocal sent
        for i in range(n):
            # Other plugins may fail closed while Redis is down; every outcome still gets an audit record.
            with contextlib.suppress(openai.APIStatusError):
                await client.chat.completions.create(
                    model="echo-model", messages=[{"role": "user", "content": f"q{i}"}]
                )
            sent += 1

    await burst(15)
    rds.stop()
    await burst(15)
    restarted_at = time.time()
    rds.start()
    await burst(15)

    def all_written() -> bool:
        try:
            return int(rds_client(rds).xlen(STREAM)) >= sent
        except Exception:
            return False

    wait_until(all_written, timeout=60, what="audit records after the Redis restart")
    count = int(rds_client(rds).xlen(STREAM))
    assert count == sent == 45, f"{count} audit records for {sent} requests"
    v = audit(rds, "verify")
    assert v.returncode == 0 and "45 records" in v.stdout, v.stderr + v.stdout
    # The outage really went through the spool: records made before Redis came back were added after it did.
    spooled = [
        sid
        for sid, f in rds_client(rds).xrange(STREAM)
        if json.loads(f[b"r"])["time"] < restarted_at and int(sid.split(b"-")[0]) >= restarted_at * 1000
    ]
    # Not ==15: success records are finalized by LiteLLM's logging task after the response, so the last
    # outage requests may be built after the restart; any record at all proves the spool path ran.
    assert spooled, "no record went through the spool"
