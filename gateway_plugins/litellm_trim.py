"""Per-request work of LiteLLM's proxy that cannot matter in kubegate's proxy, removed once at start-up (issue #22).

Applied by the runtime's start (the first request, once the proxy has built its Router and registered its
callbacks), never per request, and only where the work is inert for kubegate's configuration:

* LiteLLM's parallel request limiter (``_PROXY_MaxParallelRequestsHandler_v3``) enforces limits carried by the
  caller's ``UserAPIKeyAuth`` (key, team, user, end user, organisation, project, agent) and keeps their counters
  after every call; its per-key model budget limiter (``_PROXY_VirtualKeyModelMaxBudgetLimiter``) likewise.
  kubegate's custom auth builds every identity (tenants, the admin key, probes) and never sets one of those
  limits, and there is no database for virtual keys: they count for nothing. They are left in place when another
  custom auth or a database is configured.
* The Router tracks each deployment's TPM/RPM twice per call (right after the call and again in its success
  callback), and each time builds the deployment and its model info (a deep copy of the cost map entry) only to
  find no tpm/rpm/itpm/otpm limit to track. Which deployments have one is worked out once per deployment entry
  and model group, with LiteLLM's own test; calls to the others stop there. The success counts the Router's
  cooldowns read are kept (they do not depend on limits).

kubegate's tenant limits, budgets and cost (``response_cost`` from LiteLLM's cost map) use none of this. What
LiteLLM settings can switch off is switched off by the config kubegate ships (``policy.proxy_defaults``).
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from gateway_plugins import metrics

log = logging.getLogger("kubegate")

KUBEGATE_AUTH = "gateway_plugins.auth.user_api_key_auth"
# What was removed or wrapped, by name (for a debugging session; /metrics lists what still runs).
trimmed: dict[str, object] = {}


def _callback_lists() -> list[list]:
    import litellm

    lists = [litellm.callbacks, litellm.success_callback, litellm.failure_callback]
    lists += [litellm._async_success_callback, litellm._async_failure_callback]
    return [cbs for cbs in lists if isinstance(cbs, list)]


def limiter_is_inert(general_settings: dict, prisma_client: Any) -> bool:
    """True when every caller's identity comes from kubegate's auth and no database holds keys with limits."""
    return general_settings.get("custom_auth") == KUBEGATE_AUTH and prisma_client is None


def _key_limiters() -> tuple[type, ...]:
    from litellm.proxy.hooks.model_max_budget_limiter import _PROXY_VirtualKeyModelMaxBudgetLimiter
    from litellm.proxy.hooks.parallel_request_limiter_v3 import _PROXY_MaxParallelRequestsHandler_v3

    return (_PROXY_MaxParallelRequestsHandler_v3, _PROXY_VirtualKeyModelMaxBudgetLimiter)


def drop_inert_key_limiters(proxy_server: Any) -> bool:
    """Take LiteLLM's per-key limiters off every callback list when they can limit nothing; True if done."""
    if not limiter_is_inert(proxy_server.general_settings or {}, proxy_server.prisma_client):
        return False
    limiters = _key_limiters()
    removed = False
    for callbacks in _callback_lists():
        for callback in [cb for cb in callbacks if isinstance(cb, limiters)]:
            callbacks.remove(callback)
            trimmed[type(callback).__name__] = type(callback)
            removed = True
    return removed


def _has_usage_limits(router: Any, deployment_id: str, model_group: str) -> bool | None:
    """LiteLLM's own test in ``Router._increment_deployment_usage``: None when the deployment is unknown."""
    from litellm.router_utils.pre_call_checks.io_token_rate_limit_check import deployment_has_io_token_limits

    info = router.get_deployment(model_id=deployment_id)
    if info is None:
        return None
    model_info = router.get_router_model_info(deployment=info, received_model_name=model_group)
    limits = (
        info.get("tpm", None),
        info.get("rpm", None),
        info.litellm_params.tpm,
        info.litellm_params.rpm,
        model_info.get("tpm", None),
        model_info.get("rpm", None),
    )
    return any(limit is not None for limit in limits) or deployment_has_io_token_limits(info.model_dump())


def _deployment_entry(router: Any, deployment_id: str) -> object | None:
    index = router.model_id_to_deployment_index_map.get(deployment_id)
    return router.model_list[index] if index is not None and index < len(router.model_list) else None


def skip_untracked_deployment_usage(router: Any) -> bool:
    """Make the Router's usage tracking stop at once for deployments without limits; True if installed."""
    import litellm

    if router is None or "_increment_deployment_usage" in vars(router):
        return False
    original = router._increment_deployment_usage
    # (deployment id, model group) -> (its model_list entry, the cost map) it was found to have no limits with:
    # a replaced entry or a reloaded cost map is looked at again.
    unlimited: dict[tuple[str, str], tuple[object, object]] = {}

    async def increment_deployment_usage(*, deployment_id: str, model_group: str, **rest: Any) -> str | None:
        key = (deployment_id, model_group)
        entry, cost_map = _deployment_entry(router, deployment_id), litellm.model_cost
        known = unlimited.get(key)
        if entry is not None and known is not None and known[0] is entry and known[1] is cost_map:
            return None
        try:
            has_limits = _has_usage_limits(router, deployment_id, model_group)
        except Exception:  # LiteLLM's own call below raises it again, where its callers expect it
            has_limits = True
        if has_limits is False and entry is not None:
            unlimited[key] = (entry, cost_map)
            return None
        return await original(deployment_id=deployment_id, model_group=model_group, **rest)

    router._increment_deployment_usage = increment_deployment_usage
    trimmed["deployment_usage_tracking"] = original
    return True


def apply() -> None:
    """Trim the running proxy's per-request work (a no-op outside LiteLLM's proxy, e.g. in unit tests)."""
    proxy_server = sys.modules.get("litellm.proxy.proxy_server")
    if proxy_server is None:
        return
    try:
        if drop_inert_key_limiters(proxy_server):
            log.info("kubegate: LiteLLM's per-key limiters removed (no identity they see carries limits)")
        if skip_untracked_deployment_usage(getattr(proxy_server, "llm_router", None)):
            log.info("kubegate: the Router's TPM/RPM tracking skips deployments without limits")
    except Exception:  # a LiteLLM change must cost the saving, never the proxy
        log.exception("kubegate: trimming LiteLLM's per-request work failed; LiteLLM runs as configured")
    for name in success_callbacks():
        metrics.LITELLM_CALLBACKS.labels(name).set(1)


def callback_name(callback: object) -> str:
    if isinstance(callback, str):
        return callback
    function = getattr(callback, "__func__", callback)
    name = getattr(function, "__qualname__", None)
    return name if isinstance(name, str) else type(callback).__qualname__


def success_callbacks() -> list[str]:
    """The names of what LiteLLM calls after every successful call (its async list: the proxy's calls are async)."""
    import litellm

    return sorted({callback_name(cb) for cb in litellm._async_success_callback})
