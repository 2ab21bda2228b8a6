"""Tenant-key authentication for the LiteLLM proxy (``general_settings.custom_auth``).

LiteLLM calls this for every route that depends on its auth (LLM and admin routes alike) before
any database or master-key logic, so this function alone decides who gets in:

* inference routes (chat/completions, completions, embeddings, models): ``Authorization: Bearer
  <tenant key>``; the key's SHA-256 is looked up in the policy and compared in constant time;
* probes (``/health/liveliness``, ``/health/liveness``, ``/health/readiness``): open;
* everything else (LiteLLM's admin and UI routes): only with the admin key whose SHA-256 is in
  ``KUBEGATE_MASTER_KEY_SHA256``; with none configured they are refused outright.

The ``UserAPIKeyAuth`` handed back never carries the raw key: ``api_key`` is the key id (a hash
prefix), ``user_id``/``team_id`` are the tenant id, so every later hook knows the tenant.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import time
import uuid

from litellm.proxy._types import LitellmUserRoles, UserAPIKeyAuth

from gateway_plugins import litellm_fixes, metrics
from gateway_plugins.context import RequestContext
from gateway_plugins.errors import openai_error
from gateway_plugins.policy.schema import Tenant, key_id_for
from gateway_plugins.runtime import Runtime, get_runtime

log = logging.getLogger("kubegate.auth")
litellm_fixes.apply()

TENANT_META = "kubegate_tenant"

PROBE_ROUTES = frozenset({"/health/liveliness", "/health/liveness", "/health/readiness"})
# Inference routes a tenant key may call; LiteLLM's admin API is not among them.
_TENANT_ROUTE = re.compile(
    r"^(?:/v1)?(?:/engines/[^/]+|/openai/deployments/[^/]+)?"
    r"/(?:chat/completions|completions|embeddings|models(?:/[^/]+)?)$"
)


def is_tenant_route(route: str) -> bool:
    return bool(_TENANT_ROUTE.match(route))


def _bearer(request_headers: object, api_key: str | None) -> str:
    key = (api_key or "").strip()
    if key.lower().startswith("bearer "):
        key = key[7:].strip()
    return key


def _unauthorized(message: str, reason: str) -> Exception:
    metrics.AUTH_FAILURES.labels(reason).inc()
    return openai_error(401, message, code="invalid_api_key", type_="authentication_error")


# Refused before any tenant is known: audit records carry this id, never anything from the key itself
# beyond the usual short hash prefix.
UNAUTHENTICATED = Tenant(id="unauthenticated")


def _audit_refusal(rt: Runtime, route: str, digest: str | None, status: int, reason: str) -> None:
    """Auth refusals happen before any hook runs, so they are audited here (one record per request)."""
    ctx = RequestContext(
        request_id=str(uuid.uuid4()),
        tenant=UNAUTHENTICATED,
        key_id=key_id_for(digest) if digest else "",
        requested_model="",
        call_type=route,
        status="refused",
        http_status=status,
    )
    ctx.decisions["refusal"] = reason
    try:
        rt.audit.submit(rt.build_audit_record(ctx))
    except Exception:  # auditing must never turn a 401 into a 500
        log.exception("auditing an auth refusal failed")


def _route_of(request: object) -> str:
    url = getattr(request, "url", None)
    return getattr(url, "path", "") or ""


async def user_api_key_auth(request: object, api_key: str | None) -> UserAPIKeyAuth:
    started = time.perf_counter()
    try:
        return await _authenticate(request, api_key)
    finally:
        metrics.STAGE_LATENCY.labels("auth").observe(time.perf_counter() - started)


async def _authenticate(request: object, api_key: str | None) -> UserAPIKeyAuth:
    route = _route_of(request)
    if route in PROBE_ROUTES:
        return UserAPIKeyAuth(user_role=LitellmUserRoles.INTERNAL_USER_VIEW_ONLY, api_key="probe")
    rt = await get_runtime()
    raw = _bearer(None, api_key)
    if not raw:
        _audit_refusal(rt, route, None, 401, "missing_api_key")
        raise _unauthorized("Missing API key: send 'Authorization: Bearer <key>'.", "missing")
    digest = hashlib.sha256(raw.encode()).hexdigest()

    if not is_tenant_route(route):
        expected = rt.settings.master_key_sha256
        if expected is None:
            # No admin key configured: LiteLLM's admin API stays closed rather than open.
            metrics.AUTH_FAILURES.labels("admin_route").inc()
            _audit_refusal(rt, route, digest, 403, "route_not_allowed")
            raise openai_error(
                403, f"Route {route} is not available on this gateway.", code="route_not_allowed", type_="auth_error"
            )
        if not hmac.compare_digest(digest, expected):
            _audit_refusal(rt, route, digest, 401, "invalid_api_key")
            raise _unauthorized("Invalid admin key.", "invalid")
        return UserAPIKeyAuth(api_key=f"admin-{key_id_for(digest)}", user_role=LitellmUserRoles.PROXY_ADMIN)

    tenant = rt.policy.tenant_for_key_hash(digest)
    # The dict lookup finds the candidate; the constant-time compare is the actual check.
    now = time.time()  # a rotated-out key stops at its grace period's end, whatever the policy revision
    if tenant is None or not any(hmac.compare_digest(k.sha256, digest) and k.valid_at(now) for k in tenant.keys):
        _audit_refusal(rt, route, digest, 401, "invalid_api_key")
        raise _unauthorized("Invalid API key.", "invalid")
    return UserAPIKeyAuth(
        api_key=key_id_for(digest),
        token=key_id_for(digest),
        key_alias=tenant.id,
        user_id=tenant.id,
        team_id=tenant.id,
        user_role=LitellmUserRoles.INTERNAL_USER,
        metadata={TENANT_META: tenant.id},
    )
