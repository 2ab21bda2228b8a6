"""One proxy config and policy for the request-contract tests: priced models, tenants with and without a
PII policy, a regional group tenants must never see, and readers for the audit stream and budgets."""

from __future__ import annotations

import json
import time
from decimal import Decimal

from gateway_plugins.policy.keys import GatewayKeys
from gateway_plugins.policy.schema import Policy, hash_key

GW = "contract"
STREAM = GatewayKeys("default", GW).audit_stream
IN_PRICE = Decimal("0.000001")
OUT_PRICE = Decimal("0.000002")
KEYS = {
    "pii": "sk-contract-pii-0123456789",
    "plain": "sk-contract-plain-0123456789",
    "narrow": "sk-contract-narrow-0123456789",
    "flood": "sk-contract-flood-0123456789",
    "victim": "sk-contract-victim-0123456789",
}
MODELS = ("echo", "other")


def config(echo_base: str, *, fail_auth_base: str | None = None) -> dict:
    def dep(name: str, group: str, dep_id: str, base: str) -> dict:
        return {
            "model_name": group,
            "litellm_params": {
                "model": f"openai/{name}-echo",
                "api_base": base,
                "api_key": "x",
                "input_cost_per_token": float(IN_PRICE),
                "output_cost_per_token": float(OUT_PRICE),
            },
            "model_info": {"id": dep_id},
        }

    model_list = [dep(m, m, f"{m}-1", echo_base) for m in MODELS]
    model_list.append(dep("echo", "echo@eu-west-1", "echo-eu-1", echo_base))
    if fail_auth_base:
        model_list.append(dep("badkey", "badkey", "badkey-1", fail_auth_base))
    return {"model_list": model_list, "router_settings": {"num_retries": 0}}


def key(tenant: str) -> str:
    return KEYS.get(tenant) or f"sk-contract-{tenant}-0123456789"


def policy(
    *, budgets: list[dict] | None = None, extra_models: tuple[str, ...] = (), extra_tenants: tuple[str, ...] = ()
) -> Policy:
    # A generous analysis time limit: these tests are about what is masked, not about a loaded machine's speed.
    pii = {
        "entities": {e: "mask" for e in ("EMAIL_ADDRESS", "CREDIT_CARD", "IBAN_CODE", "IP_ADDRESS")},
        "timeout_ms": 10000,
    }
    models = (*MODELS, *extra_models)
    return Policy.model_validate(
        {
            "gateway": GW,
            "tenants": [
                {"id": "pii", "keys": [{"sha256": hash_key(KEYS["pii"])}], "allowed_models": ["*"], "pii": pii},
                {"id": "plain", "keys": [{"sha256": hash_key(KEYS["plain"])}], "allowed_models": ["*"]},
                {"id": "narrow", "keys": [{"sha256": hash_key(KEYS["narrow"])}], "allowed_models": ["echo"]},
                {
                    "id": "flood",
                    "keys": [{"sha256": hash_key(KEYS["flood"])}],
                    "allowed_models": ["*"],
                    # spaCy NER: the expensive analysis a flood of large prompts makes slow.
                    "pii": {"entities": {"PERSON": "mask", "EMAIL_ADDRESS": "mask"}},
                },
                {
                    "id": "victim",
                    "keys": [{"sha256": hash_key(KEYS["victim"])}],
                    "allowed_models": ["*"],
                    # The default 2 s analysis limit: the fairness test must fail if the flood delays it.
                    "pii": {"entities": pii["entities"]},
                },
                *({"id": t, "keys": [{"sha256": hash_key(key(t))}], "allowed_models": ["*"]} for t in extra_tenants),
            ],
            "budgets": budgets or [],
            "models": [
                {"name": m, "regional_groups": {"eu-west-1": "echo@eu-west-1"} if m == "echo" else {}} for m in models
            ],
            "deployments": [
                {
                    "id": dep_id,
                    "model": model,
                    "region": "eu-west-1",
                    "input_cost_per_token": str(IN_PRICE),
                    "output_cost_per_token": str(OUT_PRICE),
                }
                for dep_id, model in [
                    *((f"{m}-1", m) for m in models),
                    ("echo-eu-1", "echo"),
                ]
            ],
        }
    )


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
