"""Render one Gateway and the ModelRoutes/Tenants/Budgets that point at it.

Residency: every public model ``m`` gets a group ``m`` (all deployments) plus one group ``m@region``
per region holding only that region's deployments; fallbacks never leave a region, and public
groups only fall back to public groups.
"""

from __future__ import annotations

import hashlib
import json
import math
import weakref
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TypeVar

from gateway_operator.crd import models as crd
from gateway_operator.render.defaults import proxy_defaults
from gateway_operator.render.prices import bundled_cache_prices_known, bundled_max_output_tokens, bundled_price
from gateway_operator.render.problems import INVALID_SPEC, Problem, field_errors, object_key
from pydantic import BaseModel, ValidationError

from gateway_plugins.policy import schema as pol

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class RenderedGateway:
    litellm_config: dict[str, Any]
    policy: pol.Policy
    api_key_env: dict[str, crd.SecretKeyRef]
    model_list_checksum: str
    # ``Kind/name`` -> why it is (partly) left out, for its status: a Budget whose Tenant is missing, an invalid spec.
    problems: dict[str, Problem] = field(default_factory=dict)

    @property
    def skipped(self) -> dict[str, str]:
        return {key: p.message for key, p in self.problems.items()}


def deployment_id(route: str, deployment: str) -> str:
    return f"{route}/{deployment}"


def regional_group(model: str, region: str) -> str:
    return f"{model}@{region}"


def secret_env_var(ref: crd.SecretKeyRef) -> str:
    """Deterministic env var name for a Secret key; one var per distinct (secret, key)."""
    raw = f"{ref.name}_{ref.key}".upper()
    cleaned = "".join(c if c.isalnum() else "_" for c in raw)
    digest = hashlib.sha256(f"{ref.name}\0{ref.key}".encode()).hexdigest()[:6].upper()
    return f"KG_KEY_{cleaned}_{digest}"


def regional_deployment_id(route: crd.ModelRoute, dep: crd.ModelDeployment) -> str:
    return f"{deployment_id(route.metadata.name, dep.name)}@{dep.region}"


def _number(value: Decimal) -> float | int:
    return int(value) if value == value.to_integral_value() else float(value)


def _deployment_entry(route: crd.ModelRoute, dep: crd.ModelDeployment, group: str, env: dict[str, str]) -> dict:
    """``env``: litellm_params key -> the environment variable holding its Secret value."""
    params: dict[str, Any] = {
        "model": f"{dep.provider}/{dep.model}",
        "input_cost_per_token": _number(dep.input_cost_per_token),
        "output_cost_per_token": _number(dep.output_cost_per_token),
        # Per deployment: LiteLLM's Router ignores router_settings.model_group_timeouts; stream_timeout keeps
        # streams on the route's timeout even where a router-wide stream or request timeout is configured.
        "timeout": route.spec.timeout_seconds,
        "stream_timeout": route.spec.timeout_seconds,
        "weight": dep.weight,
    }
    if dep.api_base:
        params["api_base"] = dep.api_base
    params.update(dep.provider_params())
    for param, var in sorted(env.items()):
        params[param] = f"os.environ/{var}"
    if dep.rpm is not None:
        params["rpm"] = dep.rpm
    if dep.tpm is not None:
        params["tpm"] = dep.tpm
    info: dict[str, Any] = {"id": deployment_id(route.metadata.name, dep.name), "region": dep.region}
    if not bundled_cache_prices_known(dep.provider, dep.model):
        # LiteLLM bills cached input of a model its map does not price at 0. Cache reads cost at most the input
        # price and writes at most twice it (Anthropic's one-hour breakpoints) with every provider: charged so,
        # a budget is never under-charged.
        inp = dep.input_cost_per_token or Decimal(0)
        info["cache_read_input_token_cost"] = _number(inp)
        info["cache_creation_input_token_cost"] = _number(inp * 2)
    return {"model_name": group, "litellm_params": params, "model_info": info}


def _sorted(objs: Iterable[Any]) -> list[Any]:
    return sorted(objs, key=lambda o: o.metadata.name)


# Small frozen models many objects have the same value of (a Tenant's rate limits, a Budget's thresholds): one
# instance per value while any piece uses it, not one per object (about 0.4 KiB each at tens of thousands).
_SHARED: weakref.WeakValueDictionary[tuple[Any, ...], Any] = weakref.WeakValueDictionary()


def _shared(model: M) -> M:
    key = (type(model), *model.__dict__.items())
    return _SHARED.setdefault(key, model)


def retry_policy(num_retries: int) -> dict[str, int]:
    """A LiteLLM RetryPolicy: retry transient upstream failures, never a request the upstream refused as invalid."""
    transient = (
        "TimeoutErrorRetries",
        "RateLimitErrorRetries",
        "InternalServerErrorRetries",
        "ServiceUnavailableErrorRetries",
        "DefaultRetries",
    )
    refused = ("BadRequestErrorRetries", "AuthenticationErrorRetries", "ContentPolicyViolationErrorRetries")
    return {**dict.fromkeys(transient, num_retries), **dict.fromkeys(refused, 0)}


def usable_deployments(
    route: crd.ModelRoute, unavailable: Collection[tuple[str, str]]
) -> tuple[list[crd.ModelDeployment], list[crd.ModelDeployment]]:
    """(kept, left out): a deployment whose API-key Secret or key is missing is left out so the pod can start."""
    kept, left_out = [], []
    for dep in route.spec.deployments:
        missing = any((ref.name, ref.key) in unavailable for ref in dep.secret_refs().values())
        (left_out if missing else kept).append(dep)
    return kept, left_out


def _render_route(
    route: crd.ModelRoute, deployments: list[crd.ModelDeployment]
) -> tuple[list[dict], list[pol.DeploymentMeta], pol.ModelMeta, dict[str, crd.SecretKeyRef]]:
    """One route's model_list entries and policy metadata; ValidationError when the policy would refuse them."""
    name = route.spec.model_name
    entries: list[dict] = []
    deps_meta: list[pol.DeploymentMeta] = []
    api_key_env: dict[str, crd.SecretKeyRef] = {}
    regions: set[str] = set()
    for dep in deployments:
        env = {param: secret_env_var(ref) for param, ref in dep.secret_refs().items()}
        for param, ref in dep.secret_refs().items():
            api_key_env[env[param]] = ref
        entries.append(_deployment_entry(route, dep, name, env))
        regional = _deployment_entry(route, dep, regional_group(name, dep.region), env)
        # LiteLLM needs a unique model_info.id per model_list entry.
        regional["model_info"]["id"] = regional_deployment_id(route, dep)
        entries.append(regional)
        regions.add(dep.region)
        # Both entries of a deployment are known to the data plane by their own id.
        for dep_id in (deployment_id(route.metadata.name, dep.name), regional_deployment_id(route, dep)):
            deps_meta.append(
                pol.DeploymentMeta(
                    id=dep_id,
                    model=name,
                    region=dep.region,
                    input_cost_per_token=dep.input_cost_per_token,
                    output_cost_per_token=dep.output_cost_per_token,
                )
            )
    zero = all(d.input_cost_per_token == 0 and d.output_cost_per_token == 0 for d in deployments)
    meta = pol.ModelMeta(
        name=name,
        regional_groups={r: regional_group(name, r) for r in sorted(regions)},
        zero_price=zero,
        fallbacks=[f for f in route.spec.fallbacks if f != name],
        max_output_tokens=route_max_output_tokens(route, deployments),
        # Capped at the policy's bound: a reservation outliving a week-long call is released early, nothing worse.
        max_call_seconds=min(math.ceil(route.spec.timeout_seconds * (route.spec.num_retries + 1)), 7 * 86400),
    )
    return entries, deps_meta, meta, api_key_env


def route_max_output_tokens(route: crd.ModelRoute, deployments: Iterable[crd.ModelDeployment]) -> int:
    """The largest ``max_tokens`` the route admits (and what a budget reserves when a request sets none):
    ``spec.maxOutputTokens``, else the smallest output limit LiteLLM's bundled model map gives the upstream models
    of ``deployments`` (any of them may answer), else ``pol.DEFAULT_MAX_OUTPUT_TOKENS`` when the map does not know
    one of them."""
    if route.spec.max_output_tokens:
        return route.spec.max_output_tokens
    limits: list[int] = []
    for dep in deployments:
        limit = bundled_max_output_tokens(dep.provider, dep.model)
        if limit is None:
            return pol.DEFAULT_MAX_OUTPUT_TOKENS
        limits.append(limit)
    if not limits:
        return pol.DEFAULT_MAX_OUTPUT_TOKENS
    # Within the policy's own bound (far above any model's): a map entry never makes the policy refuse itself.
    return min(*limits, pol.MAX_OUTPUT_TOKENS_BOUND)


def priced(route: crd.ModelRoute, dep: crd.ModelDeployment) -> crd.ModelDeployment | None:
    """``dep`` with both prices set: its own, else LiteLLM's bundled price of its upstream model, else 0 on a
    ``free`` route; None when it has no price anywhere (a paid model must never be billed as free)."""
    inp, out = dep.input_cost_per_token, dep.output_cost_per_token
    if inp is None and out is None:
        found = bundled_price(dep.provider, dep.model)
        if found is None and not route.spec.free:
            return None
        inp, out = found or (Decimal(0), Decimal(0))
    return dep.model_copy(
        update={"input_cost_per_token": inp or Decimal(0), "output_cost_per_token": out or Decimal(0)}
    )


def render_models(
    routes: Iterable[crd.ModelRoute],
    unavailable: Collection[tuple[str, str]] = (),
    problems: dict[str, Problem] | None = None,
) -> tuple[list[dict], dict[str, Any], list[pol.ModelMeta], list[pol.DeploymentMeta], dict[str, crd.SecretKeyRef]]:
    """model_list, router_settings additions, ModelMeta, DeploymentMeta and api key env vars.

    ``unavailable``: (Secret, key) pairs that do not exist; deployments using one are left out, and a route with
    no deployment left is not served at all. A route that cannot be rendered (or whose model name an earlier route
    already serves) is left out and recorded in ``problems``.
    """
    problems = {} if problems is None else problems
    model_list: list[dict] = []
    metas: list[pol.ModelMeta] = []
    deps_meta: list[pol.DeploymentMeta] = []
    api_key_env: dict[str, crd.SecretKeyRef] = {}
    regions_of: dict[str, set[str]] = {}
    retry_policies: dict[str, dict[str, int]] = {}
    served_by: dict[str, str] = {}
    route_list: list[crd.ModelRoute] = []
    cost_routed: list[crd.ModelRoute] = []
    for route in _sorted(routes):
        name = route.spec.model_name
        if route.spec.candidates:
            cost_routed.append(route)  # rendered once every model it may pick is known
            continue
        deployments = []
        unpriced = []
        for dep in usable_deployments(route, unavailable)[0]:
            with_price = priced(route, dep)
            (deployments.append(with_price) if with_price is not None else unpriced.append(dep.name))
        if unpriced:
            problems[object_key("ModelRoute", route.metadata.name)] = Problem(
                "PriceUnknown",
                f"spec.deployments: {', '.join(unpriced)} left out: no inputCostPerToken/outputCostPerToken and no "
                "price in LiteLLM's price map for the upstream model (set spec.free for a free model)",
            )
        if not deployments:
            continue
        if name in served_by:
            problems[object_key("ModelRoute", route.metadata.name)] = Problem(
                "DuplicateModel", f"spec.modelName: {name!r} is already served by ModelRoute {served_by[name]!r}"
            )
            continue
        try:
            entries, route_deps, meta, env = _render_route(route, deployments)
        except ValidationError as exc:
            problems[object_key("ModelRoute", route.metadata.name)] = Problem(
                INVALID_SPEC, field_errors(exc, "policy model")
            )
            continue
        served_by[name] = route.metadata.name
        route_list.append(route)
        model_list.extend(entries)
        deps_meta.extend(route_deps)
        metas.append(meta)
        api_key_env.update(env)
        regions_of[name] = {d.region for d in deployments}
        for group in [name, *(regional_group(name, r) for r in regions_of[name])]:
            retry_policies[group] = retry_policy(route.spec.num_retries)

    fallbacks: list[dict[str, list[str]]] = []
    for route in route_list:
        name = route.spec.model_name
        public = [f for f in route.spec.fallbacks if f in regions_of and f != name]
        if public:
            fallbacks.append({name: public})
        for region in sorted(regions_of[name]):
            regional = [regional_group(f, region) for f in public if region in regions_of[f]]
            if regional:
                fallbacks.append({regional_group(name, region): regional})
    router = {"fallbacks": fallbacks, "model_group_retry_policy": retry_policies}
    by_name = {m.name: m for m in metas}
    for route in cost_routed:
        meta = _render_cost_routed(route, by_name, served_by, problems)
        if meta is not None:
            served_by[route.spec.model_name] = route.metadata.name
            metas.append(meta)
    return model_list, router, metas, deps_meta, api_key_env


def _render_cost_routed(
    route: crd.ModelRoute, served: Mapping[str, pol.ModelMeta], served_by: Mapping[str, str], problems: dict
) -> pol.ModelMeta | None:
    """A cost-routed model (``spec.candidates``): no deployments of its own, nothing in LiteLLM's model list; the data
    plane picks a candidate per request (gateway_plugins.autoroute). Candidates no route serves are left out."""
    key = object_key("ModelRoute", route.metadata.name)
    name = route.spec.model_name
    if name in served_by:
        problems[key] = Problem(
            "DuplicateModel", f"spec.modelName: {name!r} is already served by ModelRoute {served_by[name]!r}"
        )
        return None
    kept = [c for c in route.spec.candidates if c.model in served]
    missing = [c.model for c in route.spec.candidates if c.model not in served]
    if missing:
        problems[key] = Problem(
            "CandidateNotFound",
            f"spec.candidates: {', '.join(missing)} left out: no ModelRoute of this LLMGateway with deployments serves "
            "that model name",
        )
    if not kept:
        return None
    metas = [served[c.model] for c in kept]
    try:
        return pol.ModelMeta(
            name=name,
            candidates=[pol.QualityCandidate(model=c.model, tier=c.tier) for c in kept],
            # Any candidate may serve: a request may ask for what the largest accepts (smaller ones are then skipped).
            max_output_tokens=route.spec.max_output_tokens or max(m.max_output_tokens for m in metas),
            max_call_seconds=max(m.max_call_seconds for m in metas),
        )
    except ValidationError as exc:
        problems[key] = Problem(INVALID_SPEC, field_errors(exc, "policy model"))
        return None


def _key_refs(items: Sequence[str | pol.KeyRef]) -> list[pol.KeyRef]:
    """Sorted by hash, one per hash (a hash given twice keeps the entry without expiry: still current)."""
    refs: dict[str, pol.KeyRef] = {}
    for item in items:
        ref = item if isinstance(item, pol.KeyRef) else pol.KeyRef(sha256=item)
        known = refs.get(ref.sha256)
        if known is None or ref.not_after is None:
            refs[ref.sha256] = ref
    return [refs[h] for h in sorted(refs)]


def render_cache(spec: crd.TenantCacheSpec | None, defaults: crd.GatewayCacheSpec) -> pol.CachePolicy | None:
    if spec is None or not spec.enabled:
        return None
    return pol.CachePolicy(
        ttl_seconds=spec.ttl_seconds or defaults.ttl_seconds,
        max_entry_bytes=spec.max_entry_bytes or defaults.max_entry_bytes,
        allow_nonzero_temperature=spec.allow_non_zero_temperature,
        allow_tools=spec.allow_tools,
        skip_user_scoped=spec.skip_user_scoped,
    )


@dataclass(frozen=True, slots=True)
class TenantPiece:
    """One Tenant as its Gateway's policy needs it, rendered once per generation: the operator keeps this rather than
    the parsed Tenant (tens of thousands of them). ``policy`` is the Tenant's policy entry without what depends on
    other objects: its keys (from its key Secret), its PII and cache policies (they take the Gateway's defaults),
    which ``finish_tenant`` adds from ``pii`` and ``cache``."""

    gateway: str
    policy: pol.Tenant
    pii: crd.PiiSpec | None = None
    cache: crd.TenantCacheSpec | None = None

    @property
    def name(self) -> str:
        return self.policy.id


def tenant_piece(tenant: crd.Tenant) -> TenantPiece:
    spec = tenant.spec
    entry = pol.Tenant(
        id=tenant.metadata.name,
        keys=[],
        allowed_models=list(spec.allowed_models),
        allowed_regions=list(spec.allowed_regions),
        rate_limits=_shared(pol.RateLimits(rpm=spec.rate_limits.rpm, tpm=spec.rate_limits.tpm)),
        fail_open=spec.fail_open,
        hosted_tools=list(spec.hosted_tools),
        suspended=spec.suspended,
        not_after=math.ceil(spec.expires_at.timestamp()) if spec.expires_at is not None else None,
    )
    return TenantPiece(spec.gateway, entry, spec.pii, spec.cache)


def render_pii(spec: crd.PiiSpec | None, pii_model: str | None) -> pol.PiiPolicy | None:
    """``pii_model``: the Gateway's spec.piiModel, used when the Tenant names no pii.nlpModel."""
    if spec is None:
        return None
    entities = dict(spec.entities) if spec.entities else dict(pol.DEFAULT_PII_ENTITIES)
    return pol.PiiPolicy(
        entities=entities,
        score_threshold=spec.score_threshold,
        language=spec.language,
        languages=list(spec.languages),
        allow_list=list(spec.allow_list),
        restore=spec.restore,
        fail_open=spec.fail_open,
        allow_uninspectable_content=spec.allow_uninspectable_content,
        max_text_chars=spec.max_text_chars,
        timeout_ms=spec.timeout_ms,
        nlp_model=spec.nlp_model or pii_model or crd.LLMGatewaySpec().pii_model,
    )


def finish_tenant(
    piece: TenantPiece,
    key_hashes: Sequence[str | pol.KeyRef],
    pii_model: str | None = None,
    cache_defaults: crd.GatewayCacheSpec | None = None,
) -> pol.Tenant:
    """The Tenant's policy entry: ``piece`` with its keys, PII and cache. Each part added is a validated model, and
    ``pol.Tenant`` has no check across fields, so the copy is as valid as a Tenant built from scratch."""
    update: dict[str, Any] = {"keys": _key_refs(key_hashes)}
    if piece.pii is not None:
        update["pii"] = render_pii(piece.pii, pii_model)
    if piece.cache is not None:
        update["cache"] = render_cache(piece.cache, cache_defaults or crd.GatewayCacheSpec())
    return piece.policy.model_copy(update=update)


def render_tenant(
    tenant: crd.Tenant,
    key_hashes: Sequence[str | pol.KeyRef],
    pii_model: str | None = None,
    cache_defaults: crd.GatewayCacheSpec | None = None,
) -> pol.Tenant:
    """``pii_model``: the Gateway's spec.piiModel, used when the Tenant names no pii.nlpModel; ``cache_defaults``:
    the Gateway's spec.cache, for what the Tenant's cache leaves unset."""
    return finish_tenant(tenant_piece(tenant), key_hashes, pii_model, cache_defaults)


def render_budget(budget: crd.Budget) -> pol.Budget:
    spec = budget.spec
    return pol.Budget(
        name=budget.metadata.name,
        tenant=spec.tenant,
        limit_usd=spec.limit_usd,
        limit_tokens=spec.limit_tokens,
        period=spec.period,
        timezone=spec.timezone,
        thresholds=[_shared(pol.BudgetThreshold(percent=t.percent, action=t.action)) for t in spec.thresholds],
        downgrade=dict(spec.downgrade),
        fail_open=spec.fail_open,
    )


# Kind -> (the type of its piece, how an object of it becomes one). ModelRoutes have none: few, and read whole.
_PIECE_OF: dict[str, tuple[type, Callable[[Any], Any]]] = {
    "Tenant": (TenantPiece, tenant_piece),
    "Budget": (pol.Budget, render_budget),
}


def piece_of(kind: str, obj: Any) -> Any:
    """The piece the operator keeps of a parsed ``kind`` object (``reconcile.seen``); ValidationError when the
    policy refuses it."""
    return _PIECE_OF[kind][1](obj)


def model_list_checksum(model_list: list[dict], api_key_env: dict[str, crd.SecretKeyRef]) -> str:
    blob = json.dumps(
        {"model_list": model_list, "env": {k: v.model_dump() for k, v in api_key_env.items()}},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def _pieces(objects: Iterable[Any], kind: str, problems: dict[str, Problem]) -> list[Any]:
    """Each object's piece, by name (an object given as its piece is kept as is); one the policy refuses is left out
    and recorded in ``problems``."""
    piece_type, render = _PIECE_OF[kind]
    out: list[Any] = []
    for obj in objects:
        if not isinstance(obj, piece_type):
            try:
                obj = render(obj)
            except ValidationError as exc:
                problems[object_key(kind, obj.metadata.name)] = Problem(
                    INVALID_SPEC, field_errors(exc, f"policy {kind.lower()}")
                )
                continue
        out.append(obj)
    return sorted(out, key=lambda piece: piece.name)


def _gateway_of(tenant: crd.Tenant | TenantPiece) -> str:
    return tenant.gateway if isinstance(tenant, TenantPiece) else tenant.spec.gateway


def render_gateway(
    gateway: crd.LLMGateway,
    routes: Iterable[crd.ModelRoute],
    tenants: Iterable[crd.Tenant | TenantPiece],
    budgets: Iterable[crd.Budget | pol.Budget],
    *,
    tenant_key_hashes: Mapping[str, Sequence[str | pol.KeyRef]],
    revision: int,
    unavailable_secrets: Collection[tuple[str, str]] = (),
) -> RenderedGateway:
    """Everything the data plane of ``gateway`` needs; objects of other gateways are ignored.

    Tenants and Budgets are parsed objects, or their pieces as the operator keeps them (``TenantPiece``, and a
    Budget's policy entry, which depends on nothing else).

    ``unavailable_secrets``: (Secret, key) pairs known to be missing; see ``render_models``.
    """
    gw = gateway.metadata.name
    mine_routes = [r for r in routes if r.spec.gateway == gw]
    problems: dict[str, Problem] = {}
    for route in _sorted(mine_routes):
        left_out = usable_deployments(route, unavailable_secrets)[1]
        if left_out:
            problems[object_key("ModelRoute", route.metadata.name)] = Problem(
                "SecretNotFound",
                "; ".join(
                    f"deployment {d.name} left out: Secret {ref.name!r} key {ref.key!r} not found"
                    for d in left_out
                    for ref in d.secret_refs().values()
                    if (ref.name, ref.key) in unavailable_secrets
                ),
            )
    model_list, router_extra, metas, deps_meta, api_key_env = render_models(mine_routes, unavailable_secrets, problems)

    policy_tenants: list[pol.Tenant] = []
    key_owner: dict[str, str] = {}
    for piece in _pieces((t for t in tenants if _gateway_of(t) == gw), "Tenant", problems):
        key = object_key("Tenant", piece.name)
        hashes: list[str | pol.KeyRef] = []
        for h in tenant_key_hashes.get(piece.name, []):
            digest = h.sha256 if isinstance(h, pol.KeyRef) else h
            if key_owner.setdefault(digest, piece.name) == piece.name:
                hashes.append(h)
            else:
                problems[key] = Problem("KeyConflict", f"a key already belongs to Tenant {key_owner[digest]}")
        try:
            policy_tenants.append(finish_tenant(piece, hashes, gateway.spec.pii_model, gateway.spec.cache))
        except ValidationError as exc:
            problems[key] = Problem(INVALID_SPEC, field_errors(exc, "policy tenant"))
    known = {t.id for t in policy_tenants}

    policy_budgets: list[pol.Budget] = []
    for budget in _pieces(budgets, "Budget", problems):
        key = object_key("Budget", budget.name)
        if budget.tenant not in known:
            problems[key] = Problem(
                "TenantNotFound", f"spec.tenant: Tenant {budget.tenant!r} not rendered on LLMGateway {gw!r}"
            )
            continue
        policy_budgets.append(budget)

    policy = pol.Policy(
        gateway=gw,
        namespace=gateway.metadata.namespace,
        revision=revision,
        tenants=policy_tenants,
        budgets=policy_budgets,
        models=metas,
        deployments=deps_meta,
        limits=pol.RequestLimits(**gateway.spec.request_limits.model_dump()),
        cache_max_bytes=gateway.spec.cache.max_total_bytes,
        volume_discounts=[
            pol.VolumeDiscount(from_usd=t.from_usd, percent=t.percent) for t in gateway.spec.volume_discounts
        ],
    )

    sections = proxy_defaults()
    routing = next((r.spec.routing_strategy for r in _sorted(mine_routes)), "simple-shuffle")
    router_settings = {**sections.get("router_settings", {}), "routing_strategy": routing, **router_extra}
    config = {
        "model_list": model_list,
        "router_settings": router_settings,
        "litellm_settings": dict(sections.get("litellm_settings", {})),
        "general_settings": dict(sections.get("general_settings", {})),
    }
    return RenderedGateway(
        litellm_config=config,
        policy=policy,
        api_key_env=api_key_env,
        model_list_checksum=model_list_checksum(model_list, api_key_env),
        problems=problems,
    )
