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
from collections.abc import AsyncGenerator
from decimal import Decimal
from typing import Any

from litellm.integrations.custom_logger import CustomLogger
from litellm.proxy._types import ProxyException, UserAPIKeyAuth

from gateway_plugins import answers, client_left, limits, metrics, pii, residency, tracing, upstream_errors
from gateway_plugins.auth import TENANT_META
from gateway_plugins.context import RequestContext
from gateway_plugins.errors import DETAIL_CODE, kubegate_code, openai_error, replacement_error
from gateway_plugins.outcome import finalize
from gateway_plugins.runtime import Runtime, current_runtime, get_runtime

log = logging.getLogger("kubegate.hooks")


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


def _is_upstream_auth_failure(exc: BaseException) -> bool:
    """The upstream refused the platform's credentials. Tenants never authenticate to the upstream, so any
    401/403 that reaches the failure hook past kubegate's own refusals is about the platform's provider key
    (LiteLLM does not always map it to ``AuthenticationError``: an OpenAI-compatible 401 can arrive as a
    ``BadRequestError`` carrying status 401)."""
    import litellm

    return isinstance(exc, (litellm.AuthenticationError, litellm.PermissionDeniedError)) or _status_of(exc) in (
        401,
        403,
    )


def _usage_of(response: Any) -> tuple[int, int]:
    usage = getattr(response, "usage", None)
    if usage is None and isinstance(response, dict):
        usage = response.get("usage")
    if usage is None:
        return 0, 0
    get = usage.get if isinstance(usage, dict) else lambda k, d=0: getattr(usage, k, d)
    # Chat-style usage, or the Responses / Anthropic Messages style (input_tokens, output_tokens).
    prompt = get("prompt_tokens", 0) or get("input_tokens", 0)
    completion = get("completion_tokens", 0) or get("output_tokens", 0)
    return int(prompt or 0), int(completion or 0)


class KubegateHooks(CustomLogger):
    # -- helpers ------------------------------------------------------------------------------

    def _done(self, rt: Runtime, ctx: RequestContext) -> None:
        """Finalize; the context leaves the registry once the front door has also seen the response end."""
        finalize(rt, ctx)
        if ctx.response_done:
            rt.contexts.pop(ctx.request_id)

    def _refuse(self, rt: Runtime, ctx: RequestContext, exc: BaseException) -> None:
        ctx.status = "refused"
        ctx.http_status = _status_of(exc)
        ctx.decisions.setdefault("refusal", _reason_of(exc))
        ctx.error_code = kubegate_code(exc)
        self._done(rt, ctx)

    # -- hooks --------------------------------------------------------------------------------

    async def async_pre_call_hook(
        self, user_api_key_dict: UserAPIKeyAuth, cache: Any, data: dict, call_type: Any
    ) -> dict:
        started = time.perf_counter()
        rt = await get_runtime()
        # The front door created the context under the call id it chose; a request without one did not
        # come through it.
        ctx = rt.contexts.get(data.get("litellm_call_id"))
        if ctx is None or ctx.tenant.id != _tenant_id(user_api_key_dict) or ctx.contract is None:
            raise openai_error(401, "Invalid API key.", code="invalid_api_key", type_="authentication_error")
        if ctx.status != "pending":
            raise openai_error(400, "Duplicate request id.", code="duplicate_request_id")
        requested = str(data.get("model") or "")
        ctx.requested_model = ctx.model = requested
        try:
            if not ctx.tenant.allows_model(requested):
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
            try:
                await pii.mask_request(ctx, data, str(call_type), rt)
                ctx.upstream_data = data
            finally:
                if ctx.trace is not None:
                    ctx.trace.pii = (t3, time.perf_counter())
            metrics.STAGE_LATENCY.labels("pii").observe(time.perf_counter() - t3)
        except ProxyException as exc:
            await self._release(rt, ctx)
            self._refuse(rt, ctx, exc)
            raise
        except Exception as exc:
            await self._release(rt, ctx)
            ctx.status = "error"
            ctx.http_status = 500
            ctx.decisions.setdefault("error", type(exc).__name__)
            self._done(rt, ctx)
            raise
        finally:
            metrics.STAGE_LATENCY.labels("pre_call").observe(time.perf_counter() - started)
        return data

    async def _release(self, rt: Runtime, ctx: RequestContext) -> None:
        """A request refused after its reservation was made (residency, PII) releases it at once."""
        try:
            ctx.status = "refused"
            await limits.settle(ctx, rt)
        except Exception:
            log.exception("releasing the budget reservation failed for request %s", ctx.request_id)

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
            answers.official(ctx.call_type, ctx.request_id, response)
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
        async for chunk in answers.official_stream(ctx.call_type, ctx.request_id, pii.restore_stream(ctx, response)):
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
        if isinstance(original_exception, ProxyException) and ctx.status == "pending":
            await self._release(rt, ctx)
            self._refuse(rt, ctx, original_exception)
            return None
        ctx.status = metrics.failure_outcome(ctx.http_status)
        ctx.decisions.setdefault("error", type(original_exception).__name__)
        try:
            # Release the budget/tpm reservation: a failed call costs only what LiteLLM billed.
            await limits.settle(ctx, rt)
        except Exception:
            log.exception("releasing the budget reservation failed for request %s", ctx.request_id)
        replacement = None
        if _is_upstream_auth_failure(original_exception):
            # The platform's own provider credential was refused: not the tenant's fault, and not a 401 that
            # would tell the tenant its key is wrong.
            ctx.http_status = 502
            ctx.decisions["error"] = "upstream_auth_failed"
            replacement = replacement_error(
                502, "the gateway's upstream credentials were refused by the provider", code="upstream_auth_failed"
            )
        elif ctx.allowed_regions:
            # Every in-region deployment failed (retries and in-region fallbacks included): say so, and that
            # the request was kept in region, instead of passing on the last upstream's message.
            replacement = residency.unavailable_after_failures(ctx, ctx.http_status or 503, original_exception)
        else:
            # kubegate's code and the provider's words, never LiteLLM's text naming groups and deployments.
            replacement = upstream_errors.for_tenant(ctx.http_status or 500, original_exception)
        # The audit record and metrics name no served model for an answer no upstream gave.
        ctx.served_model = None
        if replacement is not None:
            # LiteLLM's /v1/messages error path drops an error's headers: the front door adds them back.
            ctx.response_headers.update(getattr(replacement, "headers", None) or {})
            detail = getattr(replacement, "detail", None) or {}
            ctx.error_code = detail.get(DETAIL_CODE)
            ctx.error_message = detail.get("error") if isinstance(detail.get("error"), str) else None
        self._done(rt, ctx)
        return replacement

    async def async_log_success_event(self, kwargs: dict, response_obj: Any, start_time: Any, end_time: Any) -> None:
        rt = current_runtime()
        ctx = rt.contexts.get(kwargs.get("litellm_call_id")) if rt else None
        if ctx is None or ctx.finished:
            return
        if client_left.applies(ctx):
            # LiteLLM's bill of a stream it cancelled depends on what it had read by then: not the charge.
            await client_left.end(rt, ctx)
            return
        started = time.perf_counter()
        self._fill_from_log(rt, ctx, kwargs, response_obj)
        # A client that left mid-stream got part of the answer, whatever LiteLLM reports.
        ctx.status = "incomplete" if ctx.decisions.get("client") == "disconnected" else "success"
        ctx.http_status = ctx.http_status or 200
        try:
            await limits.settle(ctx, rt)
        except Exception:
            log.exception("settling the budget failed for request %s", ctx.request_id)
        if ctx.contract is not None and not ctx.response_done:
            # LiteLLM reports a stream as soon as it stops reading it, a client leaving included: the front
            # door finalizes once the answer has ended, with whether the client received all of it.
            ctx.reported = True
        else:
            self._done(rt, ctx)
        metrics.STAGE_LATENCY.labels("log").observe(time.perf_counter() - started)

    async def async_pre_call_deployment_hook(self, kwargs: dict, call_type: Any) -> dict | None:
        """Each attempt (first try, retry, fallback) names its deployment here: the last one is the one that
        served, which Anthropic /v1/messages answers (plain dicts, no hidden params) do not say otherwise."""
        rt = current_runtime()
        ctx = rt.contexts.get(kwargs.get("litellm_call_id")) if rt else None
        if ctx is not None and not ctx.finished:
            info = kwargs.get("model_info") or {}
            meta = rt.policy.deployments.get(str(info.get("id") or "")) if isinstance(info, dict) else None
            if meta is not None:
                ctx.deployment_id, ctx.region = str(info["id"]), meta.region
        return None

    async def async_log_failure_event(self, kwargs: dict, response_obj: Any, start_time: Any, end_time: Any) -> None:
        # Only enriches: the proxy's failure hook finalizes with the status the client actually gets.
        rt = current_runtime()
        ctx = rt.contexts.get(kwargs.get("litellm_call_id")) if rt else None
        if ctx is None or ctx.finished:
            return
        failed = ((kwargs.get("litellm_params") or {}).get("model_info") or {}).get("id")
        if ctx.deployment_id and failed and str(failed) != ctx.deployment_id:
            return  # a later attempt (retry, fallback) has started on another deployment: keep its facts
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
        # Always from this response: a failed first try (retries, fallbacks) may have set another region.
        self._fill_from_hidden(rt, ctx, response)
        if ctx.region:
            headers.setdefault("x-kubegate-region", ctx.region)
        if ctx.fallback_models is not None and ctx.region:
            # A cost-routed request: the public model of the deployment that served (the candidate chosen, or a
            # fallback of it; ``served_model`` may still name a failed first try).
            served = rt.policy.deployments.get(ctx.deployment_id or "")
            headers.setdefault("x-kubegate-model", served.model if served is not None else ctx.model)
        headers.setdefault("x-kubegate-request-id", ctx.request_id)
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
        if ctx.trace is not None:
            tracing.note_upstream(ctx.trace, kwargs)
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


def _install() -> None:
    """Put the front door around the proxy app when LiteLLM imports this module while loading its config,
    and serve /metrics on its own port (never on the tenant port)."""
    from gateway_plugins.contract.front_door import install_on_proxy
    from gateway_plugins.metrics_server import serve_metrics_from_settings

    install_on_proxy()
    serve_metrics_from_settings()


_install()
