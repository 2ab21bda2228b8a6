"""What may be cached, and the key an entry is found by: pure functions of the policy and the masked request.

The key hashes (tenant, the policy parts that shape the tenant's answers, endpoint, masked body, end user), so an
entry is only ever found by the tenant that made it, through the same routing and PII policy, for the same end user
(as the client named it, before masking: two e-mail addresses both masked to ``<EMAIL_ADDRESS_1>`` stay apart),
and holds no raw text (the end user is only hashed into the key).
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from gateway_plugins.policy.keys import GatewayKeys
from gateway_plugins.policy.schema import CachePolicy, Policy, Tenant

# Endpoints whose answers are cached; every other tenant route (models) answers without an upstream.
CACHEABLE_ENDPOINTS = frozenset({"chat_completions", "completions", "embeddings", "responses", "anthropic_messages"})
# Answers that do not sample: embeddings are deterministic whatever the request says.
UNSAMPLED = frozenset({"embeddings"})
BYPASS = "bypass"


def skip_reason(cache: CachePolicy, endpoint: str, body: dict[str, Any], end_user: str | None = None) -> str | None:
    """Why this request must not be cached (a bounded reason for audit and metrics), or None if it may be."""
    if endpoint not in CACHEABLE_ENDPOINTS:
        return "endpoint"
    if endpoint not in UNSAMPLED and not cache.allow_nonzero_temperature:
        temperature = body.get("temperature")
        # Unset means the provider's default, which is 1 for OpenAI and Anthropic: a sampled answer.
        if not isinstance(temperature, (int, float)) or isinstance(temperature, bool) or temperature != 0:
            return "temperature"
    if not cache.allow_tools and (body.get("tools") or body.get("functions")):
        return "tools"
    if body.get("previous_response_id") or body.get("conversation"):
        # The answer depends on conversation state held by the upstream, not on this body alone.
        return "stateful"
    if cache.skip_user_scoped and end_user:
        return "user"
    return None


def shape_digest(policy: Policy, tenant: Tenant, model: str) -> str:
    """Hash of what shapes this tenant's answers from ``model``: the tenant's policy (keys, limits and the cache
    settings aside) and the model's routing. Changing any of it starts new entries; the old ones expire."""
    shaping = tenant.model_dump(mode="json", exclude={"keys", "rate_limits", "fail_open", "cache"})
    meta = next((m.model_dump(mode="json") for m in policy.models if m.name == model), None)
    deployments = sorted((d.id, d.model, d.region) for d in policy.deployments if d.model == model)
    blob = orjson.dumps([shaping, meta, deployments], option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(blob).hexdigest()


def entry_key(
    keys: GatewayKeys,
    tenant: str,
    shape: str,
    endpoint: str,
    masked_body: dict[str, Any],
    end_user: str | None = None,
    shards: int = 1,
) -> str:
    """The Redis key of the entry for this (masked) request and end user. Keys are sorted, so field order does not
    matter."""
    blob = orjson.dumps([shape, endpoint, masked_body, end_user], option=orjson.OPT_SORT_KEYS)
    return keys.cache_entry(tenant, hashlib.sha256(blob).hexdigest(), shards)
