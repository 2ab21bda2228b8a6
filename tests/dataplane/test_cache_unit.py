"""The response cache's pure parts: what may be cached, how an entry's key is built, how an entry's body is kept
free of PII originals and restored with another request's, and how a stream is cut back into events."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway_plugins.cache import entry as entries
from gateway_plugins.cache import requested_bypass
from gateway_plugins.cache.rules import entry_key, shape_digest, skip_reason
from gateway_plugins.policy.keys import GatewayKeys
from gateway_plugins.policy.schema import CachePolicy, Policy

ON = CachePolicy()
KEYS = GatewayKeys("team-a", "main")
BODY = {"model": "echo", "messages": [{"role": "user", "content": "hi <EMAIL_ADDRESS_1>"}], "temperature": 0}


def _policy(**tenant) -> Policy:
    return Policy.model_validate(
        {
            "gateway": "main",
            "tenants": [{"id": "t", "allowed_models": ["*"], **tenant}],
            "models": [{"name": "echo"}, {"name": "other"}],
            "deployments": [
                {"id": "e1", "model": "echo", "region": "eu"},
                {"id": "o1", "model": "other", "region": "us"},
            ],
        }
    )


@pytest.mark.parametrize(
    ("endpoint", "body", "policy", "reason"),
    [
        ("chat_completions", BODY, ON, None),
        ("chat_completions", {**BODY, "temperature": 0.2}, ON, "temperature"),
        ("chat_completions", {k: v for k, v in BODY.items() if k != "temperature"}, ON, "temperature"),
        ("chat_completions", {**BODY, "temperature": 0.2}, CachePolicy(allow_nonzero_temperature=True), None),
        ("embeddings", {"model": "echo", "input": "x"}, ON, None),
        ("chat_completions", {**BODY, "tools": [{"type": "function"}]}, ON, "tools"),
        ("chat_completions", {**BODY, "tools": [{"type": "function"}]}, CachePolicy(allow_tools=True), None),
        ("responses", {"model": "echo", "input": "x", "temperature": 0, "previous_response_id": "r1"}, ON, "stateful"),
        ("chat_completions", {**BODY, "user": "u1"}, ON, None),
        ("chat_completions", {**BODY, "user": "u1"}, CachePolicy(skip_user_scoped=True), "user"),
        ("anthropic_messages", {**BODY, "metadata": {"user_id": "u"}}, CachePolicy(skip_user_scoped=True), "user"),
        ("models", {}, ON, "endpoint"),
    ],
)
def test_skip_reason(endpoint, body, policy, reason):
    from gateway_plugins.contract.validate import _end_user

    assert skip_reason(policy, endpoint, body, _end_user(body)) == reason


def test_key_separates_tenants_gateways_endpoints_and_bodies():
    shape = shape_digest(_policy(), _policy().tenants[0], "echo")
    base = entry_key(KEYS, "t", shape, "chat_completions", BODY)
    assert base.startswith("kubegate:{team-a:main:cache:0}:t:")
    others = {
        entry_key(KEYS, "u", shape, "chat_completions", BODY),
        entry_key(GatewayKeys("team-b", "main"), "t", shape, "chat_completions", BODY),
        entry_key(GatewayKeys("team-a", "other"), "t", shape, "chat_completions", BODY),
        entry_key(KEYS, "t", shape, "completions", BODY),
        entry_key(KEYS, "t", shape, "chat_completions", {**BODY, "stream": True}),
        entry_key(KEYS, "t", "0" * 64, "chat_completions", BODY),
        # The end user as the client named it: two addresses masked to the same placeholder stay apart.
        entry_key(KEYS, "t", shape, "chat_completions", BODY, "alice.a@example.org"),
        entry_key(KEYS, "t", shape, "chat_completions", BODY, "bob.b@example.org"),
    }
    assert base not in others and len(others) == 8
    # Field order is not part of the request's meaning.
    assert entry_key(KEYS, "t", shape, "chat_completions", dict(reversed(list(BODY.items())))) == base


def test_shape_follows_the_policy_that_shapes_answers_only():
    policy = _policy()
    shape = shape_digest(policy, policy.tenants[0], "echo")
    # Keys rotate and limits change without changing answers: same entries.
    rotated = _policy(keys=[{"sha256": "a" * 64}], rate_limits={"rpm": 5}, cache={"ttl_seconds": 9})
    assert shape_digest(rotated, rotated.tenants[0], "echo") == shape
    # PII policy, residency and the model's routing do change them.
    for changed in (_policy(pii={}), _policy(allowed_regions=["eu"])):
        assert shape_digest(changed, changed.tenants[0], "echo") != shape
    assert shape_digest(policy, policy.tenants[0], "other") != shape


def test_key_holds_no_request_text():
    key = entry_key(KEYS, "t", "s" * 64, "chat_completions", {**BODY, "messages": [{"content": "secret words"}]})
    assert "secret" not in key and len(key.rsplit(":", 1)[1]) == 64


ORIGINALS = {"<EMAIL_ADDRESS_1>": "ann@example.org", "<PERSON_1>": 'Zoë "Z" Ñ'}


def test_remask_removes_every_form_of_an_original_and_restore_puts_the_new_one():
    body = json.dumps({"a": "to ann@example.org", "b": 'Zoë "Z" Ñ'}, ensure_ascii=False).encode()
    body += b" " + json.dumps({"c": 'Zoë "Z" Ñ'}).encode()  # the ASCII-escaped form too
    masked = entries.remask(body, ORIGINALS)
    assert masked is not None
    assert b"ann@" not in masked and b"Zo" not in masked
    assert masked.count(b"<PERSON_1>") == 2
    restored = entries.restore(masked, {"<EMAIL_ADDRESS_1>": "bob@example.net", "<PERSON_1>": "Max"})
    first, _, second = restored.partition(b"} ")
    assert json.loads(first + b"}") == {"a": "to bob@example.net", "b": "Max"}
    assert json.loads(second) == {"c": "Max"}


@given(st.text(min_size=1, max_size=30).filter(lambda s: "<" not in s), st.text(max_size=60))
def test_restored_values_stay_valid_json(value, around):
    stored = json.dumps({"text": f"{around}<EMAIL_ADDRESS_1>{around}"}).encode()
    restored = entries.restore(stored, {"<EMAIL_ADDRESS_1>": value})
    assert json.loads(restored) == {"text": f"{around}{value}{around}"}


def test_entry_round_trip_and_unknown_layouts():
    e = entries.Entry("text/event-stream", 0.25, "echo", b"data: {}\n\ndata: [DONE]\n\n")
    assert entries.decode(entries.encode(e)) == e and e.streamed
    assert entries.decode(b"no header") is None
    assert entries.decode(b'{"v": 99}\nbody') is None


def test_sse_events_cut_a_stream_back_into_events():
    body = b"event: a\ndata: {}\n\ndata: {}\n\ndata: [DONE]\n\n"
    assert entries.sse_events(body) == [b"event: a\ndata: {}\n\n", b"data: {}\n\n", b"data: [DONE]\n\n"]
    assert b"".join(entries.sse_events(body + b"tail")) == body + b"tail"


def test_bypass_header():
    assert requested_bypass([(b"x-kubegate-cache", b" Bypass ")])
    assert not requested_bypass([(b"x-kubegate-cache", b"please")])
    assert not requested_bypass([])


def test_store_script_keeps_the_gateway_within_its_cap(redis_server):
    """Against a real Redis: entries count against the cap until their TTL ends, then free their bytes."""
    import asyncio
    import time

    import redis.asyncio as aioredis

    from gateway_plugins.cache.store import STORE_SCRIPT, StoreResult

    keys = GatewayKeys("cap-test", "gw")

    async def run() -> None:
        r = aioredis.from_url(redis_server.url)
        try:
            await r.delete(
                keys.cache_index(0), keys.cache_bytes(0), keys.cache_entry("t", "a"), keys.cache_entry("t", "b")
            )

            async def store(name: str, size: int, ttl: int, cap: int) -> StoreResult:
                args = [b"x" * size, ttl, size, cap]
                return StoreResult(await STORE_SCRIPT(r, [keys.cache_entry("t", name), *_index(keys)], args))

            assert await store("a", 600, 1, 1000) is StoreResult.STORED
            assert await store("a", 600, 1, 1000) is StoreResult.EXISTS
            assert await store("b", 600, 60, 1000) is StoreResult.FULL  # 600 + 600 > 1000
            assert int(await r.get(keys.cache_bytes(0))) == 600
            deadline = time.monotonic() + 30
            while await r.exists(keys.cache_entry("t", "a")) and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
            result = await store("b", 600, 60, 1000)
            while result is StoreResult.FULL and time.monotonic() < deadline:
                await asyncio.sleep(0.2)  # the index scores by whole seconds: wait for its second to pass
                result = await store("b", 600, 60, 1000)
            assert result is StoreResult.STORED
            assert int(await r.get(keys.cache_bytes(0))) == 600
            assert await r.zcard(keys.cache_index(0)) == 1
        finally:
            await r.aclose()

    asyncio.run(run())


def _index(keys: GatewayKeys) -> list[str]:
    return [keys.cache_index(0), keys.cache_bytes(0)]
