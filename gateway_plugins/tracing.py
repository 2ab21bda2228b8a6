"""Optional OpenTelemetry traces of gateway requests: OTLP/HTTP, GenAI semantic conventions, never content.

On when the environment names an OTLP traces endpoint (``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` or
``OTEL_EXPORTER_OTLP_ENDPOINT``; the operator renders them from LLMGateway ``spec.tracing``), unless
``OTEL_SDK_DISABLED=true`` or ``OTEL_TRACES_EXPORTER=none``. Sampler, exporter headers and timeout, batching and
resource come from the SDK's own ``OTEL_*`` variables.

A request's spans are written when it ends (:func:`end`, called by ``outcome.finalize``), from what its context
recorded, with explicit start and end times. So nothing is open while a request runs, a refusal decided anywhere
gets its span like a served answer, and with tracing off a request costs one ``None`` test: no provider, no span
objects.

A span holds model names, token counts, ``max_tokens``, cost, tenant, outcome and refusal code, the number of PII
detections, region and the upstream's host. Never prompt or answer text, keys, PII values or client headers.

The provider is kubegate's own and never becomes the OTel global: LiteLLM's OTel code and any auto-instrumentation
read the global, and would send their spans, which can carry prompts, to the same collector.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from gateway_plugins import metrics

log = logging.getLogger("kubegate.tracing")

# gen_ai.operation.name of each tenant endpoint (gateway_plugins.contract.routes names); others are not GenAI calls.
OPERATIONS = {
    "chat_completions": "chat",
    "responses": "chat",
    "anthropic_messages": "chat",
    "completions": "text_completion",
    "embeddings": "embeddings",
}
DEFAULT_SERVICE_NAME = "kubegate-proxy"
# Refusal and error codes are kubegate's or LiteLLM's identifiers; anything else is not put on a span.
_CODE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")

_tracer: Any = None
_provider: Any = None


@dataclass(slots=True)
class Trace:
    """What one request's spans are built from, beyond its context (owned by this module)."""

    parent: Any = None  # the caller's W3C trace context, if it sent one
    pii: tuple[float, float] | None = None  # perf_counter bounds of PII masking
    upstream: tuple[float, float] | None = None  # epoch seconds of LiteLLM's upstream call (retries included)
    provider: str | None = None
    server_address: str | None = None
    server_port: int | None = None


def wanted(environ: Mapping[str, str] = os.environ) -> bool:
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return False
    return bool(environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"))


def configure(gateway: str, namespace: str, environ: Mapping[str, str] = os.environ) -> bool:
    """Set up this process's tracer when ``environ`` asks for traces (once; True when tracing is on). The SDK
    reads its other settings (exporter, sampler, batching) from the process environment."""
    global _tracer, _provider
    if _provider is not None:
        return True
    if not wanted(environ):
        return False
    try:
        _provider, _tracer = _build(gateway, namespace, environ)
    except Exception:  # traces are optional: never a reason not to serve
        log.exception("kubegate: OpenTelemetry tracing could not be set up; serving without traces")
        return False
    log.info("kubegate: OpenTelemetry tracing on (OTLP/HTTP)")
    return True


def _build(gateway: str, namespace: str, environ: Mapping[str, str]) -> tuple[Any, Any]:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    import gateway_plugins

    resource = Resource.create(
        {
            "service.name": environ.get("OTEL_SERVICE_NAME") or DEFAULT_SERVICE_NAME,
            "k8s.namespace.name": namespace,
            "kubegate.gateway": gateway,
        }
    )
    # The sampler comes from OTEL_TRACES_SAMPLER(_ARG); a full export queue drops spans, never blocks a request.
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider, provider.get_tracer("kubegate", gateway_plugins.__version__)


def shutdown() -> None:
    """Export what is queued and stop (blocking: call it off the event loop)."""
    global _tracer, _provider
    provider, _provider, _tracer = _provider, None, None
    if provider is not None:
        provider.shutdown()


def begin(headers: list[tuple[bytes, bytes]]) -> Trace | None:
    """A request's trace handle, with the caller's ``traceparent``/``tracestate`` as parent; None when off."""
    if _tracer is None:
        return None
    carrier = {k.decode(): v.decode("latin-1") for k, v in headers if k in (b"traceparent", b"tracestate")}
    if not carrier:
        return Trace()
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    # An invalid traceparent yields a context without a span: the request then starts a trace of its own.
    return Trace(parent=TraceContextTextMapPropagator().extract(carrier))


def note_upstream(trace: Trace, kwargs: dict) -> None:
    """Keep the upstream call's bounds, provider and host from LiteLLM's logging kwargs (the last attempt's)."""
    slo = kwargs.get("standard_logging_object") or {}
    start, end, _ = metrics.call_times(kwargs)
    if start is not None and end is not None and end >= start:
        trace.upstream = (start, end)
    params = kwargs.get("litellm_params") or {}
    provider = slo.get("custom_llm_provider") or params.get("custom_llm_provider") or kwargs.get("custom_llm_provider")
    if isinstance(provider, str) and _CODE.match(provider):
        trace.provider = provider
    api_base = params.get("api_base") or slo.get("api_base")
    if isinstance(api_base, str) and api_base:
        try:
            parts = urlsplit(api_base)
            # The host alone: an api_base may carry credentials in its user info or query.
            trace.server_address = parts.hostname
            trace.server_port = parts.port or {"https": 443, "http": 80}.get(parts.scheme)
        except ValueError:
            pass


def _code(value: Any) -> str:
    return value if isinstance(value, str) and _CODE.match(value) else "other"


def _attributes(ctx: Any, operation: str | None, outcome: str) -> dict[str, Any]:
    trace: Trace = ctx.trace
    attrs: dict[str, Any] = {
        "kubegate.request_id": ctx.request_id,
        "kubegate.tenant": str(getattr(ctx.tenant, "id", "") or ""),
        "kubegate.outcome": outcome,
        "kubegate.call_type": ctx.call_type,
    }
    if operation:
        attrs["gen_ai.operation.name"] = operation
    # requested_model is set only once the model is known to the policy: a client's arbitrary string never is.
    optional = {
        "gen_ai.request.model": ctx.requested_model,
        "kubegate.model": ctx.model if ctx.model != ctx.requested_model else None,
        "gen_ai.response.model": ctx.served_model,
        "gen_ai.request.max_tokens": getattr(ctx.contract, "max_tokens", None),
        "gen_ai.provider.name": trace.provider,
        "server.address": trace.server_address,
        "server.port": trace.server_port,
        "http.response.status_code": ctx.http_status,
        "kubegate.region": ctx.region,
    }
    attrs.update({k: v for k, v in optional.items() if v not in (None, "")})
    if ctx.prompt_tokens or ctx.completion_tokens:
        attrs["gen_ai.usage.input_tokens"] = int(ctx.prompt_tokens)
        attrs["gen_ai.usage.output_tokens"] = int(ctx.completion_tokens)
    if ctx.cost_usd:
        attrs["kubegate.cost_usd"] = float(ctx.cost_usd)
    detections = sum(int(n) for n in ctx.pii_counts.values())
    if detections or ctx.pii_counts:
        attrs["kubegate.pii.detections"] = detections
    refusal, error = ctx.decisions.get("refusal"), ctx.decisions.get("error")
    if outcome == "refused" and refusal is not None:
        attrs["kubegate.refusal.reason"] = _code(refusal)
    if outcome != "success":
        attrs["error.type"] = _code(ctx.error_code or refusal or error or outcome)
    return attrs


def end(ctx: Any, outcome: str) -> None:
    """Write the request's spans (called once, when its audit record is written); never raises."""
    trace, tracer = ctx.trace, _tracer
    if trace is None or tracer is None:
        return
    try:
        _write(tracer, ctx, trace, outcome)
    except Exception:  # a tracing bug must not turn a served answer into an error
        log.exception("writing the spans of request %s failed", ctx.request_id)


def _write(tracer: Any, ctx: Any, trace: Trace, outcome: str) -> None:
    from opentelemetry import trace as api

    now_ns, now = time.time_ns(), time.perf_counter()

    def wall_ns(perf: float) -> int:
        return now_ns - int((now - perf) * 1e9)

    operation = OPERATIONS.get(ctx.call_type)
    model = ctx.requested_model or ctx.model
    name = f"{operation} {model}" if operation and model else operation or f"kubegate {ctx.call_type}"
    span = tracer.start_span(
        name,
        context=trace.parent,
        kind=api.SpanKind.SERVER,
        attributes=_attributes(ctx, operation, outcome),
        start_time=wall_ns(ctx.started),
    )
    if span.is_recording():
        inside = api.set_span_in_context(span)
        if trace.pii is not None and getattr(ctx.tenant, "pii", None) is not None:
            child = tracer.start_span(
                "pii.mask",
                context=inside,
                kind=api.SpanKind.INTERNAL,
                attributes={"kubegate.pii.detections": sum(int(n) for n in ctx.pii_counts.values())},
                start_time=wall_ns(trace.pii[0]),
            )
            child.end(end_time=wall_ns(trace.pii[1]))
        if trace.upstream is not None:
            upstream = {
                "gen_ai.operation.name": operation,
                "gen_ai.response.model": ctx.served_model,
                "gen_ai.provider.name": trace.provider,
                "server.address": trace.server_address,
                "server.port": trace.server_port,
            }
            child = tracer.start_span(
                "upstream",
                context=inside,
                kind=api.SpanKind.CLIENT,
                attributes={k: v for k, v in upstream.items() if v is not None},
                start_time=int(trace.upstream[0] * 1e9),
            )
            child.end(end_time=int(trace.upstream[1] * 1e9))
        if outcome in ("error", "upstream_error") or (ctx.http_status or 0) >= 500:
            span.set_status(api.Status(api.StatusCode.ERROR))
    span.end(end_time=now_ns)
