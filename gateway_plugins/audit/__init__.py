"""Hash-chained audit trail: records, writer to a Redis stream, verify/export CLI."""

from gateway_plugins.audit.record import build_record
from gateway_plugins.audit.writer import AuditWriter

__all__ = ["AuditWriter", "build_record"]
