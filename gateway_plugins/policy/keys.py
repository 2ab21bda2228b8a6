"""The Redis key and channel layout of one Gateway: defined here once, used by the operator and the data plane.

Every key carries the Gateway's namespace and name (``kubegate:{namespace}:{gateway}:...``), so two Gateways of
the same name in different namespaces can share one Redis without reading each other's policy or spending each
other's budgets. Kubernetes names cannot contain ``:``, so no two (namespace, name) pairs map to one prefix.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

ROOT = "kubegate"


@dataclass(frozen=True, slots=True)
class GatewayKeys:
    namespace: str
    gateway: str

    @property
    def prefix(self) -> str:
        return f"{ROOT}:{self.namespace}:{self.gateway}"

    # -- policy ---------------------------------------------------------------------------------
    @property
    def policy_document(self) -> str:
        return f"{self.prefix}:policy"

    @property
    def policy_revision(self) -> str:
        return f"{self.prefix}:policy:rev"

    @property
    def policy_channel(self) -> str:
        return f"{self.prefix}:policy:changed"

    # -- limits ---------------------------------------------------------------------------------
    def rate(self, tenant: str, kind: str, minute: int) -> str:
        """Per-minute request (``rpm``) or token (``tpm``) counter of a tenant."""
        return f"{self.prefix}:rl:{tenant}:{kind}:{minute}"

    def budget(self, budget: str, period_start: datetime) -> str:
        """Spend hash of one budget period, named by the period's start in UTC."""
        return f"{self.prefix}:budget:{budget}:{period_start.astimezone(UTC).strftime('%Y%m%dT%H%M%SZ')}"

    def budget_leases(self, budget: str, period_start: datetime) -> str:
        """Sorted set of that period's open reservations (``{id}:{micro-USD}:{tokens}`` scored by when they lapse)."""
        return f"{self.prefix}:lease:{budget}:{period_start.astimezone(UTC).strftime('%Y%m%dT%H%M%SZ')}"

    def volume(self, month: datetime) -> str:
        """The Gateway's spend at list prices (micro-USD) in one UTC calendar month: what volume discounts go by."""
        return f"{self.prefix}:volume:{month.astimezone(UTC).strftime('%Y%m')}"

    def budget_pattern(self, budget: str) -> str:
        return f"{self.prefix}:budget:{budget}:*"

    # -- response cache -------------------------------------------------------------------------
    def cache_entry(self, tenant: str, digest: str) -> str:
        """One cached answer; ``digest`` hashes the masked request (never raw text)."""
        return f"{self.prefix}:cache:{tenant}:{digest}"

    @property
    def cache_index(self) -> str:
        """Sorted set of stored entries (``{size}:{key}`` scored by expiry): what the size counter still holds."""
        return f"{self.prefix}:cache-index"

    @property
    def cache_bytes(self) -> str:
        """Bytes of unexpired entries, checked against the Gateway's cap before each store."""
        return f"{self.prefix}:cache-bytes"

    # -- audit ----------------------------------------------------------------------------------
    @property
    def audit_stream(self) -> str:
        return f"{self.prefix}:audit"


def audit_heads(stream: str) -> str:
    """Hash of chain heads beside an audit stream (``{chain: "{seq}:{mac}"}``)."""
    return f"{stream}:heads"


def audit_exported(stream: str) -> str:
    """Stream id of the last audit record exported in a sealed segment (set by the operator's export, when the
    Gateway has ``spec.audit.export``): the cap never trims past it."""
    return f"{stream}:exported"


def audit_export_marks(stream: str) -> str:
    """Hash of each export destination's progress (``{"volume": <stream id>, "volume:segment": <object name>, "s3":
    ...}``), kept by the operator; ``audit_exported`` is the lowest of the configured destinations' marks."""
    return f"{stream}:exported-to"


def audit_trims(stream: str) -> str:
    """Hash of what the stream cap trimmed, per chain (``{chain: "{seq}:{mac}"}`` of the last record trimmed)."""
    return f"{stream}:trimmed"
