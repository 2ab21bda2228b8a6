"""The fast path (``KUBEGATE_FAST_PATH``, ``gateway_plugins.fast_path``) against LiteLLM's own handler: the same
requests through a proxy with it on and one with it off give the same answer body (ids and timestamps aside), the
same status and kubegate headers, the same audit record and the same budget charge.

Each proxy has a Redis of its own, so budgets, rate limits and audit streams are compared side by side."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from gateway_plugins.policy.budget_state import read_budget_state
from gateway_plugins.policy.keys import GatewayKeys
from gateway_plugins.policy.periods import period_bounds, period_key
from tests.dataplane.contract_stack import GW, IN_PRICE, REGION, audit_records, budget, key, objects, route
from tests.harness.proxy import ProxyServer
from tests.harness.redis import RedisServer
from tests.harness.rendered import render_proxy

BROKEN = "broken"
SLOW = "slow"  # answers after 3 s: a client can leave before the first token
BUDGETS = {
    "budgeted-b": {"tenant": "budgeted", "limitUSD": "100", "period": "daily"},
    "broke-b": {"tenant": "broke", "limitUSD": "1", "period": "daily"},
}
EMAIL = "jane.roe@example.org"


def _objects(echo_base: str) -> list[dict]:
    failing = echo_base.replace("/v1", "/status/500/v1")
    objs = objects(
        echo_base,
        extra_tenants=("budgeted", "broke", "limited", "eu", "us"),
        extra_routes=(route(GW, BROKEN, failing), route(GW, SLOW, echo_base.replace("/v1", "/delay/3000/v1"))),
        budgets=BUDGETS,
    )
    specs = {
        "budgeted": {"allowedRegions": [REGION]},
        "limited": {"rateLimits": {"rpm": 1}},
        "eu": {"allowedRegions": [REGION]},
        "us": {"allowedRegions": ["us-east-1"]},
    }
    for obj in objs:
        if obj["kind"] == "Tenant" and obj["metadata"]["name"] in specs:
            obj["spec"].update(specs[obj["metadata"]["name"]])
    return objs


@pytest.fixture(scope="module")
def pair(echo_upstream) -> Iterator[dict[str, tuple[ProxyServer, RedisServer]]]:
    objs = _objects(echo_upstream.base_url)
    tenants = [o["metadata"]["name"] for o in objs if o["kind"] == "Tenant"]
    s = render_proxy(objs, keys={t: key(t) for t in tenants})
    started: dict[str, tuple[ProxyServer, RedisServer]] = {}
    try:
        for name, flag in (("fast", "1"), ("slow", "0")):
            rds = RedisServer().start()
            started[name] = (None, rds)  # type: ignore[assignment]
            proxy = ProxyServer(s.config, s.policy, redis_url=rds.url, env={**s.env, "KUBEGATE_FAST_PATH": flag})
            started[name] = (proxy.start(), rds)
            broke = budget(s.policy, "broke-b")
            spent_key = period_key(GatewayKeys("default", GW), broke, period_bounds(broke)[0])
            rds.client().hset(spent_key, "spent", 2_000_000)  # 2 USD of a 1 USD limit
        yield started
    finally:
        for proxy, rds in started.values():
            if proxy is not None:
                print(proxy.logs()[-4000:])
                proxy.stop()
            rds.stop()


def chat(model: str = "echo", text: str = "hello there", **extra: Any) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": 16, **extra}


def responses(model: str = "echo", text: str = "hello there", **extra: Any) -> dict:
    return {"model": model, "input": text, "max_output_tokens": 16, "store": False, **extra}


def completions(model: str = "echo", text: str = "hello there", **extra: Any) -> dict:
    return {"model": model, "prompt": text, "max_tokens": 16, **extra}


def embeddings(model: str = "echo", text: str | list[str] = "hello there", **extra: Any) -> dict:
    return {"model": model, "input": text, "embeddings": True, **extra}


def messages(model: str = "echo", text: str = "hello there", **extra: Any) -> dict:
    return {
        "model": model,
        "messages": [{"role": "user", "content": text}],
        "max_tokens": 16,
        "anthropic": True,
        **extra,
    }


VOLATILE = {"id", "item_id", "created", "created_at", "completed_at", "system_fingerprint"}


def _normal(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _normal(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_normal(v) for v in value]
    return value


def _body(resp: httpx.Response) -> Any:
    if resp.headers.get("content-type", "").startswith("text/event-stream"):
        # Every frame's event name (Anthropic's and Responses' streams name them) and data; ping comments aside.
        out: list = []
        for frame in resp.text.split("\n\n"):
            for line in frame.split("\n"):
                if line.startswith("event: "):
                    out.append(line)
                elif line.startswith("data: "):
                    data = line[6:]
                    out.append(data if data == "[DONE]" else _normal(json.loads(data)))
        return out
    return _normal(resp.json())


def _kubegate_headers(resp: httpx.Response) -> dict[str, str]:
    ids = ("x-kubegate-request-id", "x-request-id", "request-id")
    out = {
        k: v
        for k, v in resp.headers.items()
        if k not in ids and (k.startswith("x-kubegate-") or k in ("content-type", "retry-after", "cache-control"))
    }
    return out


def _same_headers(fast: dict[str, str], slow: dict[str, str]) -> bool:
    """Equal, but for a budget's ``retry-after`` (seconds to the period's end: the two requests are a moment
    apart)."""
    fast, slow = dict(fast), dict(slow)
    a, b = fast.pop("retry-after", ""), slow.pop("retry-after", "")
    numbers = a.isdigit() and b.isdigit()
    return (abs(int(a) - int(b)) <= 2 if numbers else a == b) and fast == slow


def _send(proxy: ProxyServer, tenant: str, body: dict) -> httpx.Response:
    body = dict(body)
    if body.pop("anthropic", False):
        # As Anthropic's clients call it: x-api-key, anthropic-version.
        path, auth = "/v1/messages", {"x-api-key": key(tenant), "anthropic-version": "2023-06-01"}
    elif body.pop("embeddings", False):
        path, auth = "/v1/embeddings", {"authorization": f"Bearer {key(tenant)}"}
    else:
        path = "/v1/responses" if "input" in body else "/v1/completions" if "prompt" in body else "/v1/chat/completions"
        auth = {"authorization": f"Bearer {key(tenant)}"}
    return httpx.post(proxy.base_url + path, json=body, headers=auth, timeout=60)


RECORD_FIELDS = (
    "status",
    "http_status",
    "decisions",
    "prompt_tokens",
    "completion_tokens",
    "cost_usd",
    "model",
    "served_model",
    "region",
    "deployment_id",
    "call_type",
    "tenant",
    "error_code",
)


def _record(rds: RedisServer, request_id: str) -> dict:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        mine = [r for r in audit_records(rds.client()) if r["request_id"] == request_id]
        if mine:
            time.sleep(0.3)  # a second record, if any, would be written by now
            mine = [r for r in audit_records(rds.client()) if r["request_id"] == request_id]
            assert len(mine) == 1, mine
            return {k: v for k, v in mine[0].items() if k in RECORD_FIELDS}
        time.sleep(0.1)
    raise AssertionError(f"no audit record for {request_id}")


def _spent(proxy: ProxyServer, rds: RedisServer, name: str) -> tuple[float, float]:
    async def read():
        r = aioredis.from_url(rds.url)
        try:
            state = await read_budget_state(r, GatewayKeys("default", GW), budget(proxy.policy, name))
            return state.spent_usd, state.reserved_usd
        finally:
            await r.aclose()

    return asyncio.run(read())


CASES = [
    ("chat json", "budgeted", chat()),
    ("chat stream", "budgeted", chat(stream=True)),
    ("chat stream with usage", "budgeted", chat(stream=True, stream_options={"include_usage": True})),
    ("plain tenant", "plain", chat("other")),
    ("pii masked", "pii", chat(text=f"write to {EMAIL} please")),
    ("pii restored", "restore", chat(text=f"write to {EMAIL} please")),
    ("pii restored, streamed", "restore", chat(text=f"write to {EMAIL} please", stream=True)),
    ("budget exhausted", "broke", chat()),
    ("upstream failure", "budgeted", chat(BROKEN)),
    ("upstream failure, no residency", "plain", chat(BROKEN)),
    ("upstream failure, streamed", "plain", chat(BROKEN, stream=True)),
    ("residency in region", "eu", chat()),
    ("residency unavailable", "us", chat()),
    ("model not allowed", "narrow", chat("other")),
    ("responses json", "budgeted", responses()),
    ("responses, plain tenant", "plain", responses("other")),
    ("responses pii restored", "restore", responses(text=f"write to {EMAIL} please")),
    ("responses pii masked", "pii", responses(text=f"write to {EMAIL} please")),
    ("responses budget exhausted", "broke", responses()),
    ("responses upstream failure", "budgeted", responses(BROKEN)),
    ("responses upstream failure, no residency", "plain", responses(BROKEN)),
    ("responses residency unavailable", "us", responses()),
    ("responses stream", "budgeted", responses(stream=True)),
    ("responses stream, plain tenant", "plain", responses("other", stream=True)),
    ("responses stream pii restored", "restore", responses(text=f"write to {EMAIL} please", stream=True)),
    ("responses stream budget exhausted", "broke", responses(stream=True)),
    ("responses stream upstream failure", "budgeted", responses(BROKEN, stream=True)),
    ("responses stream upstream failure, no residency", "plain", responses(BROKEN, stream=True)),
    ("completions json", "budgeted", completions()),
    ("completions, plain tenant", "plain", completions("other")),
    ("completions pii restored", "restore", completions(text=f"write to {EMAIL} please")),
    ("completions budget exhausted", "broke", completions()),
    ("completions upstream failure", "budgeted", completions(BROKEN)),
    ("completions upstream failure, no residency", "plain", completions(BROKEN)),
    ("completions residency unavailable", "us", completions()),
    ("completions stream", "budgeted", completions(stream=True)),
    ("completions stream, plain tenant", "plain", completions("other", stream=True)),
    ("completions stream budget exhausted", "broke", completions(stream=True)),
    ("completions stream upstream failure", "budgeted", completions(BROKEN, stream=True)),
    ("completions stream residency unavailable", "us", completions(stream=True)),
    ("embeddings", "budgeted", embeddings()),
    ("embeddings, several inputs", "plain", embeddings("other", ["hello", "there"])),
    ("embeddings pii masked", "pii", embeddings(text=f"write to {EMAIL} please")),
    ("embeddings budget exhausted", "broke", embeddings()),
    ("embeddings upstream failure", "budgeted", embeddings(BROKEN)),
    ("embeddings upstream failure, no residency", "plain", embeddings(BROKEN)),
    ("embeddings residency unavailable", "us", embeddings()),
    ("embeddings model not allowed", "narrow", embeddings("other")),
    ("messages json", "budgeted", messages()),
    ("messages, plain tenant", "plain", messages("other")),
    ("messages pii masked", "pii", messages(text=f"write to {EMAIL} please")),
    ("messages pii restored", "restore", messages(text=f"write to {EMAIL} please")),
    ("messages budget exhausted", "broke", messages()),
    ("messages upstream failure", "budgeted", messages(BROKEN)),
    ("messages upstream failure, no residency", "plain", messages(BROKEN)),
    ("messages residency unavailable", "us", messages()),
    ("messages model not allowed", "narrow", messages("other")),
    ("messages stream", "budgeted", messages(stream=True)),
    ("messages stream, plain tenant", "plain", messages("other", stream=True)),
    ("messages stream pii restored", "restore", messages(text=f"write to {EMAIL} please", stream=True)),
    ("messages stream budget exhausted", "broke", messages(stream=True)),
    ("messages stream upstream failure", "budgeted", messages(BROKEN, stream=True)),
    ("messages stream upstream failure, no residency", "plain", messages(BROKEN, stream=True)),
]


# LiteLLM's completions handler answers kubegate's budget refusal without the budget headers and retry-after that
# docs/reference.md documents (its other handlers keep them); the fast path answers with them, as on chat.
HEADERS_ADDED = {
    "completions budget exhausted": ("x-kubegate-budget-state", "retry-after"),
    "completions stream budget exhausted": ("x-kubegate-budget-state", "retry-after"),
}


@pytest.mark.parametrize(("name", "tenant", "body"), CASES, ids=[c[0] for c in CASES])
def test_same_answer_audit_and_charge(pair, name, tenant, body):
    (fast, fast_rds), (slow, slow_rds) = pair["fast"], pair["slow"]
    got = {}
    for label, proxy, rds in (("fast", fast, fast_rds), ("slow", slow, slow_rds)):
        resp = _send(proxy, tenant, body)
        rid = resp.headers["x-kubegate-request-id"]
        assert resp.headers["x-request-id"] == rid
        got[label] = (resp.status_code, _kubegate_headers(resp), _body(resp), _record(rds, rid))
    assert got["fast"][0] == got["slow"][0], got
    assert got["fast"][2], got  # an answer to compare: a stream's frames parsed, not an empty list
    if name in HEADERS_ADDED:
        fast_headers, slow_headers = got["fast"][1], got["slow"][1]
        assert slow_headers.items() <= fast_headers.items(), got
        assert all(h in fast_headers for h in HEADERS_ADDED[name]), got
    else:
        assert _same_headers(got["fast"][1], got["slow"][1]), got
    assert got["fast"][2] == got["slow"][2], got
    assert got["fast"][3] == got["slow"][3], got


def _prompt_tokens(text: str) -> int:
    """LiteLLM's estimate of a completions prompt's tokens (it counts the prompt as a user message)."""
    import litellm

    return litellm.token_counter(model="echo-echo", messages=[{"role": "user", "content": text}])


def test_completions_stream_charges_the_prompt_the_upstream_got(pair):
    """The one intended difference on a completions stream: the prompt tokens (the upstream's stream reports none).
    LiteLLM's completions handler estimates them from the prompt as the client sent it, before PII masking; the fast
    path, like every other route, from the prompt the upstream received (the masked one), which is what was sent."""
    prompt = f"write to {EMAIL} please"
    got = {}
    for label in ("fast", "slow"):
        proxy, rds = pair[label]
        resp = _send(proxy, "pii", completions(text=prompt, stream=True))
        frames = _body(resp)
        got[label] = (resp.status_code, _kubegate_headers(resp), frames, _record(rds, resp.headers["x-request-id"]))
    assert got["fast"][:3] == got["slow"][:3], got
    # The echo upstream answers with the prompt it received: masked, and not restored for this tenant.
    sent = "".join(f["choices"][0]["text"] for f in got["fast"][2] if isinstance(f, dict) and f.get("choices"))
    assert EMAIL not in sent and "<EMAIL_ADDRESS" in sent, sent
    fast, slow = got["fast"][3], got["slow"][3]
    assert fast["prompt_tokens"] == _prompt_tokens(sent) != _prompt_tokens(prompt) == slow["prompt_tokens"], got
    extra = (fast["prompt_tokens"] - slow["prompt_tokens"]) * IN_PRICE
    assert fast["cost_usd"] - slow["cost_usd"] == pytest.approx(float(extra), abs=1e-12)
    same = {k: v for k, v in fast.items() if k not in ("prompt_tokens", "cost_usd")}
    assert same == {k: v for k, v in slow.items() if k not in ("prompt_tokens", "cost_usd")}


def test_rate_limit_refusal_is_the_same(pair):
    answers = {}
    for label in ("fast", "slow"):
        proxy, rds = pair[label]
        first, second = _send(proxy, "limited", chat()), _send(proxy, "limited", chat())
        assert first.status_code == 200
        answers[label] = (
            second.status_code,
            _kubegate_headers(second),
            _body(second),
            _record(rds, second.headers["x-kubegate-request-id"]),
        )
    assert answers["fast"][0] == 429
    assert _same_headers(answers["fast"][1], answers["slow"][1]), answers
    assert (answers["fast"][0], *answers["fast"][2:]) == (answers["slow"][0], *answers["slow"][2:])


LEAVING = [
    ("chat", chat(SLOW, stream=True)),
    ("responses", responses(SLOW, stream=True)),
    ("messages", messages(SLOW, stream=True)),
]


def _leave_once_upstream_has_it(proxy: ProxyServer, path: str, body: dict, auth: dict, echo_upstream) -> None:
    """Send the request and hang up as soon as the (3 s late) upstream has received it: before the first token,
    whatever the machine's load (a client read timeout would race the proxy's own work instead)."""
    before = len(echo_upstream.received())
    payload = json.dumps(body).encode()
    host, port = proxy.base_url.split("//", 1)[1].split(":")
    head = "".join(f"{k}: {v}\r\n" for k, v in auth.items())
    request = (
        f"POST {path} HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\n{head}"
        f"content-length: {len(payload)}\r\n\r\n"
    ).encode() + payload
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(request)
        deadline = time.monotonic() + 30
        while len(echo_upstream.received()) <= before:
            assert time.monotonic() < deadline, "the request never reached the upstream"
            time.sleep(0.02)


@pytest.mark.parametrize(("name", "body"), LEAVING, ids=[c[0] for c in LEAVING])
def test_leaving_before_the_first_token_is_the_same(pair, echo_upstream, name, body):
    records = {}
    for label in ("fast", "slow"):
        proxy, rds = pair[label]
        seen = {r["request_id"] for r in audit_records(rds.client())}
        sent = dict(body)
        path, auth = "/v1/chat/completions", {"authorization": f"Bearer {key('budgeted')}"}
        if sent.pop("anthropic", False):
            path = "/v1/messages"
        elif "input" in sent:
            path = "/v1/responses"
        _leave_once_upstream_has_it(proxy, path, sent, auth, echo_upstream)

        def slow_records(rds: RedisServer = rds, seen: set = seen) -> list[dict]:
            return [r for r in audit_records(rds.client()) if r.get("model") == SLOW and r["request_id"] not in seen]

        deadline = time.monotonic() + 30
        mine: list[dict] = []
        while not mine and time.monotonic() < deadline:
            time.sleep(0.2)
            mine = slow_records()
        time.sleep(1)
        mine = slow_records()
        assert len(mine) == 1, mine
        records[label] = {k: v for k, v in mine[0].items() if k in RECORD_FIELDS}
    # LiteLLM cancelled the upstream call; what it then reports depends on a race (nothing, or a bill of the chunks
    # it had read): kubegate's record and charge do not (gateway_plugins.client_left).
    fast = records["fast"]
    assert (fast["status"], fast["http_status"], fast["decisions"].get("client")) == ("incomplete", 499, "disconnected")
    assert "refusal" not in fast["decisions"], fast
    assert fast["completion_tokens"] == 0 and fast["prompt_tokens"] > 0
    assert fast["cost_usd"] == pytest.approx(fast["prompt_tokens"] * float(IN_PRICE))
    assert records["fast"] == records["slow"]


def test_messages_stream_in_anthropics_shape(pair):
    """The fast path's Messages stream: Anthropic's events, the client's model name, PII restored."""
    resp = _send(pair["fast"][0], "restore", messages(text=f"write to {EMAIL} please", stream=True))
    assert resp.status_code == 200
    frames = _body(resp)
    events = [f[7:] for f in frames if isinstance(f, str) and f.startswith("event: ")]
    assert events[0] == "message_start" and events[-1] == "message_stop", events
    assert "content_block_delta" in events
    start = next(f for f in frames if isinstance(f, dict) and f.get("type") == "message_start")
    assert start["message"]["model"] == "echo"
    assert EMAIL in resp.text


def test_same_budget_charge(pair):
    """Runs after the cases above: the budgeted tenant's charges add up to the same amount on both proxies."""
    fast = _spent(*pair["fast"], "budgeted-b")
    slow = _spent(*pair["slow"], "budgeted-b")
    assert fast[0] > 0 and fast[1] == 0
    assert fast == pytest.approx(slow, abs=1e-9)


def test_the_fast_path_served_only_where_switched_on(pair):
    def served(proxy: ProxyServer) -> float:
        lines = [ln for ln in proxy.metrics().splitlines() if ln.startswith("kubegate_fast_path_requests_total{")]
        return sum(float(ln.rsplit(" ", 1)[1]) for ln in lines)

    # Three cases never reach it (a model not allowed is refused before the fast path).
    assert served(pair["fast"][0]) >= len(CASES) - 3
    endpoints = {
        ln.split('endpoint="')[1].split('"')[0]
        for ln in pair["fast"][0].metrics().splitlines()
        if ln.startswith("kubegate_fast_path_requests_total{")
    }
    assert endpoints >= {"chat_completions", "completions", "responses", "anthropic_messages", "embeddings"}
    assert served(pair["slow"][0]) == 0
