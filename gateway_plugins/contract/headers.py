"""Which headers cross the gateway, in each direction: allow-lists, since anything unlisted is dropped.

Inbound, LiteLLM reads many ``x-litellm-*`` headers as instructions (timeouts, retries, tags, trace and
call ids, spend metadata) and can forward client headers upstream; a tenant must steer none of that.
Outbound, LiteLLM and the upstream SDK add headers that name the upstream (``x-litellm-model-api-base``,
``llm_provider-*``, provider rate-limit and request ids); tenants see none of them.

A caller's W3C trace context (``traceparent``, ``tracestate``) is not passed on either: the front door reads it
for kubegate's own spans (``gateway_plugins.tracing``) before this list applies. LiteLLM would take it as its
trace id, and forwarding it would hand the caller's trace ids to a third-party upstream.
"""

from __future__ import annotations

REQUEST_ALLOWED = frozenset(
    {
        b"host",
        b"content-type",
        b"content-length",
        b"accept",
        b"accept-encoding",
        b"user-agent",
        b"connection",
    }
)

# Read by the front door itself (``x-kubegate-cache: bypass``, docs/cache.md) before the inbound headers are replaced
# by REQUEST_ALLOWED: it steers kubegate's cache, and LiteLLM never sees it.
CACHE_CONTROL_HEADER = b"x-kubegate-cache"

RESPONSE_ALLOWED = frozenset(
    {
        b"content-type",
        b"content-length",
        b"content-encoding",
        b"transfer-encoding",
        b"cache-control",
        b"connection",
        b"date",
        b"retry-after",
        b"vary",
        b"allow",
    }
)
RESPONSE_ALLOWED_PREFIXES = (b"x-kubegate-", b"access-control-")


def request_id_headers(request_id: bytes) -> list[tuple[bytes, bytes]]:
    """The request id under the names the official SDKs read into ``response._request_id``: OpenAI's
    ``x-request-id`` and Anthropic's ``request-id`` (kubegate's own id, never the upstream's)."""
    return [(b"x-request-id", request_id), (b"request-id", request_id)]


def request_headers(headers: list[tuple[bytes, bytes]], call_id: str, key_id: str) -> list[tuple[bytes, bytes]]:
    """The headers LiteLLM sees for a tenant request: the allowed ones, our call id and a non-secret
    stand-in for the key (LiteLLM's auth plumbing expects one; the tenant was authenticated already)."""
    out = [(k, v) for k, v in headers if k in REQUEST_ALLOWED]
    out.append((b"x-litellm-call-id", call_id.encode()))
    out.append((b"authorization", b"Bearer kubegate-" + key_id.encode()))
    return out


def response_headers(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    return [
        (k, v) for k, v in headers if k.lower() in RESPONSE_ALLOWED or k.lower().startswith(RESPONSE_ALLOWED_PREFIXES)
    ]
