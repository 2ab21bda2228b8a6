"""LiteLLM's custom auth (``general_settings.custom_auth``): hands LiteLLM the identity the front door set.

The front door (``gateway_plugins.contract.front_door``) authenticates every request before LiteLLM
sees it: tenant keys on contract routes, the admin key on everything else, probes open. This function
only maps that decision to LiteLLM's ``UserAPIKeyAuth``; a request that did not pass the front door
(nothing in its scope) is refused, so a routing surprise fails closed.

The ``UserAPIKeyAuth`` never carries the raw key: ``api_key`` is the key id (a hash prefix),
``user_id``/``team_id`` are the tenant id, so every later hook knows the tenant.
"""

from __future__ import annotations

import time

from litellm.proxy._types import LitellmUserRoles, UserAPIKeyAuth

from gateway_plugins import litellm_fixes, metrics
from gateway_plugins.context import RequestContext
from gateway_plugins.contract.front_door import ADMIN, SCOPE_KEY, install_on_proxy
from gateway_plugins.contract.routes import PROBE_ROUTES
from gateway_plugins.errors import openai_error

litellm_fixes.apply()
# Whichever of our modules LiteLLM imports first puts the front door in place.
install_on_proxy()

TENANT_META = "kubegate_tenant"


def _scope(request: object) -> dict:
    return getattr(request, "scope", None) or {}


async def user_api_key_auth(request: object, api_key: str | None) -> UserAPIKeyAuth:
    started = time.perf_counter()
    try:
        return _identity(request)
    finally:
        metrics.STAGE_LATENCY.labels("auth").observe(time.perf_counter() - started)


def identity(ctx: RequestContext) -> UserAPIKeyAuth:
    """The identity of a tenant request the front door admitted (also what the fast path hands the hooks)."""
    tenant = ctx.tenant
    return UserAPIKeyAuth(
        api_key=ctx.key_id,
        token=ctx.key_id,
        key_alias=tenant.id,
        user_id=tenant.id,
        team_id=tenant.id,
        user_role=LitellmUserRoles.INTERNAL_USER,
        metadata={TENANT_META: tenant.id},
    )


def _identity(request: object) -> UserAPIKeyAuth:
    scope = _scope(request)
    ident = scope.get(SCOPE_KEY)
    if isinstance(ident, RequestContext):
        return identity(ident)
    if ident == ADMIN:
        return UserAPIKeyAuth(api_key="admin", user_role=LitellmUserRoles.PROXY_ADMIN)
    if scope.get("path") in PROBE_ROUTES:
        return UserAPIKeyAuth(user_role=LitellmUserRoles.INTERNAL_USER_VIEW_ONLY, api_key="probe")
    raise openai_error(401, "Invalid API key.", code="invalid_api_key", type_="authentication_error")
