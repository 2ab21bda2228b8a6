"""The one callback kubegate registers with LiteLLM (``litellm_settings.callbacks``).

LiteLLM only looks for ``async_pre_call_hook`` and the streaming-iterator hook on the registered
object's own class, so every hook is defined right here on :class:`KubegateHooks`.

Life of a request context (keyed by LiteLLM's call id):
* ``async_pre_call_hook`` creates it; a refusal there is finalized at once (audit + metrics).
* success: ``async_log_success_event`` finalizes (tokens, cost, settle, audit, metrics);
  ``async_post_call_response_headers_hook`` marks it delivered; it leaves the registry when both happened.
* failure: ``async_post_call_failure_hook`` finalizes with the status the client gets.
Finalizing is idempotent (``ctx.finished``), so each request yields exactly one audit record.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncGenerator
from decimal import Decimal
from typing import Any

from litellm.integrations.custom_logger import CustomLogger
from litellm.proxy._types import ProxyException, UserAPIKeyAuth

from gateway_plugins import limits, metrics, pii, residency
from gateway_plugins.auth import TENANT_META
from gateway_plugins.context import RequestContext
from gateway_plugins.errors import openai_error
from gateway_plugins.runtime import Runtime, current_runtime, get_runtime

log = logging.getLogger("kubegate.hooks")

_FINAL, _DELIVERED = 1, 2


def _tenant_id(user: UserAPIKeyAuth) -> str | None:
    meta = user.metadata or {}
    return meta.get(TENANT_META) or user.team_id


def _status_of(exc: BaseException) -> int:
    for attr in ("status_code", "code"):
        value = getattr(exc, attr, None)
        try:
            status = int(value)  # ProxyException keeps the status as a string
        except (TypeError, ValueError):
            continue
        if 100 <= status <= 599:
            return status
    return 500


def _reason_of(exc: BaseException) -> str:
    return str(getattr(exc, "openai_code", None) or getattr(exc, "type", None) or "error")


def _usage_of(response: Any) -> tuple[int, int]:
    usage = getattr(response, "usage", None)
    if usage is None and isinstance(response, dict):
        usage = response.get("usage")
    if usage is None:
        return 0, 0
    get = usage.get if isinstance(usage, dict) else lambda k, d=0: getattr(usage, k, d)
    return int(get("prompt_tokens", 0) or 0), int(get("completion_tokens", 0) or 0)


class KubegateHooks(CustomLogger):
    def __init__(self) -> None:
        super().__init__()
        self._marks: dict[str, int] = {}

    # -- helpers ------------------------------------------------------------------------------

    def _finalize(self, rt: Runtime, ctx: RequestContext) -> None:
        """Write the audit record and metrics once per request."""
        if ctx.finished:
            return
        ctx.finished = True
        policy = rt.policy
        tenant = metrics.bounded_tenant(policy, ctx.tenant.id)
        outcome = ctx.status if ctx.status in metrics.OUTCOMES else "error"
        metrics.REQUESTS.labels(
            tenant,
            metrics.bounded_model(policy, ctx.requested_model),
            metrics.bounded_model(policy, ctx.served_model),
            metrics.bounded_region(policy, ctx.region),
            outcome,
        ).inc()
        metrics.observe_request(policy, ctx, outcome)
        if outcome == "refused":
            metrics.REFUSALS.labels(tenant, metrics.bounded_reason(ctx.decisions.get("refusal"))).inc()
        if ctx.prompt_tokens or ctx.completion_tokens:
            model = metrics.bounded_model(policy, ctx.served_model)
            metrics.TOKENS.labels(tenant, model, "prompt").inc(ctx.prompt_tokens)
            metrics.TOKENS.labels(tenant, model, "completion").inc(ctx.completion_tokens)
        if ctx.cost_usd:
            metrics.COST.labels(tenant, metrics.bounded_model(policy, ctx.served_model)).inc(ctx.cost_usd)
        try:
            record = rt.build_audit_record(ctx)
            if record:
                rt.audit.submit(record)
        except Exception:  # an audit bug must not turn a served answer into an error
            log.exception("building the audit record failed for request %s", ctx.request_id)

    def _mark(self, rt: Runtime, request_id: str, bit: int) -> None:
        marks = self._marks.get(request_id, 0) | bit
        if marks == _FINAL | _DELIVERED:
            self._marks.pop(request_id, None)
            rt.contexts.pop(request_id)
        else:
            self._marks[request_id] = marks
            if len(self._marks) > 100_000:  # leak guard for requests that never finish (client gone)
                self._marks.pop(next(iter(self._marks)))

    def _refuse(self, rt: Runtime, ctx: RequestContext, exc: BaseException) -> None:
        ctx.status = "refused"
        ctx.http_status = _status_of(exc)
        ctx.decisions.setdefault("refusal", _reason_of(exc))
        self._finalize(rt, ctx)
        rt.contexts.pop(ctx.request_id)
        self._marks.pop(ctx.request_id, None)

    # -- hooks --------------------------------------------------------------------------------

    async def async_pre_call_hook(
        self, user_api_key_dict: UserAPIKeyAuth, cache: Any, data: dict, call_type: Any
    ) -> dict:
        started = time.perf_counter()
        rt = await get_runtime()
        tenant = rt.policy.tenants.get(_tenant_id(user_api_key_dict) or "")
        if tenant is None:
            raise openai_error(401, "Invalid API key.", code="invalid_api_key", type_="authentication_error")
        request_id = data.get("litellm_call_id") or str(uuid.uuid4())
        data["litellm_call_id"] = request_id
        if rt.contexts.get(request_id) is not None:
            # Clients can set x-litellm-call-id; never let one request reach another's context.
            raise openai_error(400, "Duplicate request id.", code="duplicate_request_id", param="x-litellm-call-id")
        requested = str(data.get("model") or "")
        ctx = RequestContext(
            request_id=request_id,
            tenant=tenant,
            key_id=str(user_api_key_dict.api_key or ""),
            requested_model=requested,
            call_type=str(call_type),
            model=requested,
        )
        rt.contexts.put(ctx)
        try:
            if not tenant.allows_model(requested):
                raise openai_error(
                    403, f"Model {requested!r} is not allowed for this key.", code="model_not_allowed", param="model"
                )
            t = time.perf_counter()
            await limits.admit(ctx, data, rt)
            t2 = time.perf_counter()
            metrics.STAGE_LATENCY.labels("limits").observe(t2 - t)
            residency.route(ctx, data, rt.policy)
            t3 = time.perf_counter()
            metrics.STAGE_LATENCY.labels("residency").observe(t3 - t2)
            await pii.mask_request(ctx, data, str(call_type), rt)
            metrics.STAGE_LATENCY.labels("pii").observe(time.perf_counter() - t3)
        except ProxyException as exc:
            self._refuse(rt, ctx, exc)
            raise
        except Exception as exc:
            ctx.status = "error"
            ctx.http_status = 500
            ctx.decisions.setdefault("error", type(exc).__name__)
            self._finalize(rt, ctx)
            rt.contexts.pop(request_id)
            raise
        finally:
            metrics.STAGE_LATENCY.labels("pre_call").observe(time.perf_counter() - started)
        return data

    async def async_filter_deployments(
        self,
        model: str,
        healthy_deployments: list,
        messages: Any = None,
        request_kwargs: dict | None = None,
        parent_otel_span: Any = None,
    ) -> list:
        # Residency second line (owned by gateway_plugins.residency): runs on every router pick.
        return residency.filter_for_request(current_runtime(), model, healthy_deployments, request_kwargs)

    async def async_post_call_success_hook(self, data: dict, user_api_key_dict: UserAPIKeyAuth, response: Any) -> Any:
        rt = current_runtime()
        ctx = rt.contexts.get(data.get("litellm_call_id")) if rt else None
        if ctx is not None:
            started = time.perf_counter()
            pii.restore_response(ctx, response)
            metrics.STAGE_LATENCY.labels("post_call").observe(time.perf_counter() - started)
        return response

    async def async_post_call_streaming_iterator_hook(
        self, user_api_key_dict: UserAPIKeyAuth, response: Any, request_data: dict
    ) -> AsyncGenerator[Any, None]:
        rt = current_runtime()
        ctx = rt.contexts.get(request_data.get("litellm_call_id")) if rt else None
        if ctx is None:
            async for chunk in response:
                yield chunk
            return
        async for chunk in pii.restore_stream(ctx, response):
            yield chunk

    async def async_post_call_failure_hook(
        self,
        request_data: dict,
        original_exception: Exception,
        user_api_key_dict: UserAPIKeyAuth,
        traceback_str: str | None = None,
    ) -> Exception | None:
        rt = current_runtime()
        ctx = rt.contexts.get(request_data.get("litellm_call_id")) if rt else None
        if ctx is None or ctx.finished:
            return None
        ctx.http_status = _status_of(original_exception)
        try:
            # Release the budget/tpm reservation: a failed or refused call costs only what LiteLLM billed.
            await limits.settle(ctx, rt)
        except Exception:
            log.exception("releasing the budget reservation failed for request %s", ctx.request_id)
        if isinstance(original_exception, ProxyException) and ctx.status == "pending":
            self._refuse(rt, ctx, original_exception)
            return None
        ctx.status = metrics.failure_outcome(ctx.http_status)
        ctx.decisions.setdefault("error", type(original_exception).__name__)
        self._finalize(rt, ctx)
        self._mark(rt, ctx.request_id, _FINAL)
        if ctx.allowed_regions:
            # Every in-region deployment failed (retries and in-region fallbacks included): say so, and that
            # the request was kept in region, instead of passing on the last upstream's message.
            return residency.unavailable_after_failures(ctx, ctx.http_status or 503, original_exception)
        return None

    async def async_log_success_event(self, kwargs: dict, response_obj: Any, start_time: Any, end_time: Any) -> None:
        rt = current_runtime()
        ctx = rt.contexts.get(kwargs.get("litellm_call_id")) if rt else None
        if ctx is None or ctx.finished:
            return
        started = time.perf_counter()
        self._fill_from_log(rt, ctx, kwargs, response_obj)
        ctx.status = "success"
        ctx.http_status = ctx.http_status or 200
        try:
            await limits.settle(ctx, rt)
        except Exception:
            log.exception("settling the budget failed for request %s", ctx.request_id)
        self._finalize(rt, ctx)
        self._mark(rt, ctx.request_id, _FINAL)
        metrics.STAGE_LATENCY.labels("log").observe(time.perf_counter() - started)

    async def async_log_failure_event(self, kwargs: dict, response_obj: Any, start_time: Any, end_time: Any) -> None:
        # Only enriches: the proxy's failure hook finalizes with the status the client actually gets.
        rt = current_runtime()
        ctx = rt.contexts.get(kwargs.get("litellm_call_id")) if rt else None
        if ctx is not None and not ctx.finished:
            self._fill_from_log(rt, ctx, kwargs, None)

    async def async_post_call_response_headers_hook(
        self,
        data: dict,
        user_api_key_dict: UserAPIKeyAuth,
        response: object,
        request_headers: dict[str, str] | None = None,
        litellm_call_info: dict[str, object] | None = None,
    ) -> dict[str, str] | None:
        rt = current_runtime()
        request_id = data.get("litellm_call_id")
        ctx = rt.contexts.get(request_id) if rt else None
        if ctx is None:
            return None
        headers = dict(ctx.response_headers)
        if ctx.region is None:
            self._fill_from_hidden(rt, ctx, response)
        if ctx.region:
            headers.setdefault("x-kubegate-region", ctx.region)
        headers.setdefault("x-kubegate-request-id", ctx.request_id)
        self._mark(rt, ctx.request_id, _DELIVERED)
        return headers

    # -- response facts -----------------------------------------------------------------------

    def _fill_from_hidden(self, rt: Runtime, ctx: RequestContext, response: object) -> None:
        hidden = getattr(response, "_hidden_params", None) or {}
        model_id = (hidden.get("model_id") if isinstance(hidden, dict) else None) or None
        if model_id:
            ctx.deployment_id = str(model_id)
            meta = rt.policy.deployments.get(ctx.deployment_id)
            if meta is not None:
                ctx.region = meta.region
                ctx.served_model = ctx.served_model or meta.model

    def _fill_from_log(self, rt: Runtime, ctx: RequestContext, kwargs: dict, response_obj: Any) -> None:
        metrics.note_upstream_timing(ctx.request_id, kwargs)
        slo = kwargs.get("standard_logging_object") or {}
        litellm_params = kwargs.get("litellm_params") or {}
        model_info = litellm_params.get("model_info") or {}
        deployment_id = slo.get("model_id") or model_info.get("id")
        if deployment_id:
            ctx.deployment_id = str(deployment_id)
        meta = rt.policy.deployments.get(ctx.deployment_id or "")
        if meta is not None:
            ctx.region = meta.region
            ctx.served_model = meta.model
        else:
            ctx.served_model = ctx.served_model or slo.get("model_group") or ctx.route_group or ctx.model
        if response_obj is None:
            return
        prompt_tokens, completion_tokens = _usage_of(response_obj)
        if not (prompt_tokens or completion_tokens):
            prompt_tokens = int(slo.get("prompt_tokens") or 0)
            completion_tokens = int(slo.get("completion_tokens") or 0)
        ctx.prompt_tokens, ctx.completion_tokens = prompt_tokens, completion_tokens
        cost = kwargs.get("response_cost")
        if cost is None:
            cost = slo.get("response_cost")
        if not cost and meta is not None:
            cost = meta.input_cost_per_token * prompt_tokens + meta.output_cost_per_token * completion_tokens
        ctx.cost_usd = float(cost or Decimal(0))


proxy_handler_instance = KubegateHooks()


def _mount_routes() -> None:
    """Expose /metrics on the proxy app when LiteLLM imports this module while loading its config."""
    import sys

    server = sys.modules.get("litellm.proxy.proxy_server")
    app = getattr(server, "app", None) if server else None
    if app is not None:
        from gateway_plugins.settings import load_settings

        if load_settings().metrics_enabled:
            metrics.mount_metrics_route(app)


_mount_routes()
