"""PII masking through the real LiteLLM proxy, official openai SDK as the client, echo upstream.

The echo upstream answers with the last message it received, so what the client gets back is
what left the gateway (masked) unless restore put the originals back. Uses a local proxy
module-scoped launcher rather than the per-test ``make_proxy`` fixture so the
five tenants share one proxy (and the fault tests one more) instead of one start per test.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway_plugins.policy.schema import Policy, hash_key
from gateway_plugins.policy.store import sign_document
from tests.harness.echo import EchoServer
from tests.harness.procs import free_port, stop_process, wait_until
from tests.harness.proxy import AUDIT_KEY_B64, SIGNER

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
    "closed": {"timeout_ms": 500},
    "open": {"fail_open": True, "timeout_ms": 500},
}


@contextlib.contextmanager
def launch(extra_env: dict[str, str]):
    echo = EchoServer().start()
    tmp = Path(tempfile.mkdtemp(prefix="kg-pii-"))
    policy = {
        "schema": "kubegate.dev/policy/v1",
        "gateway": "main",
        "tenants": [
            {"id": name, "keys": [{"sha256": hash_key(KEYS[name])}], "allowed_models": ["echo"], "pii": pii}
            for name, pii in POLICIES.items()
        ]
        + [{"id": "nopii", "keys": [{"sha256": hash_key(KEYS["nopii"])}], "allowed_models": ["echo"]}],
    }
    # Signed like every policy the operator publishes; the proxy gets the public key below.
    (tmp / "policy.json").write_bytes(sign_document(Policy.model_validate(policy), SIGNER))
    (tmp / "config.yaml").write_text(
        "model_list:\n"
        "  - model_name: echo\n"
        f"    litellm_params: {{model: openai/echo, api_base: '{echo.base_url}', api_key: x}}\n"
        "general_settings:\n"
        "  custom_auth: gateway_plugins.auth.user_api_key_auth\n"
        "litellm_settings:\n"
        "  callbacks: gateway_plugins.hooks.proxy_handler_instance\n"
        "  require_auth_for_metrics_endpoint: false\n"
    )
    port = free_port()
    metrics_port = free_port()
    # Nothing kubegate- or provider-specific leaks in from the outer environment (a stray fault flag).
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("KUBEGATE_", "OPENAI_"))}
    env = {
        **inherited,
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_TELEMETRY": "False",
        "KUBEGATE_POLICY_FILE": str(tmp / "policy.json"),
        "KUBEGATE_POLICY_PUBLIC_KEY": SIGNER.public_key_b64,
        "KUBEGATE_AUDIT_KEY": AUDIT_KEY_B64,
        "KUBEGATE_AUDIT_SPOOL_DIR": str(tmp / "spool"),
        "KUBEGATE_METRICS_PORT": str(metrics_port),
        "KUBEGATE_METRICS_ADDR": "127.0.0.1",
        **extra_env,
    }
    log = tmp / "proxy.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "litellm"), "--config", str(tmp / "config.yaml"), "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=str(Path(__file__).resolve().parents[2]),
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    METRICS_PORTS[base] = metrics_port
    try:
        wait_until(
            lambda: httpx.get(f"{base}/health/liveliness").status_code == 200,
            timeout=120,
            what="proxy",
            proc=proc,
            log=log,
        )
        yield base, echo
    finally:
        stop_process(proc)
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
