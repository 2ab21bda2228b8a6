"""Floods do not evict (#23 item 5): refusals without a valid key are summarised, not recorded one by one.

The flood goes through the real front door (in process, ASGI) and the real audit writer into a real redis-server
with a small stream cap: every tenant record stays, and the summary records' counts add up to the flood.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time

import pytest
import redis
from gateway_operator.audit_cli import main as cli_main

import gateway_plugins.runtime as runtime_mod
from gateway_plugins.audit.unauthenticated import (
    SUMMARY_CALL_TYPE,
    RefusalSummary,
    source_class,
)
from gateway_plugins.contract.front_door import FrontDoor
from gateway_plugins.policy.schema import Policy
from gateway_plugins.policy.store import CompiledPolicy
from gateway_plugins.runtime import Runtime
from gateway_plugins.settings import Settings

TENANT_KEY = "sk-tenant-" + "a" * 32
AUDIT_KEY = secrets.token_bytes(32)


@pytest.mark.parametrize(
    ("client", "expected"),
    [
        (("127.0.0.1", 1), "loopback"),
        (("::1", 1), "loopback"),
        (("10.1.2.3", 1), "private"),
        (("192.168.0.9", 1), "private"),
        (("fd00::1", 1), "private"),
        (("fe80::1%eth0", 1), "private"),
        (("100.64.1.1", 1), "private"),
        (("::ffff:10.0.0.1", 1), "private"),
        (("8.8.8.8", 1), "public"),
        (("2001:4860::8888", 1), "public"),
        (("0.0.0.0", 1), "other"),
        (("203.0.113.9", 1), "other"),  # documentation range: reserved, not public
        (("224.0.0.1", 1), "other"),
        (None, "unknown"),
        (("not-an-ip", 1), "unknown"),
    ],
)
def test_source_class_is_bounded_and_never_the_address(client, expected):
    assert source_class(client) == expected


def test_one_sample_per_reason_and_source_per_window_and_a_summary_that_adds_up():
    now = [1000.0]
    out: list[dict] = []
    summary = RefusalSummary(out.append, window=10, clock=lambda: now[0])
    rec = {"request_id": "r", "decisions": {"refusal": "missing_api_key"}}
    kept = [summary.offer({**rec, "request_id": f"r{i}"}, "missing_api_key", "public") for i in range(5)]
    assert kept == [True, False, False, False, False]
    assert summary.offer({**rec, "request_id": "p"}, "missing_api_key", "private") is True
    assert summary.offer({**rec, "request_id": "x"}, "invalid_api_key", "nonsense") is True  # bounded: "other"
    assert [r["request_id"] for r in out] == ["r0", "p", "x"]
    assert out[0]["decisions"] == {"refusal": "missing_api_key", "source": "public", "sampled": True}
    now[0] = 1010.0  # the window ended: the next refusal first closes it
    assert summary.offer({**rec, "request_id": "r9"}, "missing_api_key", "public") is True
    closed = out[3]
    assert closed["call_type"] == SUMMARY_CALL_TYPE and closed["status"] == "summary"
    assert closed["tenant"] == "unauthenticated" and closed["http_status"] is None
    s = closed["decisions"]["summary"]
    assert s["total"] == 7 and s["window_start"] == 1000.0 and s["window_end"] == 1010.0
    assert s["counts"] == {"invalid_api_key": {"other": 1}, "missing_api_key": {"private": 1, "public": 5}}
    assert s["samples"] == {"invalid_api_key": {"other": "x"}, "missing_api_key": {"private": "p", "public": "r0"}}
    assert out[4]["request_id"] == "r9"
    assert summary.flush()["decisions"]["summary"]["total"] == 1
    assert summary.flush() is None  # nothing counted: no empty summary


def _policy() -> CompiledPolicy:
    doc = {
        "gateway": "main",
        "tenants": [
            {"id": "acme", "keys": [{"sha256": hashlib.sha256(TENANT_KEY.encode()).hexdigest()}]},
        ],
    }
    return CompiledPolicy.compile(Policy.model_validate(doc))


async def _call(app, path: str, headers: list[tuple[bytes, bytes]], client, method: str = "GET") -> tuple[int, dict]:
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": headers,
        "client": client,
    }
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = sent[0]
    return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}


async def _no_app(scope, receive, send):  # nothing anonymous may ever reach LiteLLM
    raise AssertionError(f"reached the app: {scope['path']}")


async def test_a_100k_anonymous_flood_evicts_no_tenant_record(redis_server, tmp_path):
    client = redis.Redis.from_url(redis_server.url)
    stream = f"kubegate:flood:{secrets.token_hex(4)}:audit"
    cap = 500  # small: 100k records one per refusal would have evicted every tenant record 200 times over
    settings = Settings(
        redis_url=redis_server.url,
        audit_key=base64.b64encode(AUDIT_KEY).decode(),
        audit_stream=stream,
        audit_spool_dir=str(tmp_path / "spool"),
        audit_stream_maxlen=cap,
        audit_unauthenticated_window=1.0,
    )
    rt = Runtime(settings)
    rt.store.current = _policy()
    await rt.audit.start()
    saved = runtime_mod._runtime
    runtime_mod._runtime = rt
    door = FrontDoor(_no_app)
    auth = [(b"authorization", b"Bearer " + TENANT_KEY.encode())]
    kinds = [
        ("/v1/models", [], "missing_api_key"),
        ("/v1/models", [(b"authorization", b"Bearer sk-wrong-0123456789abcdef")], "invalid_api_key"),
        (
            "/v1/models",
            [(b"authorization", b"Bearer sk-one"), (b"x-api-key", b"sk-two")],
            "conflicting_api_keys",
        ),
        ("/key/generate", [], "missing_api_key"),  # a closed route without a key
        ("/key/generate", [(b"x-api-key", b"sk-wrong-key")], "invalid_api_key"),
    ]
    peers = [("127.0.0.1", 5000), ("10.0.0.7", 5000), ("192.0.2.9", 5000), ("8.8.4.4", 5000), None]
    flood, tenant_ids = 100_000, []
    expected: dict[str, int] = {}
    started = time.perf_counter()
    try:
        for i in range(flood):
            path, headers, reason = kinds[i % len(kinds)]
            status, _ = await _call(door, path, headers, peers[(i // 7) % len(peers)])
            assert status == 401
            expected[reason] = expected.get(reason, 0) + 1
            if i % 2000 == 0:  # tenants keep working through the flood: 50 records of their own
                status, h = await _call(door, "/v1/models", auth, ("10.0.0.2", 1))
                assert status == 200
                tenant_ids.append(h["x-kubegate-request-id"])
        elapsed = time.perf_counter() - started
    finally:
        runtime_mod._runtime = saved
        await rt.audit.close(timeout=30)
        if rt.redis is not None:
            await rt.redis.aclose()
    assert not rt.audit.pending() and rt.audit.dropped == 0
    records = [json.loads(fields[b"r"]) for _, fields in client.xrange(stream)]
    print(f"flood: {flood} anonymous requests in {elapsed:.1f}s; stream holds {len(records)} records (cap {cap})")
    # At most one sample per (reason, source class) and one summary per window: far under the cap.
    assert len(records) <= cap
    # Every tenant record is in place.
    assert sorted(r["request_id"] for r in records if r["tenant"] == "acme") == sorted(tenant_ids)
    assert len(tenant_ids) == 50
    # The summaries add up to the flood, per reason; samples are ordinary refusal records with the source class.
    summaries = [r["decisions"]["summary"] for r in records if r["call_type"] == SUMMARY_CALL_TYPE]
    assert sum(s["total"] for s in summaries) == flood
    got: dict[str, int] = {}
    for s in summaries:
        for reason, by_source in s["counts"].items():
            assert set(by_source) <= {"loopback", "private", "public", "other", "unknown"}
            got[reason] = got.get(reason, 0) + sum(by_source.values())
    assert got == expected
    samples = [r for r in records if r["tenant"] == "unauthenticated" and r["call_type"] != SUMMARY_CALL_TYPE]
    sampled_ids = {rid for s in summaries for by in s["samples"].values() for rid in by.values()}
    assert {r["request_id"] for r in samples} == sampled_ids
    assert all(r["decisions"]["sampled"] is True and r["status"] == "refused" for r in samples)
    windows = len(summaries)
    assert len(samples) <= windows * 3 * 5  # at most one per (reason, source class) per window
    raw = b"".join(f[b"r"] for _, f in client.xrange(stream))
    assert b"sk-wrong" not in raw and b"192.0.2.9" not in raw and b"8.8.4.4" not in raw
    # The chain the summaries are in verifies as any other.
    key_file = tmp_path / "audit.key"
    key_file.write_text(base64.b64encode(AUDIT_KEY).decode())
    args = ["verify", "--redis-url", redis_server.url, "--stream", stream, "--key-file", str(key_file)]
    assert cli_main(args) == 0


def test_report_counts_summarised_refusals_once():
    from datetime import UTC, datetime

    from gateway_operator.report.build import build_report

    out: list[dict] = []
    summary = RefusalSummary(out.append, window=60, clock=lambda: 1_700_000_000.0)
    base = {"v": 1, "time": 1_700_000_000.0, "tenant": "unauthenticated", "status": "refused", "region": None}
    for i in range(10):
        summary.offer(
            {**base, "request_id": f"m{i}", "decisions": {"refusal": "missing_api_key"}}, "missing_api_key", "public"
        )
    for i in range(3):
        summary.offer(
            {**base, "request_id": f"i{i}", "decisions": {"refusal": "invalid_api_key"}}, "invalid_api_key", "private"
        )
    summary.flush()
    assert len(out) == 3  # two samples and the summary
    tenant = {
        **base,
        "tenant": "acme",
        "request_id": "t",
        "status": "refused",
        "decisions": {"refusal": "budget_exceeded"},
    }
    report = build_report([*out, tenant], datetime(2023, 1, 1, tzinfo=UTC), datetime(2024, 1, 1, tzinfo=UTC), "OK")
    assert report.refusals == {"missing_api_key": 10, "invalid_api_key": 3, "budget_exceeded": 1}
    assert report.statuses == {"refused": 14}
    assert report.refusals_by_tenant[("unauthenticated", "missing_api_key")] == 10
