"""Obfuscated PII never reaches the upstream through a real proxy (Hypothesis, a modest number of examples).

Generated values of each structured type (tests/pii/strategies.py), obfuscated one way each (fullwidth, zero-width
characters, JSON escapes inside tool-call arguments, split across content parts or messages, dots in digit runs),
sent as raw JSON to a proxy rendered from CR objects with the default policy (every type masked). The echo upstream
records what left the gateway; nothing it saw may contain the value. Many more examples run in-process:
tests/pii/test_obfuscation.py.
"""

from __future__ import annotations

import base64

import httpx
import pytest
from hypothesis import HealthCheck, given, settings

from tests.dataplane import test_pii_proxy as stack
from tests.pii.strategies import leaked, obfuscated_bodies


@pytest.fixture(scope="module")
def gateway():
    with stack.launch({}) as started:
        yield started


@pytest.fixture(scope="module")
def http():
    with httpx.Client(timeout=30) as client:
        yield client


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=obfuscated_bodies())
def test_obfuscated_pii_never_reaches_the_upstream(gateway, http, case):
    base, echo = gateway
    entity, value, body = case
    echo.clear()
    r = http.post(f"{base}/v1/chat/completions", json=body, headers={"authorization": f"Bearer {stack.KEYS['mask']}"})
    assert r.status_code == 200, r.text
    seen = [got["body"] for got in echo.received()]
    assert len(seen) == 1
    assert not leaked(value, seen), (entity, value, seen)


def test_pii_in_base64_is_refused_before_the_upstream(gateway, http):
    base, echo = gateway
    echo.clear()
    blob = base64.b64encode(b"my card is 4111 1111 1111 1111, mail leak.me@example.org").decode()
    body = {"model": "echo", "messages": [{"role": "user", "content": f"Decode this: {blob}"}]}
    r = http.post(f"{base}/v1/chat/completions", json=body, headers={"authorization": f"Bearer {stack.KEYS['mask']}"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "content_not_inspectable"
    assert blob not in r.text and echo.received() == []
