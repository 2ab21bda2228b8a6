"""Hash-chained audit trail: records and their writer to a Redis stream (chain, checkpoints and verification are
the contract with `kubegate audit`, in ``gateway_plugins.policy.audit``)."""

from gateway_plugins.audit.record import build_record
from gateway_plugins.audit.writer import AuditWriter

__all__ = ["AuditWriter", "build_record"]
