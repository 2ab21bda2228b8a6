"""The worst case of every billed endpoint is reserved: 64 clients on two replicas never overspend a budget
by more than one request's cost, for chat, list-prompt completions, embeddings, Responses and Anthropic Messages alike.

Input is priced, so the prompt side matters (list prompts and embedding inputs were once not counted at
all); the reservation is the body's byte size (a bound on tokens) plus ``max_tokens`` per choice. Anthropic
Messages ask the most their route admits: 64000 tokens, claude-sonnet-4-5's output limit in LiteLLM's model map.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import anthropic
import openai
import pytest
import redis.asyncio as aioredis

from gateway_plugins.policy.budget_state import read_budget_state
from gateway_plugins.policy.keys import GatewayKeys
from tests.dataplane.contract_stack import GW, IN_PRICE, audit_records, budget, key, render
from tests.harness.proxy import ProxyServer
from tests.harness.rendered import echo_route

LIMIT = 0.004
CLIENTS = 64
ATTEMPTS = 8
TENANTS = {
    "chat_completions": "race-chat",
    "completions": "race-comp",
    "embeddings": "race-emb",
    "responses": "race-resp",
    "anthropic_messages": "race-msg",
}
WORDS = "the quick brown fox jumps over the lazy dog " * 3
# Anthropic Messages go to an anthropic/ deployment without maxOutputTokens: its cap is the model's real output limit.
# Output is priced so that 64000 tokens reserve about what the other shapes reserve, and the race runs as long.
CLAUDE, CLAUDE_MODEL, CLAUDE_MAX, CLAUDE_OUT_PRICE = "claude-race", "claude-sonnet-4-5", 64000, "0.000000001"


BUDGETS = {f"{tenant}-b": {"tenant": tenant, "limitUSD": str(LIMIT), "period": "daily"} for tenant in TENANTS.values()}


@pytest.fixture(scope="module")
def replicas(redis_server, echo_upstream) -> Iterator[tuple[ProxyServer, ProxyServer]]:
    claude = echo_route(
        GW,
        CLAUDE,
        echo_upstream.base_url.removesuffix("/v1"),  # LiteLLM's anthropic/ calls append /v1/messages
        provider="anthropic",
        upstream_model=CLAUDE_MODEL,
        input_price=str(IN_PRICE),
        output_price=CLAUDE_OUT_PRICE,
    )
    s = render(echo_upstream.base_url, budgets=BUDGETS, extra_tenants=tuple(TENANTS.values()), extra_routes=(claude,))
    assert {m.name: m.max_output_tokens for m in s.policy.models}[CLAUDE] == CLAUDE_MAX
    started: list[ProxyServer] = []
    try:
        for _ in range(2):
            started.append(ProxyServer(s.config, s.policy, redis_url=redis_server.url, env=s.env).start())
        yield started[0], started[1]
    finally:
        for p in started:
            p.stop()


def call(c: openai.OpenAI | anthropic.Anthropic, endpoint: str):
    if endpoint == "anthropic_messages":
        return c.messages.create(model=CLAUDE, messages=[{"role": "user", "content": WORDS}], max_tokens=CLAUDE_MAX)
    if endpoint == "responses":
        return c.responses.create(model="echo", input=WORDS, max_output_tokens=16)
    if endpoint == "chat_completions":
        return c.chat.completions.create(model="echo", messages=[{"role": "user", "content": WORDS}], max_tokens=16)
    if endpoint == "completions":
        return c.completions.create(model="echo", prompt=[WORDS] * 6, max_tokens=16)
    return c.embeddings.create(model="echo", input=[WORDS] * 6)


def code_of(exc: openai.APIStatusError | anthropic.APIStatusError) -> str:
    body = exc.body
    # OpenAI: {"error": {"code": ...}}; Anthropic's shape: {"type": "error", "error": {"type": ..., "code": ...}}
    return body["code"] if "code" in body else body["error"]["code"]


@pytest.mark.parametrize("endpoint", sorted(TENANTS))
def test_sixty_four_clients_on_two_replicas_overspend_by_at_most_one_request(replicas, redis_server, endpoint):
    tenant = TENANTS[endpoint]
    if endpoint == "anthropic_messages":
        clients = [
            anthropic.Anthropic(base_url=p.base_url, api_key=key(tenant), max_retries=0, timeout=120) for p in replicas
        ]
    else:
        clients = [
            openai.OpenAI(base_url=p.base_url + "/v1", api_key=key(tenant), max_retries=0, timeout=120)
            for p in replicas
        ]
    served: list[int] = []
    refused: list[int] = []
    unavailable: list[int] = []
    lock = threading.Lock()

    def worker(i: int) -> None:
        for n in range(ATTEMPTS):
            try:
                call(clients[(i + n) % 2], endpoint)
                with lock:
                    served.append(i)
            except (openai.RateLimitError, anthropic.RateLimitError) as exc:
                assert code_of(exc) == "budget_exceeded"
                with lock:
                    refused.append(i)
            except (openai.InternalServerError, anthropic.InternalServerError) as exc:
                # Fail-closed when Redis answers too late for a loaded proxy (1 s): refused, never served.
                assert exc.status_code == 503 and code_of(exc) == "limits_unavailable"
                with lock:
                    unavailable.append(i)

    with ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(worker, range(CLIENTS)))
    assert served and refused, "the budget must be reached"

    rds = redis_server.client()
    attempts = len(served) + len(refused) + len(unavailable)
    records: list[dict] = []
    for _ in range(300):
        records = [r for r in audit_records(rds, GatewayKeys("default", GW).audit_stream) if r["tenant"] == tenant]
        if len(records) >= attempts:
            break
        time.sleep(0.1)
    assert len(records) == attempts
    costs = [r["cost_usd"] for r in records if r["status"] == "success"]
    assert len(costs) == len(served) and all(c > 0 for c in costs)

    async def read():
        r = aioredis.from_url(redis_server.url)
        try:
            for _ in range(100):
                st = await read_budget_state(r, GatewayKeys("default", GW), budget(replicas[0].policy, f"{tenant}-b"))
                if st.reserved_usd == 0:
                    return st
                await asyncio.sleep(0.1)
            return st
        finally:
            await r.aclose()

    state = asyncio.run(read())
    if not unavailable:
        # A Redis answer that came too late may still have reserved (it is not replayed, so never counted
        # twice); such a reservation lapses with its period. Without one, everything settled.
        assert state.reserved_usd == 0
    assert abs(state.spent_usd - sum(costs)) <= len(costs) * 1e-6
    # The bound the issue asks for: at most one request's cost over the limit.
    assert state.spent_usd <= LIMIT + max(costs), (state.spent_usd, LIMIT, max(costs))
    assert state.spent_usd > LIMIT / 2, "most of the budget was spent: the race really ran"
