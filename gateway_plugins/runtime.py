"""Process-wide runtime: Redis client, policy store, audit writer and in-flight contexts.

Started lazily on the proxy's event loop by the first hook or auth call (``await get_runtime()``),
so nothing blocks import or the loop; later calls cost one attribute read.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from typing import Any

from gateway_plugins import litellm_trim, metrics, tracing
from gateway_plugins.context import ContextRegistry
from gateway_plugins.policy.store import CompiledPolicy, PolicyStore
from gateway_plugins.settings import Settings, load_settings

log = logging.getLogger("kubegate.runtime")


def _build_record(ctx: Any) -> dict:
    from gateway_plugins.audit.record import build_record

    return build_record(ctx)


def _make_audit(settings: Settings, redis: Any) -> Any:
    # Imported here, not at module level, so the audit package's import cost lands on the first request's
    # start-up path once rather than on every import of the hooks module.
    from gateway_plugins.audit import AuditWriter

    return AuditWriter.from_settings(settings, redis)


def _pii_models(policy: CompiledPolicy) -> set[str | None]:
    """The engines the current tenants need: ``None`` (pattern recognizers) plus any spaCy model for NER."""
    from gateway_plugins.pii.engine import PiiAnalysisError, ner_models

    models: set[str | None] = set()
    for tenant in policy.policy.tenants:
        if tenant.pii is not None:
            models.add(None)
            # A language without a model: that tenant's requests are refused at analysis (fail closed).
            with contextlib.suppress(PiiAnalysisError):
                models.update(ner_models(tenant.pii))
    return models


# Redis client bounds. A pooled connection can outlive a Redis restart; without a retry the first
# command on it fails and a hard-limit tenant gets a spurious 503. A couple of immediate reconnects fix
# that. A Redis that is really down still gives a fast refusal: "connection refused" is retried within
# ~20 ms of back-off, while connect and read timeouts are not retried, so one command waits at most
# about one timeout. The timeouts are asyncio timeouts, so event-loop lag counts against them: a reply
# that arrived during a stall still times out, because the timer fires before the waiting task resumes.
# At 0.5 s a burst of 64 concurrent requests on a loaded 2-core machine already timed out opening new
# connections (spurious 503 limits_unavailable); at 1 s, 1 of 2,500 budgeted requests under CI load did
# (tests/dataplane/test_redis_sizing.py). A read timeout is not retried, so the read timeout is generous:
# a Redis that accepts connections but never answers costs a fail-closed request 3 s before its 503 (an
# unreachable host 2 s, the connect timeout); a Redis that is down refuses connections and is seen at once.
REDIS_RETRIES = 2
REDIS_CONNECT_TIMEOUT = 2.0
REDIS_READ_TIMEOUT = 3.0
REDIS_HEALTH_CHECK_SECONDS = 10
# Connections one process may hold at once. redis-py 8's asyncio pool defaults to 100 and then fails the command
# (MaxConnectionsError) instead of waiting: 32 concurrent budgeted requests, with their cache stores, settles and
# audit batches in the background, passed 100 and a hard-limit tenant got 503 limits_unavailable
# (tests/dataplane/test_redis_sizing.py). Redis itself accepts 10,000 clients by default.
REDIS_MAX_CONNECTIONS = 1024


def make_redis(
    url: str,
    password: str | None = None,
    username: str | None = None,
    ca_file: str | None = None,
    cert_file: str | None = None,
    key_file: str | None = None,
) -> Any:
    """The data plane's asyncio Redis client: short timeouts, reconnect-and-retry on dropped connections.

    Only ``ConnectionError`` is retried, not ``TimeoutError``: a read timeout says Redis is slow, and
    waiting again is what a retry would do. A connection error on a stale pooled socket comes before the
    command reached the server, but one that broke while the reply was on its way comes after Redis ran
    it: the resend is safe because the budget, audit and cache writes are idempotent (the admit and
    settle scripts' marks, the audit chain's sequence numbers, the cache index); an admit whose reply
    never came is released (gateway_plugins.limits). Only the volume-discount counter may count a
    resent settle's list price twice.

    ``url`` may name a single server, a Sentinel group or a Cluster (``gateway_plugins.policy.redis_client``).
    """
    from redis.asyncio.retry import Retry
    from redis.backoff import ExponentialBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError

    # supported_errors replaces redis-py's default (ConnectionError, TimeoutError) rather than adding to it.
    retry = Retry(ExponentialBackoff(cap=0.05, base=0.005), REDIS_RETRIES, supported_errors=(RedisConnectionError,))
    from gateway_plugins.policy.redis_client import connect_async

    return connect_async(
        url,
        username=username or None,
        password=password or None,
        ca_file=ca_file or None,
        cert_file=cert_file or None,
        key_file=key_file or None,
        socket_timeout=REDIS_READ_TIMEOUT,
        socket_connect_timeout=REDIS_CONNECT_TIMEOUT,
        health_check_interval=REDIS_HEALTH_CHECK_SECONDS,
        retry=retry,
        retry_on_error=[RedisConnectionError],
        max_connections=REDIS_MAX_CONNECTIONS,
    )


def _verifier(settings: Settings) -> Any:
    from gateway_plugins.policy.signing import PolicyVerifier

    if settings.policy_public_key is None:
        log.error("no policy public key (KUBEGATE_POLICY_PUBLIC_KEY): every policy document will be refused")
        return None
    return PolicyVerifier.from_public_b64(settings.policy_public_key)


class Runtime:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.redis: Any = None
        if settings.redis_url:
            self.redis = make_redis(
                settings.redis_url,
                settings.redis_password,
                settings.redis_username,
                settings.redis_ca_file,
                settings.redis_cert_file,
                settings.redis_key_file,
            )
        self.store = PolicyStore(
            settings.gateway,
            namespace=settings.namespace,
            verifier=_verifier(settings),
            redis=self.redis,
            policy_file=settings.policy_file,
            poll_seconds=settings.policy_poll_seconds,
            on_error=metrics.policy_refused,
            on_change=lambda compiled: metrics.POLICY_REVISION.set(compiled.revision),
        )
        self.contexts = ContextRegistry()
        self.audit: Any = _make_audit(settings, self.redis)
        self.metrics = metrics
        self._memory_poll: asyncio.Task | None = None

    @property
    def policy(self) -> CompiledPolicy:
        return self.store.current

    def build_audit_record(self, ctx: Any) -> dict:
        return _build_record(ctx)

    async def start(self) -> None:
        metrics.reap_dead_workers()
        # Here, not at import: the proxy has built its Router and registered its callbacks by the first request.
        litellm_trim.apply()
        # Per process, after any fork: the span exporter runs a thread of its own.
        tracing.configure(self.settings.gateway, self.settings.namespace)
        await self.store.start()
        await self.audit.start()
        if self.redis is not None:
            from gateway_plugins import redis_memory

            poll = redis_memory.poll(self.redis, self.settings.redis_memory_poll_seconds)
            self._memory_poll = asyncio.ensure_future(poll)
        # By the first request LiteLLM's heap holds ~660k objects. With a callback registered, LiteLLM's
        # post-response logging objects outlive the young collections, so under load a full collection
        # ran every ~10 s and blocked the loop for 300-400 ms (bench_limits: p99 ~350 ms against ~50 ms
        # for LiteLLM without callbacks). Freezing the start-up heap keeps it out of every later
        # collection: O(1) here, and full collections then scan only what came after (p99 ~105 ms).
        gc.freeze()
        # Build PII engines now, in their thread pool, so the first PII request does not pay ~2 s for them.
        models = _pii_models(self.policy)
        if models:
            from gateway_plugins import pii

            for model in models:
                # The engines (spaCy vocabularies above all) are long-lived too: freeze them once built.
                pii.warm_up(model).add_done_callback(lambda _: gc.freeze())

    async def close(self) -> None:
        if self._memory_poll is not None:
            self._memory_poll.cancel()
            await asyncio.gather(self._memory_poll, return_exceptions=True)
        await self.store.close()
        await self.audit.close()
        await asyncio.to_thread(tracing.shutdown)
        if self.redis is not None:
            await self.redis.aclose()


_runtime: Runtime | None = None
_starting: asyncio.Task | None = None


async def get_runtime() -> Runtime:
    """The started runtime of this process (started once, concurrent first callers share the start)."""
    global _runtime, _starting
    if _runtime is not None:
        return _runtime
    if _starting is None or (_starting.done() and _starting.exception() is not None):
        # A failed start (e.g. a bad setting) is retried by the next request rather than cached forever.
        _starting = asyncio.ensure_future(_start())
    return await asyncio.shield(_starting)


async def _start() -> Runtime:
    global _runtime
    rt = Runtime(load_settings())
    await rt.start()
    _runtime = rt
    return rt


def current_runtime() -> Runtime | None:
    return _runtime
