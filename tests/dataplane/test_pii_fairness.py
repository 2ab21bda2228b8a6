"""One tenant's flood of large prompts cannot take PII analysis away from another tenant.

``flood`` sends several 150 KB prompts at once with NER entities (seconds of spaCy work each, more than
its analysis time limit); meanwhile ``victim`` sends small prompts with an e-mail address. Every victim
request is served and masked: the flooder holds at most one of the analysis pool's workers, and its
abandoned analyses stop within one window instead of running on.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest

from tests.dataplane.contract_stack import KEYS, render
from tests.harness.proxy import ProxyServer

PROSE = "Alice Smith met Robert Jones in the harbour office before lunch, as planned. " * 2000  # ~150 KB
EMAIL = "victim.person@example.org"


@pytest.fixture(scope="module")
def proxy(redis_server, echo_upstream) -> Iterator[ProxyServer]:
    s = render(echo_upstream.base_url)
    p = ProxyServer(s.config, s.policy, redis_url=redis_server.url, env=s.env).start()
    yield p
    p.stop()


def test_a_flooding_tenant_does_not_starve_another_tenants_pii_requests(proxy, echo_upstream):
    flood = openai.OpenAI(base_url=proxy.base_url + "/v1", api_key=KEYS["flood"], max_retries=0, timeout=120)
    victim = openai.OpenAI(base_url=proxy.base_url + "/v1", api_key=KEYS["victim"], max_retries=0, timeout=120)
    # Warm both engines first, so the measurement is about contention, not start-up.
    flood.chat.completions.create(model="echo", messages=[{"role": "user", "content": "Alice Smith"}], max_tokens=4)
    victim.chat.completions.create(model="echo", messages=[{"role": "user", "content": EMAIL}], max_tokens=4)

    flooding = threading.Event()
    flood_status: list[int] = []

    def flood_one(_: int) -> None:
        flooding.set()
        try:
            flood.chat.completions.create(model="echo", messages=[{"role": "user", "content": PROSE}], max_tokens=4)
            flood_status.append(200)
        except openai.APIStatusError as exc:
            flood_status.append(exc.status_code)

    victim_answers: list[str] = []
    victim_errors: list[str] = []
    echo_upstream.clear()
    with ThreadPoolExecutor(6) as pool:
        floods = [pool.submit(flood_one, i) for i in range(6)]
        flooding.wait(10)
        for i in range(8):
            try:
                reply = victim.chat.completions.create(
                    model="echo", messages=[{"role": "user", "content": f"mail {EMAIL} turn {i}"}], max_tokens=64
                )
                victim_answers.append(reply.choices[0].message.content)
            except openai.APIStatusError as exc:
                victim_errors.append(f"{exc.status_code} {exc.body}")
        for f in floods:
            f.result()
    assert not victim_errors, victim_errors
    assert len(victim_answers) == 8 and all("<EMAIL_ADDRESS_1>" in a for a in victim_answers)
    assert EMAIL not in json.dumps(echo_upstream.received())
    # The flood itself was bounded: refused (busy or timed out), never an unmasked pass-through.
    assert flood_status and set(flood_status) <= {200, 503}
