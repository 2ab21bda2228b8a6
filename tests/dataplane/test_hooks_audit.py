"""Each request yields exactly one audit record (success, refusal, upstream failure) via the real proxy."""

from __future__ import annotations

import time

import openai
import pytest

from gateway_plugins.policy.keys import GatewayKeys
from tests.dataplane.test_hooks_e2e import KEY_A, _setup


def _wait_len(client, stream: str, want: int, timeout: float = 15.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.xlen(stream) >= want:
            break
        time.sleep(0.1)
    time.sleep(1.0)  # let any duplicate record land before counting
    return client.xlen(stream)


def test_one_audit_record_per_request(make_proxy, echo_upstream, redis_server, openai_client):
    rendered = _setup(echo_upstream)
    client = redis_server.client()
    client.flushall()
    proxy = make_proxy(rendered.config, rendered.policy, redis_url=redis_server.url, env=rendered.env)
    api = openai_client(proxy, KEY_A)
    stream = GatewayKeys("default", "main").audit_stream

    api.chat.completions.create(model="echo-model", messages=[{"role": "user", "content": "one"}])
    assert _wait_len(client, stream, 1) == 1

    with pytest.raises(openai.NotFoundError):
        api.chat.completions.create(model="other-model", messages=[{"role": "user", "content": "two"}])
    assert _wait_len(client, stream, 2) == 2

    echo_upstream.fail_next(500, count=10)
    try:
        with pytest.raises(openai.APIStatusError):
            api.chat.completions.create(model="echo-model", messages=[{"role": "user", "content": "three"}])
    finally:
        echo_upstream.fail_next(500, count=0)
    assert _wait_len(client, stream, 3) == 3
    raw = b" ".join(v for _, fields in client.xrange(stream) for v in fields.values())
    assert b"one" not in raw.split() and KEY_A.encode() not in raw


def test_auth_refusals_are_audited_without_the_key(make_proxy, echo_upstream, redis_server, openai_client):
    import json

    rendered = _setup(echo_upstream)
    client = redis_server.client()
    client.flushall()
    proxy = make_proxy(rendered.config, rendered.policy, redis_url=redis_server.url, env=rendered.env)
    stream = GatewayKeys("default", "main").audit_stream
    wrong = "sk-wrong-key-never-in-audit-0123456789"
    with pytest.raises(openai.AuthenticationError):
        openai_client(proxy, wrong).chat.completions.create(
            model="echo-model", messages=[{"role": "user", "content": "x"}]
        )
    assert _wait_len(client, stream, 1) >= 1
    # The window's first refusal without a valid key is sampled (later ones only counted in its summary record).
    (_, fields), *summary = client.xrange(stream)
    raw = b" ".join(v for _, f in client.xrange(stream) for v in f.values())
    assert wrong.encode() not in raw
    record = json.loads(next(iter(fields.values())))
    assert record["tenant"] == "unauthenticated"
    assert record["status"] == "refused" and record["http_status"] == 401
    assert record["decisions"]["sampled"] is True and record["decisions"]["source"] == "loopback"
    assert all(json.loads(f[b"r"])["status"] == "summary" for _, f in summary)
