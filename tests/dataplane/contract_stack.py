"""One Gateway for the request-contract tests, as CR objects rendered by the operator (tests/harness/rendered.py):
priced models, tenants with and without a PII policy, a regional group tenants must never see, and readers for
the audit stream and budgets."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from gateway_plugins.policy.keys import GatewayKeys
from gateway_plugins.policy.schema import Budget, Policy
from tests.harness.rendered import UPSTREAM_KEY, ProxyInputs, cr, render_proxy

GW = "contract"
STREAM = GatewayKeys("default", GW).audit_stream
IN_PRICE = Decimal("0.000001")
OUT_PRICE = Decimal("0.000002")
KEYS = {
    "pii": "sk-contract-pii-0123456789",
    "restore": "sk-contract-restore-0123456789",
    "plain": "sk-contract-plain-0123456789",
    "narrow": "sk-contract-narrow-0123456789",
    "flood": "sk-contract-flood-0123456789",
    "victim": "sk-contract-victim-0123456789",
}
MODELS = ("echo", "other")
CLAUDE, CLAUDE_UPSTREAM = "claude", "claude-sonnet-4-5"
REGION = "eu-west-1"
PII_ENTITIES = {e: "mask" for e in ("EMAIL_ADDRESS", "CREDIT_CARD", "IBAN_CODE", "IP_ADDRESS")}


def key(tenant: str) -> str:
    return KEYS.get(tenant) or f"sk-contract-{tenant}-0123456789"


def route(gateway: str, model: str, base: str, *, provider: str = "openai", upstream: str = "") -> dict[str, Any]:
    """``model`` served by one priced deployment in REGION (so also as the regional group ``model@REGION``)."""
    return cr(
        "ModelRoute",
        model,
        {
            "gateway": gateway,
            "modelName": model,
            # No retries: a test's upstream failure is seen once, as the client's error.
            "numRetries": 0,
            "deployments": [
                {
                    "name": "1",
                    "provider": provider,
                    "model": upstream or f"{model}-echo",
                    "apiBase": base,
                    "apiKeySecretRef": UPSTREAM_KEY,
                    "region": REGION,
                    "inputCostPerToken": str(IN_PRICE),
                    "outputCostPerToken": str(OUT_PRICE),
                }
            ],
        },
    )


def objects(
    echo_base: str,
    *,
    fail_auth_base: str | None = None,
    budgets: Mapping[str, Mapping[str, Any]] | None = None,
    extra_tenants: tuple[str, ...] = (),
    gateway_spec: Mapping[str, Any] | None = None,
    extra_routes: tuple[dict[str, Any], ...] = (),
) -> list[dict[str, Any]]:
    """``budgets``: Budget name -> its spec; ``fail_auth_base``: an upstream refusing every key, served as the
    model ``badkey``; ``extra_routes``: further ModelRoutes (CR dicts)."""
    routes = [route(GW, m, echo_base) for m in MODELS] + list(extra_routes)
    # An Anthropic-family upstream (LiteLLM speaks Messages to it natively): thinking, prompt caching.
    routes.append(route(GW, CLAUDE, echo_base.removesuffix("/v1"), provider="anthropic", upstream=CLAUDE_UPSTREAM))
    if fail_auth_base:
        routes.append(route(GW, "badkey", fail_auth_base))

    def tenant(name: str, allowed: list[str], pii: dict | None = None) -> dict[str, Any]:
        return cr("Tenant", name, {"gateway": GW, "allowedModels": allowed, **({"pii": pii} if pii else {})})

    tenants = [
        # A generous analysis time limit: these tests are about what is masked, not about a loaded machine's speed.
        tenant("pii", ["*"], {"entities": PII_ENTITIES, "timeoutMs": 10000}),
        tenant("plain", ["*"]),
        # Restores originals in answers: what must never happen inside signed thinking blocks.
        tenant("restore", ["*"], {"entities": PII_ENTITIES, "restore": True, "timeoutMs": 10000}),
        tenant("narrow", ["echo"]),
        # spaCy NER: the expensive analysis a flood of large prompts makes slow.
        tenant("flood", ["*"], {"entities": {"PERSON": "mask", "EMAIL_ADDRESS": "mask"}}),
        # The default analysis time limit: the fairness test must fail if the flood delays it.
        tenant("victim", ["*"], {"entities": PII_ENTITIES}),
        *(tenant(t, ["*"]) for t in extra_tenants),
    ]
    return [
        cr("LLMGateway", GW, gateway_spec or {}),
        *routes,
        *tenants,
        *(cr("Budget", name, spec) for name, spec in (budgets or {}).items()),
    ]


def render(
    echo_base: str,
    *,
    fail_auth_base: str | None = None,
    budgets: Mapping[str, Mapping[str, Any]] | None = None,
    extra_tenants: tuple[str, ...] = (),
    gateway_spec: Mapping[str, Any] | None = None,
    extra_routes: tuple[dict[str, Any], ...] = (),
) -> ProxyInputs:
    """The proxy's config, policy and env for ``objects(...)``: give them to ``ProxyServer``."""
    objs = objects(
        echo_base,
        fail_auth_base=fail_auth_base,
        budgets=budgets,
        extra_tenants=extra_tenants,
        gateway_spec=gateway_spec,
        extra_routes=extra_routes,
    )
    tenants = [o["metadata"]["name"] for o in objs if o["kind"] == "Tenant"]
    return render_proxy(objs, keys={t: key(t) for t in tenants})


def budget(policy: Policy, name: str) -> Budget:
    """The rendered Budget ``name`` (what the proxy enforces), for reading its state."""
    (found,) = [b for b in policy.budgets if b.name == name]
    return found


def audit_records(redis_client, stream: str = STREAM) -> list[dict]:
    return [json.loads(fields[b"r"]) for _, fields in redis_client.xrange(stream)]


def wait_for_records(redis_client, count: int, stream: str = STREAM, timeout: float = 30) -> list[dict]:
    """Records are written in batches after the answer: wait until ``count`` are there (or time out)."""
    deadline = time.monotonic() + timeout
    records = audit_records(redis_client, stream)
    while len(records) < count and time.monotonic() < deadline:
        time.sleep(0.1)
        records = audit_records(redis_client, stream)
    return records
