"""The Redis key and channel layout of one Gateway: defined here once, used by the operator and the data plane.

Every key carries the Gateway's namespace and name, so two Gateways of the same name in different namespaces can
share one Redis without reading each other's policy or spending each other's budgets. Kubernetes names cannot
contain ``:``, ``{`` or ``}``, so no two (namespace, name) pairs map to one prefix.

Every key also carries a Redis Cluster hash tag (the part in braces: only it decides the key's slot), chosen so
that each Lua script and MULTI touches one slot while load spreads over the nodes:

- ``kubegate:{ns:gw}:policy…``: the policy document, revision and change channel (the publish script);
- ``kubegate:{ns:gw:tenant}:…``: one tenant's rate counters, budget spend hashes and leases (ADMIT and SETTLE
  stay atomic), so tenants spread over the nodes while each one's keys stay together;
- ``kubegate:{ns:gw:audit}…``: the audit stream and its heads, trims and export mark (append + trim MULTI);
- ``kubegate:{ns:gw:cache:N}:…``: the response cache in ``cache_shards`` shards, each with its own index and byte
  counter; an entry's shard comes from its digest, so one tenant's entries spread over all shards.

Keys had no braces before this layout (kubegate 0.x); docs/redis.md says what an upgrade does to the old ones.
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
        """Gateway-wide keys (the policy); its braces are the hash tag, so they share one slot."""
        return f"{ROOT}:{{{self.namespace}:{self.gateway}}}"

    @property
    def pattern(self) -> str:
        """SCAN pattern of every key of this Gateway (all hash tags start ``{ns:gw`` then ``}`` or ``:``)."""
        return f"{ROOT}:{{{self.namespace}:{self.gateway}[:}}]*"

    def tenant_prefix(self, tenant: str) -> str:
        """One tenant's limit and budget keys: one slot per tenant, so ADMIT/SETTLE touch one node."""
        return f"{ROOT}:{{{self.namespace}:{self.gateway}:{tenant}}}"

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
        return f"{self.tenant_prefix(tenant)}:rl:{kind}:{minute}"

    def budget(self, tenant: str, budget: str, period_start: datetime) -> str:
        """Spend hash of one budget period of ``tenant``'s, named by the period's start in UTC."""
        return f"{self.tenant_prefix(tenant)}:budget:{budget}:{_stamp(period_start)}"

    def budget_leases(self, tenant: str, budget: str, period_start: datetime) -> str:
        """Sorted set of that period's open reservations (``{id}:{micro-USD}:{tokens}`` scored by when they lapse)."""
        return f"{self.tenant_prefix(tenant)}:lease:{budget}:{_stamp(period_start)}"

    def volume(self, month: datetime) -> str:
        """The Gateway's spend at list prices (micro-USD) in one UTC calendar month: what volume discounts go by.
        Gateway-wide, so in its own slot: read and counted beside the tenant's scripts, never inside them."""
        return f"{self.prefix}:volume:{month.astimezone(UTC).strftime('%Y%m')}"

    def budget_pattern(self, tenant: str, budget: str) -> str:
        """Every period's spend hash of one budget of ``tenant``'s (a SCAN/KEYS pattern)."""
        return f"{self.tenant_prefix(tenant)}:budget:{budget}:*"

    def admitted(self, tenant: str, member: str) -> str:
        """Mark of an admission and its reply (10 s): an admit sent again (a resend after a broken connection)
        counts once."""
        return f"{self.tenant_prefix(tenant)}:admitted:{member}"

    def settled(self, tenant: str, member: str) -> str:
        """Mark of a settled reservation (90 s, past the settle's retries): a settle sent twice counts once."""
        return f"{self.tenant_prefix(tenant)}:settled:{member}"

    # -- response cache -------------------------------------------------------------------------
    def cache_shard_prefix(self, shard: int) -> str:
        return f"{ROOT}:{{{self.namespace}:{self.gateway}:cache:{shard}}}"

    def cache_entry(self, tenant: str, digest: str, shards: int = 1) -> str:
        """One cached answer; ``digest`` (hex) hashes the masked request (never raw text) and picks the shard."""
        return f"{self.cache_shard_prefix(int(digest[:8], 16) % shards)}:{tenant}:{digest}"

    def cache_entry_pattern(self, tenant: str) -> str:
        """SCAN pattern of a tenant's cache entries in every shard."""
        return f"{ROOT}:{{{self.namespace}:{self.gateway}:cache:*}}:{tenant}:*"

    def cache_index(self, shard: int) -> str:
        """Sorted set of a shard's stored entries (``{size}:{key}`` scored by expiry): what its counter holds."""
        return f"{self.cache_shard_prefix(shard)}:index"

    def cache_bytes(self, shard: int) -> str:
        """Bytes of a shard's unexpired entries, checked against its share of the cap before each store."""
        return f"{self.cache_shard_prefix(shard)}:bytes"

    # -- audit ----------------------------------------------------------------------------------
    @property
    def audit_stream(self) -> str:
        """The audit stream; the keys derived from it (heads, trims, exported) share its hash tag."""
        return f"{ROOT}:{{{self.namespace}:{self.gateway}:audit}}"


def _stamp(period_start: datetime) -> str:
    return period_start.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


# Below 8 MiB a shard the cap would be cut too fine for large answers; 16 shards spread a cache over any
# Cluster of up to 16 primaries. The shard count follows from the cap alone, so every proxy agrees on it.
CACHE_SHARD_MIN_BYTES = 8 * 2**20
CACHE_MAX_SHARDS = 16


def cache_shards(cap_bytes: int) -> int:
    """How many shards a cache of ``cap_bytes`` is split into (each holds ``cap_bytes // shards``)."""
    return max(1, min(CACHE_MAX_SHARDS, cap_bytes // CACHE_SHARD_MIN_BYTES))


def cache_shard_of(key: str) -> int:
    """The shard of an entry key made by :meth:`GatewayKeys.cache_entry`."""
    tag = key[key.index("{") + 1 : key.index("}")]
    return int(tag.rpartition(":")[2])


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
