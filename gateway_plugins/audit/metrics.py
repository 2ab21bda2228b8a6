"""Prometheus metrics of the audit writer (default registry, defined once per process)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RECORDS = Counter(
    "kubegate_audit_records_total",
    "Audit records by outcome: written to Redis, spooled while Redis was unreachable, dropped (spool full), "
    "recovered (replayed from a dead writer's spool file), summarised (a refusal without a valid key counted in "
    "the window's summary record instead of a record of its own)",
    ["outcome"],
)
# Live workers only: a respawned worker's predecessor must not leave a stale depth behind.
SPOOL_DEPTH = Gauge(
    "kubegate_audit_spool_depth", "Sealed audit records waiting to be written to Redis", multiprocess_mode="livesum"
)
# Same value in every process (one stream per Gateway): max, not a sum.
EXPORT_LAG = Gauge(
    "kubegate_audit_export_lag_seconds",
    "Age of the oldest audit record not yet exported in a sealed segment (spec.audit.export); 0 when all are",
    multiprocess_mode="max",
)
WRITE_SECONDS = Histogram(
    "kubegate_audit_write_seconds",
    "Latency of one batched audit write (one pipeline round trip)",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)
