"""Data-residency routing: a restricted tenant's request only ever reaches deployments in its regions.

First line: ``route`` rewrites ``data['model']`` to the regional group ``{model}@{region}`` of the first
allowed region that has one, with a fallback chain of in-region groups only (router-level fallbacks are
rendered per region too, so they cannot leave it either). Clients cannot send ``fallbacks``: the
request contract refuses the field.
Second line: ``filter_for_request`` drops every deployment whose region is not allowed. NOTE for
data-plane-core: ``KubegateHooks.async_filter_deployments`` (defined on the registered class itself,
LiteLLM looks only there) must call it; Router 1.103.7 calls that hook in ``_async_get_healthy_deployments``
for every deployment pick, retries and fallbacks included.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gateway_plugins import upstream_errors
from gateway_plugins.errors import openai_error, replacement_error

if TYPE_CHECKING:
    from gateway_plugins.context import RequestContext
    from gateway_plugins.policy.store import CompiledPolicy


def _unavailable(model: str, regions: tuple[str, ...]) -> Exception:
    return openai_error(
        503,
        f"no deployment of {model} in allowed regions [{', '.join(regions)}] is available",
        code="residency_unavailable",
        type_="service_unavailable",
    )


def unavailable_after_failures(ctx: RequestContext, status: int, upstream_error: BaseException) -> Exception:
    """The client's error when every deployment in the tenant's regions failed: same status, residency named."""
    regions = ", ".join(ctx.allowed_regions)
    return replacement_error(
        status,
        f"no deployment of {ctx.model} in allowed regions [{regions}] could serve the request "
        f"(last upstream status {status}); it was not sent to any other region",
        code="residency_unavailable",
        headers=upstream_errors.retry_after(upstream_error),
    )


def route(ctx: RequestContext, data: dict, policy: CompiledPolicy) -> None:
    """Rewrite ``data['model']`` to the in-region LiteLLM group(s) for ``ctx.model``.

    The fallback chain stays inside the tenant's regions: the model in each allowed region, then the
    model's own fallbacks in each allowed region. It is set per request only when there is more than one
    group; otherwise the router's rendered fallbacks (in-region by construction) keep running.
    """
    allowed = tuple(ctx.tenant.allowed_regions)
    ctx.allowed_regions = allowed
    if not allowed:
        ctx.route_group = ctx.model
        data["model"] = ctx.model
        if ctx.fallback_models is not None:
            # A cost-routed request: only the candidates its reservation covers, never the router's fallbacks.
            data["fallbacks"] = list(ctx.fallback_models)
        return
    meta = policy.models.get(ctx.model)
    if meta is None:
        ctx.decisions["residency"] = {"allowed": list(allowed), "result": "unavailable"}
        raise _unavailable(ctx.model, allowed)
    chain = [meta.regional_groups[r] for r in allowed if r in meta.regional_groups]
    if not chain:
        ctx.decisions["residency"] = {"allowed": list(allowed), "result": "unavailable"}
        raise _unavailable(ctx.model, allowed)
    fallbacks = meta.fallbacks if ctx.fallback_models is None else ctx.fallback_models
    for fallback in fallbacks:
        fb = policy.models.get(fallback)
        if fb is not None:
            chain += [fb.regional_groups[r] for r in allowed if r in fb.regional_groups]
    ctx.route_group = chain[0]
    data["model"] = chain[0]
    if len(chain) > 1 or ctx.fallback_models is not None:
        data["fallbacks"] = chain[1:]
    ctx.decisions["residency"] = {"allowed": list(allowed), "group": chain[0]}


def deployment_region(policy: CompiledPolicy, deployment: dict[str, Any]) -> str | None:
    info = deployment.get("model_info") or {}
    meta = policy.deployments.get(str(info.get("id", "")))
    return meta.region if meta is not None else info.get("region")


def filter_deployments(policy: CompiledPolicy, allowed: tuple[str, ...], deployments: list[dict]) -> list[dict]:
    """Second line: keep only deployments in an allowed region (all of them if unrestricted)."""
    if not allowed:
        return deployments
    return [d for d in deployments if deployment_region(policy, d) in allowed]


def check_deployment(policy: CompiledPolicy, ctx: RequestContext, deployment: dict) -> None:
    """Second line on the deployment actually chosen; raises ``residency_unavailable`` if out of region."""
    if ctx.allowed_regions and deployment_region(policy, deployment) not in ctx.allowed_regions:
        ctx.decisions["residency"] = {"allowed": list(ctx.allowed_regions), "result": "refused_out_of_region"}
        raise _unavailable(ctx.model, ctx.allowed_regions)


def filter_for_request(rt: Any, model: str, healthy_deployments: list, request_kwargs: dict | None) -> list:
    """Router hook body (``CustomLogger.async_filter_deployments``, called by Router 1.103.7 on every pick,
    retries and fallbacks included): drop out-of-region deployments; none left -> ``residency_unavailable``."""
    ctx = rt.contexts.get((request_kwargs or {}).get("litellm_call_id")) if rt is not None else None
    if ctx is None or not ctx.allowed_regions:
        return healthy_deployments
    kept = filter_deployments(rt.policy, ctx.allowed_regions, healthy_deployments)
    if not kept:
        ctx.decisions["residency"] = {"allowed": list(ctx.allowed_regions), "result": "unavailable"}
        raise _unavailable(ctx.model, ctx.allowed_regions)
    return kept
