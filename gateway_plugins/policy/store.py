"""Policy store: the compiled, indexed policy in force in this process, and its live refresh.

Sources: the ConfigMap-mounted file (``KUBEGATE_POLICY_FILE``) and Redis (keys of
``policy.keys.GatewayKeys``: document, revision, change channel). Both carry the same signed document
(``policy.signing``: JSON or gzip+JSON behind an Ed25519 signature). The highest revision wins. Redis
changes arrive by pub/sub and, in case a message is missed, by polling the revision (one cheap GET per
second); file changes (the kubelet swaps the mounted ConfigMap) by a ``stat`` of the file on the same tick.

A document that is unsigned, not signed by this Gateway's key, invalid, or for another Gateway (name or
namespace) never replaces the policy in force: it is logged with the field named and counted in
``kubegate_policy_errors_total`` (and ``kubegate_policy_signature_refusals_total`` for signatures).
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway_plugins.policy.keys import GatewayKeys
from gateway_plugins.policy.schema import Budget, DeploymentMeta, ModelMeta, Policy, PolicyError, Tenant, parse_policy
from gateway_plugins.policy.signing import PolicySignatureError, PolicySigner, PolicyVerifier

log = logging.getLogger("kubegate.policy")

GZIP_MAGIC = b"\x1f\x8b"
# Above this the document is stored gzip-compressed in Redis (1,000 tenants is ~1 MiB as JSON).
GZIP_THRESHOLD = 64 * 1024


def policy_keys(keys: GatewayKeys) -> tuple[str, str, str]:
    """(document key, revision key, change channel) of a gateway."""
    return keys.policy_document, keys.policy_revision, keys.policy_channel


def decode_document(raw: bytes | str) -> bytes | str:
    """Undo the optional gzip wrapping (the operator gzips to stay under the ConfigMap limit)."""
    if isinstance(raw, bytes) and raw[:2] == GZIP_MAGIC:
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise PolicyError(f"invalid policy: <root>: corrupt gzip data ({exc})") from None
    return raw


def load_document(raw: bytes | str, verifier: PolicyVerifier | None) -> Policy:
    """Verify the signature, then decode and validate. Without a verifier nothing is taken (fail closed)."""
    if verifier is None:
        raise PolicySignatureError(
            "invalid policy: <signature>: no policy public key configured (KUBEGATE_POLICY_PUBLIC_KEY)"
        )
    return parse_policy(decode_document(verifier.open(raw)))


def encode_document(policy: Policy, *, compress: bool | None = None) -> bytes:
    data = policy.model_dump_json(by_alias=True).encode()
    if compress or (compress is None and len(data) > GZIP_THRESHOLD):
        return gzip.compress(data, mtime=0)
    return data


def sign_document(policy: Policy, signer: PolicySigner, *, compress: bool | None = None) -> bytes:
    """The signed document as Redis and the ConfigMap carry it."""
    return signer.sign(encode_document(policy, compress=compress))


@dataclass(slots=True)
class CompiledPolicy:
    """A validated policy with the indexes the hot path needs (all O(1))."""

    policy: Policy
    tenants: dict[str, Tenant] = field(default_factory=dict)
    tenant_by_key: dict[str, Tenant] = field(default_factory=dict)
    budgets_by_tenant: dict[str, list[Budget]] = field(default_factory=dict)
    deployments: dict[str, DeploymentMeta] = field(default_factory=dict)
    models: dict[str, ModelMeta] = field(default_factory=dict)
    # Every model name a tenant may see in a metric label: public names and regional groups.
    model_labels: frozenset[str] = frozenset()
    # This Gateway's Redis key layout (namespace and name), built once per policy rather than per request.
    keys: GatewayKeys = field(default_factory=lambda: GatewayKeys("default", "main"))

    @property
    def revision(self) -> int:
        return self.policy.revision

    @property
    def gateway(self) -> str:
        return self.policy.gateway

    @classmethod
    def compile(cls, policy: Policy) -> CompiledPolicy:
        compiled = cls(policy=policy, keys=keys_of(policy))
        for tenant in policy.tenants:
            compiled.tenants[tenant.id] = tenant
            for key in tenant.keys:
                compiled.tenant_by_key[key.sha256] = tenant
        for budget in policy.budgets:
            compiled.budgets_by_tenant.setdefault(budget.tenant, []).append(budget)
        compiled.deployments = {d.id: d for d in policy.deployments}
        compiled.models = {m.name: m for m in policy.models}
        labels = set(compiled.models)
        for meta in policy.models:
            labels.update(meta.regional_groups.values())
        labels.update(d.model for d in policy.deployments)
        for tenant in policy.tenants:
            labels.update(m for m in tenant.allowed_models if m != "*")
        compiled.model_labels = frozenset(labels)
        return compiled

    def tenant_for_key_hash(self, key_sha256: str) -> Tenant | None:
        return self.tenant_by_key.get(key_sha256)

    def budgets_for(self, tenant_id: str) -> list[Budget]:
        return self.budgets_by_tenant.get(tenant_id, [])


def empty_policy(gateway: str, namespace: str = "default") -> CompiledPolicy:
    return CompiledPolicy.compile(Policy(gateway=gateway, namespace=namespace, revision=0))


class PolicyStore:
    """Holds the policy in force; ``current`` is a plain attribute read on the hot path."""

    def __init__(
        self,
        gateway: str,
        *,
        namespace: str = "default",
        verifier: PolicyVerifier | None = None,
        redis: Any = None,
        policy_file: str | None = None,
        poll_seconds: float = 1.0,
        on_error: Callable[[str, PolicyError], None] | None = None,
        on_change: Callable[[CompiledPolicy], None] | None = None,
    ) -> None:
        self.gateway = gateway
        self.namespace = namespace
        self.verifier = verifier
        self.redis = redis
        self.policy_file = policy_file
        self.poll_seconds = poll_seconds
        self.current: CompiledPolicy = empty_policy(gateway, namespace)
        self._on_error = on_error
        self._on_change = on_change
        self._tasks: list[asyncio.Task] = []
        self._doc_key, self._rev_key, self._channel = policy_keys(GatewayKeys(namespace, gateway))
        # (mtime, inode, size) of the policy file last read: the kubelet replaces a ConfigMap volume's files.
        self._file_stamp: tuple[int, int, int] | None = None
        self._refresh_lock = asyncio.Lock()
        self.last_error: str | None = None
        # Revision of the Redis document last refused: not fetched, validated and logged again every poll.
        self._refused_revision: int | None = None

    # -- applying documents -------------------------------------------------------------------

    def _refuse(self, source: str, error: PolicyError) -> None:
        self.last_error = str(error)
        log.error("policy from %s refused, keeping revision %d: %s", source, self.current.revision, error)
        if self._on_error:
            self._on_error(source, error)

    async def apply_raw(self, raw: bytes | str, source: str) -> bool:
        """Verify and validate off the event loop (a 1,000-tenant document takes tens of ms) and swap if newer."""
        try:
            policy = await asyncio.to_thread(load_document, raw, self.verifier)
        except PolicyError as exc:
            self._refuse(source, exc)
            return False
        return self.apply(policy, source)

    def apply(self, policy: Policy, source: str) -> bool:
        """Take an already verified policy if it is this Gateway's and newer than the one in force."""
        if policy.gateway != self.gateway or policy.namespace != self.namespace:
            theirs, ours = f"{policy.namespace}/{policy.gateway}", f"{self.namespace}/{self.gateway}"
            self._refuse(source, PolicyError(f"invalid policy: gateway: {theirs!r} is not this gateway ({ours!r})"))
            return False
        if policy.revision <= self.current.revision and self.current.revision > 0:
            return False
        self.current = CompiledPolicy.compile(policy)
        self.last_error = None
        log.info("policy revision %d in force (from %s)", policy.revision, source)
        if self._on_change:
            self._on_change(self.current)
        return True

    # -- sources ------------------------------------------------------------------------------

    async def load_file(self) -> bool:
        if not self.policy_file:
            return False
        path = Path(self.policy_file)
        try:
            stamp = _stamp(path)
            raw = await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            log.warning("policy file %s does not exist (yet)", path)
            return False
        self._file_stamp = stamp
        return await self.apply_raw(raw, f"file {path}")

    async def refresh_from_file(self) -> bool:
        """Re-read the file only when it changed (one ``stat`` per tick otherwise)."""
        if not self.policy_file:
            return False
        try:
            stamp = _stamp(Path(self.policy_file))
        except FileNotFoundError:
            return False
        if stamp == self._file_stamp:
            return False
        return await self.load_file()

    async def refresh_from_redis(self) -> bool:
        """One GET of the revision; the document only when it is newer than ours."""
        if self.redis is None:
            return False
        async with self._refresh_lock:
            rev = await self.redis.get(self._rev_key)
            if rev is None or int(rev) <= self.current.revision or int(rev) == self._refused_revision:
                return False
            raw = await self.redis.get(self._doc_key)
            if raw is None:
                return False
            errors_before = self.last_error
            applied = await self.apply_raw(raw, "redis")
            if not applied and self.last_error is not None and self.last_error is not errors_before:
                self._refused_revision = int(rev)
            return applied

    async def start(self) -> None:
        """Initial load (file, then Redis), then background refresh. Redis errors never stop start-up."""
        await self.load_file()
        if self.redis is not None:
            with contextlib.suppress(Exception):
                await self.refresh_from_redis()
        self._tasks = [asyncio.create_task(self._poll_loop(), name="kubegate-policy-poll")]
        if self.redis is not None:
            self._tasks.append(asyncio.create_task(self._subscribe_loop(), name="kubegate-policy-sub"))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []

    async def _poll_loop(self) -> None:
        while True:
            await asyncio.sleep(self.poll_seconds)
            try:
                await self.refresh_from_file()
            except OSError as exc:  # unreadable mount: keep the policy in force, try again next tick.
                log.debug("policy file check failed: %s", type(exc).__name__)
            try:
                await self.refresh_from_redis()
            except Exception as exc:  # Redis down: keep the policy in force, try again next tick.
                log.debug("policy poll failed: %s", type(exc).__name__)

    async def _subscribe_loop(self) -> None:
        while True:
            try:
                pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
                await pubsub.subscribe(self._channel)
                try:
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            await self.refresh_from_redis()
                finally:
                    with contextlib.suppress(Exception):
                        await pubsub.aclose()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.debug("policy subscription failed: %s", type(exc).__name__)
                await asyncio.sleep(self.poll_seconds)


# Compare-and-set: a stale publisher can never move a gateway's revision backwards.
_PUBLISH_LUA = """
local cur = tonumber(redis.call('GET', KEYS[2]) or '-1')
local new = tonumber(ARGV[2])
if new <= cur then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], ARGV[2])
redis.call('PUBLISH', KEYS[3], ARGV[2])
return 1
"""


def _stamp(path: Path) -> tuple[int, int, int]:
    st = path.stat()  # follows the ..data symlink the kubelet swaps
    return st.st_mtime_ns, st.st_ino, st.st_size


def _publish_args(policy: Policy, signer: PolicySigner) -> tuple[str, int, str, str, str, bytes, int]:
    doc_key, rev_key, channel = policy_keys(keys_of(policy))
    return _PUBLISH_LUA, 3, doc_key, rev_key, channel, sign_document(policy, signer), policy.revision


def keys_of(policy: Policy) -> GatewayKeys:
    return GatewayKeys(policy.namespace, policy.gateway)


async def publish_policy(redis: Any, policy: Policy, signer: PolicySigner) -> bool:
    """Store the signed document + revision atomically and announce it; False when Redis already has a newer one."""
    return bool(await redis.eval(*_publish_args(policy, signer)))


def publish_policy_sync(redis: Any, policy: Policy, signer: PolicySigner) -> bool:
    """Same as :func:`publish_policy` for a synchronous ``redis.Redis`` (operator, CLI)."""
    return bool(redis.eval(*_publish_args(policy, signer)))
