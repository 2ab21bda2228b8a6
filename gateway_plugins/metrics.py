"""Prometheus metrics of the data plane, served on their own port (``gateway_plugins.metrics_server``).

Label values come only from bounded sets: tenant ids and model names known to the policy in force,
anything else becomes ``other``. With several workers set ``PROMETHEUS_MULTIPROC_DIR`` (the metrics
port then serves every worker's files added up).
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

if TYPE_CHECKING:
    from gateway_plugins.context import RequestContext
    from gateway_plugins.policy.schema import Budget
    from gateway_plugins.policy.store import CompiledPolicy

OTHER = "other"
# client_error: the upstream (or LiteLLM) rejected the client's request (4xx other than 408/429); not a provider fault.
OUTCOMES = frozenset({"success", "refused", "upstream_error", "client_error", "error", "incomplete"})
STAGES = ("auth", "pre_call", "limits", "residency", "pii", "post_call", "log")

REQUESTS = Counter(
    "kubegate_requests_total",
    "Requests by tenant, requested model, served model, region and outcome.",
    ["tenant", "requested_model", "served_model", "region", "outcome"],
)
# `served_model` is the one label name for the model that answered, on every metric that has it.
TOKENS = Counter(
    "kubegate_tokens_total", "Tokens by tenant, served model and direction.", ["tenant", "served_model", "kind"]
)
COST = Counter("kubegate_cost_usd_total", "Cost in USD by tenant and served model.", ["tenant", "served_model"])
# Request latencies in seconds; buckets span a cached/echo answer (ms) to a long generation (minutes).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
REQUEST_SECONDS = Histogram(
    "kubegate_request_duration_seconds",
    "End-to-end time of a request in the proxy (auth to last byte handed to LiteLLM), by tenant, served model "
    "and outcome.",
    ["tenant", "served_model", "outcome"],
    buckets=LATENCY_BUCKETS,
)
UPSTREAM_SECONDS = Histogram(
    "kubegate_upstream_duration_seconds",
    "Time the upstream provider took (LiteLLM's call start to end, retries included), by tenant and served model.",
    ["tenant", "served_model"],
    buckets=LATENCY_BUCKETS,
)
TTFT_SECONDS = Histogram(
    "kubegate_time_to_first_token_seconds",
    "Time from the upstream call's start to its first streamed token, by tenant and served model (streams only).",
    ["tenant", "served_model"],
    buckets=LATENCY_BUCKETS,
)
REFUSALS = Counter(
    "kubegate_refusals_total", "Requests refused by kubegate, by tenant and reason.", ["tenant", "reason"]
)
STAGE_LATENCY = Histogram(
    "kubegate_plugin_seconds",
    "Time spent in kubegate plugin code per stage.",
    ["stage"],
    buckets=(0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)
# The same Redis for every worker and pod: the largest report is the current one.
REDIS_USED_MEMORY = Gauge(
    "kubegate_redis_used_memory_bytes",
    "Memory the Gateway's Redis uses (INFO memory used_memory), as last read by this proxy.",
    multiprocess_mode="livemax",
)
REDIS_MAXMEMORY = Gauge(
    "kubegate_redis_maxmemory_bytes",
    "The Gateway's Redis maxmemory (writes are refused past it with noeviction); 0: no limit.",
    multiprocess_mode="livemax",
)
FAST_PATH_REQUESTS = Counter(
    "kubegate_fast_path_requests_total",
    "Requests the front door served on its fast path (LiteLLM's route handlers skipped), by endpoint.",
    ["endpoint"],
)
# What LiteLLM runs after every call in this proxy (gateway_plugins.litellm_trim): a LiteLLM upgrade that adds
# per-request work shows up here. Names are LiteLLM's class or function names (a bounded set).
LITELLM_CALLBACKS = Gauge(
    "kubegate_litellm_success_callbacks",
    "1 for each callback LiteLLM calls after every successful upstream call in this proxy, by name.",
    ["callback"],
    multiprocess_mode="livemax",
)
POLICY_REVISION = Gauge("kubegate_policy_revision", "Revision of the policy in force.", multiprocess_mode="livemax")
BUDGET_USED = Gauge(
    "kubegate_budget_used_ratio",
    "Spent (settled plus reserved) over the limit of each tenant's budget in the current period, as last seen by this proxy.",
    ["tenant"],
    multiprocess_mode="livemostrecent",
)
BUDGET_THRESHOLD = Gauge(
    "kubegate_budget_threshold_reached",
    "1 once a budget's use (spent plus reserved) has reached the threshold in the current period, else 0, as last "
    "seen by this proxy. Thresholds and budget names come from the policy (bounded).",
    ["tenant", "budget", "threshold", "action"],
    multiprocess_mode="livemax",
)
PII_ENTITIES = Counter(
    "kubegate_pii_entities_total",
    "PII entities found in requests, by tenant, entity type and the action taken (mask, hash, redact, block).",
    ["tenant", "entity", "action"],
)
POLICY_ERRORS = Counter("kubegate_policy_errors_total", "Policy documents refused, by source.", ["source"])
POLICY_SIGNATURE_REFUSALS = Counter(
    "kubegate_policy_signature_refusals_total",
    "Policy documents refused because their signature did not verify with the Gateway's key, by source.",
    ["source"],
)
CACHE_LOOKUPS = Counter(
    "kubegate_cache_requests_total",
    "Requests of tenants with a response cache, by tenant and result: hit, miss, bypass (client header), skip (not "
    "cacheable: temperature, tools, user, stateful, pii_unmasked) or error (Redis unavailable: served as a miss).",
    ["tenant", "result"],
)
CACHE_SAVED_USD = Counter(
    "kubegate_cache_saved_usd_total",
    "Upstream cost in USD that cache hits did not spend (each hit counts what its entry's original request cost).",
    ["tenant"],
)
CACHE_STORES = Counter(
    "kubegate_cache_stores_total",
    "Answers offered to the response cache, by tenant and outcome: stored, exists, too_large, full (Gateway cap), "
    "unsafe (a PII original could not be removed), other_model (a downgrade or fallback answered), error.",
    ["tenant", "outcome"],
)
CACHE_RESULTS = frozenset({"hit", "miss", "bypass", "skip", "error"})
CACHE_STORE_OUTCOMES = frozenset({"stored", "exists", "too_large", "full", "unsafe", "other_model", "error"})
AUTH_FAILURES = Counter("kubegate_auth_failures_total", "Requests refused at authentication, by reason.", ["reason"])

_REASONS = frozenset(
    {
        "invalid_api_key",
        "model_not_allowed",
        "model_not_found",
        "rate_limit_exceeded",
        "budget_exceeded",
        "region_unavailable",
        "pii_blocked",
        "pii_unavailable",
        "redis_unavailable",
        "duplicate_request_id",
        "bad_request",
        "rate_limit_rpm",
        "rate_limit_tpm",
        "limits_unavailable",
        "residency_unavailable",
        "missing_api_key",
        "route_not_allowed",
        "method_not_allowed",
        "request_too_large",
        "invalid_json",
        "invalid_body",
        "unsupported_field",
        "missing_field",
        "invalid_field",
        "too_many_items",
        "string_too_long",
        "request_too_deep",
        "content_not_inspectable",
        "pii_text_too_large",
        "pii_busy",
        "tenant_suspended",
        "no_candidate_fits",
        "no_candidate_allowed",
    }
)
REFUSAL_REASONS = _REASONS


def bounded_tenant(policy: CompiledPolicy | None, tenant: str | None) -> str:
    return tenant if policy is not None and tenant in policy.tenants else OTHER


def bounded_model(policy: CompiledPolicy | None, model: str | None) -> str:
    if not model or policy is None:
        return OTHER
    return model if model in policy.model_labels else OTHER


def bounded_region(policy: CompiledPolicy | None, region: str | None) -> str:
    if not region or policy is None:
        return OTHER
    return region if any(d.region == region for d in policy.deployments.values()) else OTHER


def record_pii(policy: CompiledPolicy | None, tenant: str | None, counts: dict[str, int], actions: dict) -> None:
    """Count PII findings; entity types come from the tenant's PII policy, so the label set is bounded."""
    label = bounded_tenant(policy, tenant)
    for entity, count in counts.items():
        action = str(actions.get(entity, OTHER))
        PII_ENTITIES.labels(label, entity if entity in actions else OTHER, action).inc(count)


def record_budget_thresholds(policy: CompiledPolicy | None, tenant: str | None, budget: Budget, ratio: float) -> None:
    """One series per threshold of the budget: 1 when reached. Alerts use it with the budget's own thresholds."""
    label = bounded_tenant(policy, tenant)
    for t in budget.thresholds:
        reached = 1.0 if ratio * 100.0 >= t.percent else 0.0
        BUDGET_THRESHOLD.labels(label, budget.name, f"{t.percent:g}", t.action.value).set(reached)


def failure_outcome(http_status: int | None) -> str:
    """A failed call's outcome: the client's own 4xx is not an upstream error (408 and 429 are the upstream's)."""
    if http_status is not None and 400 <= http_status < 500 and http_status not in (408, 429):
        return "client_error"
    return "upstream_error"


_timings: dict[str, tuple[float | None, float | None]] = {}


def _seconds(value: Any) -> float | None:
    # LiteLLM hands datetimes in some paths and epoch floats in others.
    if value is None:
        return None
    if hasattr(value, "timestamp"):
        return float(value.timestamp())
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def call_times(kwargs: dict) -> tuple[float | None, float | None, float | None]:
    """(start, end, first token) of an upstream call, epoch seconds, from LiteLLM's logging kwargs."""
    slo = kwargs.get("standard_logging_object") or {}
    return (
        _seconds(slo.get("startTime") or kwargs.get("api_call_start_time") or kwargs.get("start_time")),
        _seconds(slo.get("endTime") or kwargs.get("end_time")),
        _seconds(slo.get("completionStartTime") or kwargs.get("completion_start_time")),
    )


def note_upstream_timing(request_id: str, kwargs: dict) -> None:
    """Keep the upstream duration and time to first token of a call from LiteLLM's logging kwargs until the
    request is finalized. Streams only have a first-token time distinct from the end."""
    slo = kwargs.get("standard_logging_object") or {}
    start, end, first = call_times(kwargs)
    upstream = end - start if start is not None and end is not None and end >= start else None
    streamed = bool(slo.get("stream") or kwargs.get("stream"))
    ttft = first - start if streamed and start is not None and first is not None and first >= start else None
    if len(_timings) > 100_000:  # leak guard: requests that are never finalized
        _timings.pop(next(iter(_timings)))
    _timings[request_id] = (upstream, ttft)


def observe_request(policy: CompiledPolicy | None, ctx: RequestContext, outcome: str) -> None:
    """Latency histograms of a finished request (labels bounded like every other series)."""
    tenant = bounded_tenant(policy, ctx.tenant.id)
    model = bounded_model(policy, ctx.served_model) if ctx.served_model else "none"
    REQUEST_SECONDS.labels(tenant, model, outcome).observe(time.perf_counter() - ctx.started)
    upstream, ttft = _timings.pop(ctx.request_id, (None, None))
    if upstream is not None:
        UPSTREAM_SECONDS.labels(tenant, model).observe(upstream)
    if ttft is not None:
        TTFT_SECONDS.labels(tenant, model).observe(ttft)


def bounded_reason(reason: str | None) -> str:
    return reason if reason in _REASONS else OTHER


def bounded_source(source: str) -> str:
    return "redis" if source == "redis" else "file" if source.startswith("file") else OTHER


def policy_refused(source: str, error: Exception) -> None:
    from gateway_plugins.policy.signing import PolicySignatureError

    label = bounded_source(source)
    POLICY_ERRORS.labels(label).inc()
    if isinstance(error, PolicySignatureError):
        POLICY_SIGNATURE_REFUSALS.labels(label).inc()


def render_latest() -> tuple[bytes, str]:
    """Exposition text of this process, or of all workers in multiprocess mode."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def reap_dead_workers() -> int:
    """Drop the live-gauge files of worker processes that are gone (uvicorn has no child-exit hook for it).

    Without this, a respawned worker's predecessor keeps reporting its last spool depth, budget ratio and
    policy revision for as long as the pod lives. Returns how many dead workers were reaped.
    """
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory or not os.path.isdir(directory):
        return 0
    from prometheus_client import multiprocess

    pids = set()
    for name in os.listdir(directory):
        if name.startswith("gauge_live") and name.endswith(".db"):
            pid = name[: -len(".db")].rsplit("_", 1)[-1]
            if pid.isdigit():
                pids.add(int(pid))
    dead = [pid for pid in pids if not _alive(pid)]
    for pid in dead:
        multiprocess.mark_process_dead(pid, directory)
    return len(dead)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
