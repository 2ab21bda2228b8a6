"""The response cache through a real proxy, real Redis and the echo upstream, with the official SDKs as clients.

A repeated request is answered from the tenant's cache (the upstream sees it once) and audited as a hit that cost
nothing; another tenant never gets it; a hit is restored with the current request's own PII originals; entries
expire; streams replay as streams in each API's format; the bypass header and non-cacheable requests go upstream;
Redis holds no raw PII.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import anthropic
import httpx
import openai
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from gateway_plugins.policy.keys import GatewayKeys
from tests.dataplane.contract_stack import MODELS, audit_records, route
from tests.harness.proxy import ProxyServer
from tests.harness.rendered import cr, render_proxy

GW = "cache"
NS = "default"
STREAM = GatewayKeys(NS, GW).audit_stream
CACHE = {"ttlSeconds": 300}
PII = {"entities": {"EMAIL_ADDRESS": "mask"}, "restore": True, "timeoutMs": 10000}
TENANTS = {
    "alpha": {"cache": CACHE},
    "beta": {"cache": CACHE},
    "pii": {"cache": CACHE, "pii": PII},
    "short": {"cache": {"ttlSeconds": 1}},
    "guard": {"cache": CACHE, "pii": {"entities": {"EMAIL_ADDRESS": "block"}, "timeoutMs": 10000}},
    "plain": {},
}


def key(tenant: str) -> str:
    return f"sk-cache-{tenant}-0123456789"


@pytest.fixture(scope="module")
def proxy(redis_server, echo_upstream) -> Iterator[ProxyServer]:
    objects = [
        cr("LLMGateway", GW, {}, NS),
        *(route(GW, m, echo_upstream.base_url) for m in MODELS),
        *(cr("Tenant", t, {"gateway": GW, "allowedModels": ["*"], **spec}, NS) for t, spec in TENANTS.items()),
    ]
    s = render_proxy(objects, keys={t: key(t) for t in TENANTS})
    server = ProxyServer(s.config, s.policy, redis_url=redis_server.url, env=s.env).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def rds(redis_server) -> redis.Redis:
    return redis.Redis.from_url(redis_server.url)


def oai(proxy: ProxyServer, tenant: str, **headers: str) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=proxy.base_url + "/v1", api_key=key(tenant), max_retries=0, timeout=60, default_headers=headers
    )


def claude(proxy: ProxyServer, tenant: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=proxy.base_url, api_key=key(tenant), max_retries=0, timeout=60)


def record_of(rds: redis.Redis, request_id: str, timeout: float = 30) -> dict:
    """The request's one audit record (written in batches after the answer; wait for it)."""
    deadline = time.monotonic() + timeout
    while True:
        found = [r for r in audit_records(rds, STREAM) if r["request_id"] == request_id]
        if found or time.monotonic() > deadline:
            assert len(found) == 1, f"{len(found)} audit records for {request_id}"
            return found[0]
        time.sleep(0.1)


def wait_stored(rds: redis.Redis, tenant: str, count: int, timeout: float = 30) -> list[bytes]:
    """Entries are stored in the background after the answer: wait until the tenant has ``count``."""
    pattern = GatewayKeys(NS, GW).cache_entry_pattern(tenant)
    deadline = time.monotonic() + timeout
    keys = list(rds.scan_iter(pattern))
    while len(keys) < count and time.monotonic() < deadline:
        time.sleep(0.05)
        keys = list(rds.scan_iter(pattern))
    return keys


def upstream_calls(echo_upstream, marker: str) -> int:
    return sum(marker in json.dumps(r["body"]) for r in echo_upstream.received())


def chat(proxy: ProxyServer, tenant: str, text: str, **kwargs):
    kwargs.setdefault("temperature", 0)
    return oai(proxy, tenant).chat.completions.with_raw_response.create(
        model="echo", messages=[{"role": "user", "content": text}], max_tokens=32, **kwargs
    )


def test_repeat_is_served_from_cache_at_no_cost(proxy, echo_upstream, rds):
    text = "cache me: the capital of France"
    first = chat(proxy, "alpha", text)
    assert first.headers["x-kubegate-cache"] == "miss"
    wait_stored(rds, "alpha", 1)
    second = chat(proxy, "alpha", text)
    assert second.headers["x-kubegate-cache"] == "hit"
    assert second.parse().choices[0].message.content == first.parse().choices[0].message.content == text
    assert upstream_calls(echo_upstream, text) == 1

    miss = record_of(rds, first.headers["x-kubegate-request-id"])
    hit = record_of(rds, second.headers["x-kubegate-request-id"])
    assert miss["cost_usd"] > 0 and miss["decisions"]["cache"] == {"result": "miss"}
    assert hit["status"] == "success" and hit["http_status"] == 200
    assert hit["cost_usd"] == 0 and hit["prompt_tokens"] == 0 and hit["completion_tokens"] == 0
    assert hit["decisions"]["cache"]["result"] == "hit"
    assert hit["decisions"]["cache"]["saved_usd"] == pytest.approx(miss["cost_usd"])
    assert "budget" not in hit["decisions"]  # nothing reserved

    families = {f.name: f for f in text_string_to_metric_families(proxy.metrics())}
    hits = [s for s in families["kubegate_cache_requests"].samples if s.labels == {"tenant": "alpha", "result": "hit"}]
    assert hits and hits[0].value >= 1
    saved = [s for s in families["kubegate_cache_saved_usd"].samples if s.labels.get("tenant") == "alpha"]
    assert saved and saved[0].value == pytest.approx(miss["cost_usd"])


def test_another_tenant_misses(proxy, echo_upstream, rds):
    text = "tenant isolation: same words, other tenant"
    chat(proxy, "alpha", text)
    wait_stored(rds, "alpha", 2)
    other = chat(proxy, "beta", text)
    assert other.headers["x-kubegate-cache"] == "miss"
    assert upstream_calls(echo_upstream, text) == 2


def test_hit_restores_the_current_requests_pii(proxy, echo_upstream, rds):
    first = chat(proxy, "pii", "please write to ann@example.org today")
    assert first.parse().choices[0].message.content == "please write to ann@example.org today"
    wait_stored(rds, "pii", 1)
    second = chat(proxy, "pii", "please write to bob@example.net today")
    assert second.headers["x-kubegate-cache"] == "hit"
    answer = second.parse().choices[0].message.content
    assert answer == "please write to bob@example.net today"
    assert "ann@example.org" not in second.text
    assert upstream_calls(echo_upstream, "please write to <EMAIL_ADDRESS_1> today") == 1


def _everything_in(rds: redis.Redis, key: bytes) -> bytes:
    kind = rds.type(key)
    if kind == b"string":
        return rds.get(key)
    if kind == b"zset":
        return b" ".join(rds.zrange(key, 0, -1))
    if kind == b"hash":
        return b" ".join(k + b"=" + v for k, v in rds.hgetall(key).items())
    if kind == b"stream":
        return b" ".join(v for _, fields in rds.xrange(key) for v in fields.values())
    return b""


def test_no_raw_pii_in_redis(proxy, rds):
    chat(proxy, "pii", "mail carol@example.com about the invoice")
    stored = wait_stored(rds, "pii", 2)
    # Every key and value of this Gateway (cache entries, cache index, audit stream, budgets, policy).
    for k in rds.scan_iter(GatewayKeys(NS, GW).pattern):
        value = _everything_in(rds, k)
        for raw in (b"example.com", b"example.org", b"example.net", b"carol", b"ann@", b"bob@"):
            assert raw not in k and raw not in value, k
    assert any(b"<EMAIL_ADDRESS_1>" in rds.get(k) for k in stored)


def test_entries_expire(proxy, echo_upstream, rds):
    text = "short-lived entry"
    chat(proxy, "short", text)
    [entry] = wait_stored(rds, "short", 1)
    deadline = time.monotonic() + 30
    while rds.exists(entry) and time.monotonic() < deadline:
        time.sleep(0.2)
    again = chat(proxy, "short", text)
    assert again.headers["x-kubegate-cache"] == "miss"
    assert upstream_calls(echo_upstream, text) == 2


def test_bypass_header_goes_upstream(proxy, echo_upstream, rds):
    text = "bypass me please"
    chat(proxy, "beta", text)
    wait_stored(rds, "beta", 2)
    raw = oai(proxy, "beta", **{"x-kubegate-cache": "bypass"}).chat.completions.with_raw_response.create(
        model="echo", messages=[{"role": "user", "content": text}], max_tokens=32, temperature=0
    )
    assert raw.headers["x-kubegate-cache"] == "bypass"
    assert upstream_calls(echo_upstream, text) == 2
    assert record_of(rds, raw.headers["x-kubegate-request-id"])["decisions"]["cache"] == {"result": "bypass"}


@pytest.mark.parametrize("kwargs", [{"temperature": 0.7}, {"temperature": None}])
def test_sampled_requests_are_not_cached(proxy, echo_upstream, rds, kwargs):
    text = f"sampled answer {kwargs}"
    kwargs = {k: v for k, v in kwargs.items() if v is not None} or {"temperature": openai.NOT_GIVEN}
    for _ in range(2):
        raw = chat(proxy, "alpha", text, **kwargs)
        assert raw.headers["x-kubegate-cache"] == "skip"
    assert upstream_calls(echo_upstream, text) == 2
    record = record_of(rds, raw.headers["x-kubegate-request-id"])
    assert record["decisions"]["cache"] == {"result": "skip", "reason": "temperature"}


def test_tenant_without_cache_is_untouched(proxy, echo_upstream):
    text = "no cache for plain"
    for _ in range(2):
        raw = chat(proxy, "plain", text)
        assert "x-kubegate-cache" not in raw.headers
    assert upstream_calls(echo_upstream, text) == 2


def _chat_stream(proxy: ProxyServer, tenant: str, text: str) -> tuple[str, str]:
    with oai(proxy, tenant).chat.completions.with_streaming_response.create(
        model="echo", messages=[{"role": "user", "content": text}], max_tokens=32, temperature=0, stream=True
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        pieces = [c.choices[0].delta.content or "" for c in response.parse() if c.choices]
        return response.headers["x-kubegate-cache"], "".join(pieces)


def test_chat_stream_hit_replays_as_a_stream(proxy, echo_upstream, rds):
    text = "stream this answer to jim@example.org twice"
    assert _chat_stream(proxy, "pii", text) == ("miss", text)
    wait_stored(rds, "pii", 3)
    other = text.replace("jim@example.org", "kim@example.com")
    assert _chat_stream(proxy, "pii", other) == ("hit", other)
    assert upstream_calls(echo_upstream, "stream this answer to <EMAIL_ADDRESS_1> twice") == 1


def test_responses_and_messages_streams_hit_in_their_format(proxy, echo_upstream, rds):
    text = "responses and messages stream"
    for expected in ("miss", "hit"):
        with oai(proxy, "beta").responses.with_streaming_response.create(
            model="echo", input=text, stream=True, temperature=0, max_output_tokens=64
        ) as response:
            assert response.headers["x-kubegate-cache"] == expected
            events = list(response.parse())
        kinds = [e.type for e in events]
        assert kinds[-1] == "response.completed"
        assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == text
        if expected == "miss":
            wait_stored(rds, "beta", 3)
    for expected in ("miss", "hit"):
        with claude(proxy, "beta").messages.with_streaming_response.create(
            model="echo",
            max_tokens=64,
            stream=True,
            messages=[{"role": "user", "content": text}],
            extra_body={"temperature": 0},  # this SDK version has no temperature parameter
        ) as response:
            assert response.headers["x-kubegate-cache"] == expected
            events = list(response.parse())
        assert events[-1].type == "message_stop"
        assert "".join(e.delta.text for e in events if e.type == "content_block_delta") == text
        if expected == "miss":
            wait_stored(rds, "beta", 4)
    assert upstream_calls(echo_upstream, text) == 2


def test_embeddings_are_cached_without_temperature(proxy, echo_upstream, rds):
    text = "embed me once"
    client = oai(proxy, "alpha")
    first = client.embeddings.with_raw_response.create(model="echo", input=text)
    assert first.headers["x-kubegate-cache"] == "miss"
    wait_stored(rds, "alpha", 3)
    second = client.embeddings.with_raw_response.create(model="echo", input=text)
    assert second.headers["x-kubegate-cache"] == "hit"
    assert second.parse().data[0].embedding == first.parse().data[0].embedding
    assert upstream_calls(echo_upstream, text) == 1


def test_hit_needs_the_tenant_key(proxy):
    # A hit is served only after the front door authenticated the key, like any other answer.
    r = httpx.post(
        proxy.base_url + "/v1/embeddings",
        json={"model": "echo", "input": "embed me once"},
        headers={"authorization": "Bearer sk-wrong"},
        timeout=10,
    )
    assert r.status_code == 401 and "x-kubegate-cache" not in r.headers


def test_report_shows_hits_and_savings_from_the_audit_stream(proxy, rds):
    from datetime import UTC, datetime, timedelta

    from gateway_operator.report.build import build_report
    from gateway_operator.report.render import to_html

    records = audit_records(rds, STREAM)
    now = datetime.now(UTC)
    report = build_report(records, now - timedelta(hours=1), now + timedelta(minutes=1), "OK")
    hits = [r for r in records if (r["decisions"].get("cache") or {}).get("result") == "hit"]
    by_tenant = {c.tenant: c for c in report.cache}
    assert by_tenant["alpha"].hits == sum(r["tenant"] == "alpha" for r in hits) >= 2
    assert report.total_saved == pytest.approx(sum(r["decisions"]["cache"]["saved_usd"] for r in hits))
    assert report.total_saved > 0 and "plain" not in by_tenant
    assert f"{report.total_saved:.6f} USD" in to_html(report)


def test_responses_and_messages_hits_restore_the_current_requests_pii(proxy, echo_upstream, rds):
    for n, (first, second) in enumerate(
        [("dan@example.org", "eve@example.com"), ("fay@example.org", "gus@example.com")]
    ):
        texts = [f"responses {n}: note for {who}" for who in (first, second)]
        got = []
        for text in texts:
            raw = oai(proxy, "pii").responses.with_raw_response.create(
                model="echo", input=text, temperature=0, max_output_tokens=64
            )
            got.append((raw.headers["x-kubegate-cache"], raw.parse().output_text))
            wait_stored(rds, "pii", 4 + 2 * n)
        assert got == [("miss", texts[0]), ("hit", texts[1])]
        texts = [f"messages {n}: note for {who}" for who in (first, second)]
        got = []
        for text in texts:
            raw = claude(proxy, "pii").messages.with_raw_response.create(
                model="echo", max_tokens=64, messages=[{"role": "user", "content": text}], extra_body={"temperature": 0}
            )
            got.append((raw.headers["x-kubegate-cache"], raw.parse().content[0].text))
            wait_stored(rds, "pii", 5 + 2 * n)
        assert got == [("miss", texts[0]), ("hit", texts[1])]
        assert second not in json.dumps([r["body"] for r in echo_upstream.received()])


def test_pii_refusal_of_a_cacheable_request_is_answered_and_audited(proxy, echo_upstream, rds):
    text = "blocked: write to hal@example.org"
    with pytest.raises(openai.BadRequestError) as err:
        chat(proxy, "guard", text)
    assert err.value.code == "pii_blocked"
    record = record_of(rds, err.value.response.headers["x-kubegate-request-id"])
    assert record["status"] == "refused" and record["decisions"]["refusal"] == "pii_blocked"
    assert upstream_calls(echo_upstream, "blocked: write to") == 0
    with pytest.raises(anthropic.BadRequestError) as aerr:
        claude(proxy, "guard").messages.create(
            model="echo", max_tokens=16, messages=[{"role": "user", "content": text}], extra_body={"temperature": 0}
        )
    assert aerr.value.body["error"]["type"] == "invalid_request_error"


def test_end_users_masked_alike_never_share_an_entry(proxy, echo_upstream, rds):
    """``user`` is masked before the key is built: two e-mail addresses both become ``<EMAIL_ADDRESS_1>``. The key
    still separates them (docs/cache.md), as it does Anthropic's ``metadata.user_id``, which is normalized away."""
    text = "cache per end user: the capital of Spain"
    alice = chat(proxy, "pii", text, user="alice.a@example.org")
    bob = chat(proxy, "pii", text, user="bob.b@example.org")
    assert [r.headers["x-kubegate-cache"] for r in (alice, bob)] == ["miss", "miss"]
    wait_stored(rds, "pii", 2)
    again = chat(proxy, "pii", text, user="alice.a@example.org")
    assert again.headers["x-kubegate-cache"] == "hit"
    assert again.headers["x-request-id"] == again.headers["x-kubegate-request-id"]
    messages = [{"role": "user", "content": text}]
    first = claude(proxy, "beta").messages.with_raw_response.create(
        model="echo", max_tokens=16, messages=messages, metadata={"user_id": "u-1"}, extra_body={"temperature": 0}
    )
    other = claude(proxy, "beta").messages.with_raw_response.create(
        model="echo", max_tokens=16, messages=messages, metadata={"user_id": "u-2"}, extra_body={"temperature": 0}
    )
    assert [r.headers["x-kubegate-cache"] for r in (first, other)] == ["miss", "miss"]
