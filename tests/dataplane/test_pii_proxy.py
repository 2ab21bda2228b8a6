"""PII masking through the real LiteLLM proxy, official openai SDK as the client, echo upstream.

The echo upstream answers with the last message it received, so what the client gets back is
what left the gateway (masked) unless restore put the originals back. The proxy's config and policy are rendered
from CR objects (tests/harness/rendered.py). Module-scoped proxies rather than the per-test ``make_proxy`` fixture,
so the tenants share one proxy (and the fault tests one more) instead of one start per test.
"""

from __future__ import annotations

import contextlib
import json

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.harness.echo import EchoServer
from tests.harness.proxy import ProxyServer
from tests.harness.rendered import cr, echo_route, render_proxy

EMAIL = "jane.roe@example.org"
CARD = "4111 1111 1111 1111"
KEYS = {
    "nopii": "sk-nopii",
    "mask": "sk-mask",
    "restore": "sk-restore",
    "block": "sk-block",
    "closed": "sk-closed",
    "open": "sk-open",
}
POLICIES = {
    "mask": {},
    "restore": {"restore": True},
    "block": {"entities": {"CREDIT_CARD": "block", "EMAIL_ADDRESS": "mask"}},
    "closed": {"timeoutMs": 500},
    "open": {"failOpen": True, "timeoutMs": 500},
}


def objects(echo_base: str) -> list[dict]:
    """Gateway ``main`` serving ``echo``; one Tenant per PII spec of POLICIES, and ``nopii`` without one."""
    return [
        cr("LLMGateway", "main", {}),
        echo_route("main", "echo", echo_base),
        *(
            cr("Tenant", name, {"gateway": "main", "allowedModels": ["echo"], "pii": pii})
            for name, pii in POLICIES.items()
        ),
        cr("Tenant", "nopii", {"gateway": "main", "allowedModels": ["echo"]}),
    ]


@contextlib.contextmanager
def launch(extra_env: dict[str, str]):
    echo = EchoServer().start()
    rendered = render_proxy(objects(echo.base_url), keys=KEYS)
    # Signed like every policy the operator publishes (ProxyServer gives the proxy the public key).
    proxy = ProxyServer(rendered.config, rendered.policy, env={**rendered.env, **extra_env})
    try:
        proxy.start()
        METRICS_PORTS[proxy.base_url] = proxy.metrics_port
        yield proxy.base_url, echo
    finally:
        proxy.stop()
        echo.stop()


@pytest.fixture(scope="module")
def gateway():
    with launch({}) as started:
        yield started


@pytest.fixture(scope="module")
def faulty_gateway():
    # Test-only fault hook: every analysis in this proxy raises.
    with launch({"KUBEGATE_PII_FAULT": "raise"}) as started:
        yield started


def client(base: str, tenant: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{base}/v1", api_key=KEYS[tenant], max_retries=0)


def ask(base: str, tenant: str, text: str, **kw):
    return client(base, tenant).chat.completions.create(
        model="echo", messages=[{"role": "system", "content": f"Mail {EMAIL}"}, {"role": "user", "content": text}], **kw
    )


def upstream_saw(echo: EchoServer) -> str:
    return json.dumps([r["body"] for r in echo.received()])


def test_upstream_never_sees_masked_values(gateway):
    base, echo = gateway
    echo.clear()
    answer = ask(base, "mask", f"Refund {CARD} and write to {EMAIL}")
    saw = upstream_saw(echo)
    assert EMAIL not in saw and CARD not in saw and "<EMAIL_ADDRESS_1>" in saw
    assert answer.choices[0].message.content == "Refund <CREDIT_CARD_1> and write to <EMAIL_ADDRESS_1>"


def test_restore_non_streaming_and_streaming(gateway):
    base, echo = gateway
    echo.clear()
    text = f"Refund {CARD} and write to {EMAIL} today"
    assert ask(base, "restore", text).choices[0].message.content == text
    # The echo streams 7-character pieces, so each placeholder is split across chunks.
    stream = ask(base, "restore", text, stream=True)
    pieces = [c.choices[0].delta.content or "" for c in stream if c.choices]
    assert "".join(pieces) == text
    assert EMAIL not in upstream_saw(echo) and CARD not in upstream_saw(echo)


def test_block_names_type_not_value(gateway):
    base, echo = gateway
    echo.clear()
    with pytest.raises(openai.BadRequestError) as info:
        ask(base, "block", f"Charge {CARD}")
    body = json.dumps(info.value.body)
    assert "CREDIT_CARD" in body and CARD not in body
    assert echo.received() == []


def test_fail_closed_refuses_and_fail_open_forwards(faulty_gateway):
    base, echo = faulty_gateway
    echo.clear()
    with pytest.raises(openai.APIStatusError) as info:
        ask(base, "closed", f"Write to {EMAIL}")
    assert info.value.status_code == 503 and "PII analysis is unavailable" in json.dumps(info.value.body)
    assert echo.received() == []
    answer = ask(base, "open", f"Write to {EMAIL}")
    assert answer.choices[0].message.content == f"Write to {EMAIL}"
    assert len(echo.received()) == 1


# /metrics is served on its own port, never on the tenant port.
METRICS_PORTS: dict[str, int] = {}


def _pii_counts(base: str) -> dict[tuple[str, str, str], float]:
    text = httpx.get(f"http://127.0.0.1:{METRICS_PORTS[base]}/metrics", timeout=10).text
    return {
        (s.labels["tenant"], s.labels["entity"], s.labels["action"]): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "kubegate_pii_entities_total"
    }


def test_pii_findings_are_counted_by_tenant_entity_and_action(gateway):
    base, _ = gateway
    before = _pii_counts(base)
    ask(base, "mask", f"Refund {CARD} and write to {EMAIL}")  # the system message holds EMAIL too
    with pytest.raises(openai.BadRequestError):
        ask(base, "block", f"Charge {CARD}")
    after = _pii_counts(base)

    def added(key):
        return after.get(key, 0) - before.get(key, 0)

    assert added(("mask", "EMAIL_ADDRESS", "mask")) == 2
    assert added(("mask", "CREDIT_CARD", "mask")) == 1
    assert added(("block", "CREDIT_CARD", "block")) == 1
    assert EMAIL not in str(after) and CARD not in str(after)
