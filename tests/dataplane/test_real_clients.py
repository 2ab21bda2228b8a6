"""Real clients work by default (issue #20): every flow of tests/clients/flows (openai-python, anthropic-python,
openai-agents, LangChain, LlamaIndex, pydantic-ai, instructor, Claude Code, Codex; each pinned in its own locked
environment made by scripts/ensure-clients.sh) against a real proxy rendered from CR objects, for a tenant without
and one with PII masking. Each flow must succeed, and every request it made must have exactly one audit record.

The flows reach the proxy through tests/clients/recorder.py, a transparent forwarder that lists what each client
sent and what it got back, so a failure names the refusal (status and body) and the audit check knows every
request, whatever the client (SDK or CLI).

Model routes: ``gpt-4o`` and ``text-embedding-3-small`` (provider openai) and ``claude-sonnet-4-5`` (provider
anthropic: LiteLLM calls ``<apiBase>/v1/messages``), all served by the echo upstream.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from gateway_plugins.policy.keys import GatewayKeys
from tests.clients.catalog import RecorderServer, error_line, flows, python, run_flow
from tests.dataplane.contract_stack import audit_records
from tests.harness.proxy import ProxyServer
from tests.harness.rendered import UPSTREAM_KEY, cr, echo_route, render_proxy

GW = "clients"
STREAM = GatewayKeys("default", GW).audit_stream
MODELS = {
    "KUBEGATE_OPENAI_MODEL": "gpt-4o",
    "KUBEGATE_EMBEDDING_MODEL": "text-embedding-3-small",
    "KUBEGATE_ANTHROPIC_MODEL": "claude-sonnet-4-5",
}
PII = {"entities": {e: "mask" for e in ("EMAIL_ADDRESS", "CREDIT_CARD", "IP_ADDRESS")}, "restore": True}
TENANTS = {"plain": {}, "pii": {"pii": PII}}


def key(tenant: str) -> str:
    return f"sk-clients-{tenant}-0123456789"


def objects(echo_port: int) -> list[dict]:
    openai_base = f"http://127.0.0.1:{echo_port}/v1"
    anthropic = {
        "name": "1",
        "provider": "anthropic",
        "model": MODELS["KUBEGATE_ANTHROPIC_MODEL"],
        "apiBase": f"http://127.0.0.1:{echo_port}",
        "apiKeySecretRef": UPSTREAM_KEY,
        "region": "eu-west-1",
    }
    spec = {"gateway": GW, "modelName": anthropic["model"], "deployments": [anthropic], "numRetries": 0, "free": True}
    return [
        cr("LLMGateway", GW, {}),
        echo_route(GW, MODELS["KUBEGATE_OPENAI_MODEL"], openai_base),
        echo_route(GW, MODELS["KUBEGATE_EMBEDDING_MODEL"], openai_base),
        cr("ModelRoute", anthropic["model"], spec),
        *(cr("Tenant", t, {"gateway": GW, "allowedModels": ["*"], **extra}) for t, extra in TENANTS.items()),
    ]


@pytest.fixture(scope="module")
def recorder(redis_server, echo_upstream) -> Iterator[RecorderServer]:
    s = render_proxy(objects(echo_upstream.port), keys={t: key(t) for t in TENANTS})
    proxy = ProxyServer(s.config, s.policy, redis_url=redis_server.url, env=s.env).start()
    rec = None
    try:
        rec = RecorderServer(proxy.base_url).start()
        yield rec
    finally:
        if rec is not None:
            rec.stop()
        proxy.stop()


def refusals(requests: list[dict]) -> str:
    return "\n".join(
        f"  {r['method']} {r['path']} -> {r['status']}: {r.get('error', '')[:600]}"
        for r in requests
        if r["status"] >= 400
    )


@pytest.mark.parametrize("tenant", sorted(TENANTS))
@pytest.mark.parametrize(("script", "flow"), flows(), ids=[f"{s}.{f}" for s, f in flows()])
def test_client_flow_works_by_default_and_each_request_is_audited(recorder, redis_server, tenant, script, flow):
    assert python(script).exists(), f"{python(script)} is missing: run scripts/ensure-clients.sh"
    recorder.clear()
    done = run_flow(script, flow, recorder.base_url, key(tenant), **MODELS)
    requests = recorder.requests()
    problems = []
    if done.returncode != 0:
        problems.append(f"the flow failed (exit {done.returncode}): {error_line(done.stderr)}\n{done.stderr[-1500:]}")
    if not requests:
        problems.append("the flow made no request")
    ids = [r.get("request_id") for r in requests]
    if None in ids:
        problems.append(
            f"answers without x-kubegate-request-id: {[r['path'] for r in requests if not r.get('request_id')]}"
        )
    # Records are written in batches after the answer: wait until every request has one (or time out).
    wanted = {i for i in ids if i}
    deadline = time.monotonic() + 30
    while True:
        counts = {}
        for record in audit_records(redis_server.client(), STREAM):
            if record["request_id"] in wanted:
                counts[record["request_id"]] = counts.get(record["request_id"], 0) + 1
        if set(counts) == wanted or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    if any(counts.get(i) != 1 for i in wanted):
        problems.append(f"audit records per request id (each must have one): { {i: counts.get(i, 0) for i in wanted} }")
    if problems:
        pytest.fail("\n".join([*problems, "refused requests:", refusals(requests) or "  none"]))
