"""Process-wide runtime: Redis client, policy store, audit writer and in-flight contexts.

Started lazily on the proxy's event loop by the first hook or auth call (``await get_runtime()``),
so nothing blocks import or the loop; later calls cost one attribute read.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from gateway_plugins import metrics
from gateway_plugins.context import ContextRegistry
from gateway_plugins.policy.store import CompiledPolicy, PolicyStore
from gateway_plugins.settings import Settings, load_settings

log = logging.getLogger("kubegate.runtime")


class _NullAudit:
    """Stand-in used only while ``gateway_plugins.audit`` is not installed in this tree."""

    async def start(self) -> None:
        log.warning("gateway_plugins.audit is missing: audit records are NOT written")

    def submit(self, record: dict) -> None:
        pass

    async def close(self) -> None:
        pass


def _build_record(ctx: Any) -> dict:
    try:
        from gateway_plugins.audit.record import build_record
    except ModuleNotFoundError as exc:
        if not (exc.name or "").startswith("gateway_plugins.audit"):
            raise
        return {}
    return build_record(ctx)


def _make_audit(settings: Settings, redis: Any) -> Any:
    try:
        from gateway_plugins.audit import AuditWriter
    except ModuleNotFoundError as exc:
        if not (exc.name or "").startswith("gateway_plugins.audit"):
            raise
        return _NullAudit()
    except ImportError:
        return _NullAudit()
    return (
        AuditWriter.from_settings(settings, redis)
        if hasattr(AuditWriter, "from_settings")
        else AuditWriter(redis=redis, stream=settings.audit_stream, spool_dir=settings.audit_spool_dir)
    )


class Runtime:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.redis: Any = None
        if settings.redis_url:
            import redis.asyncio as aioredis

            # Short timeouts: a Redis outage must turn into a fast refusal or fail-open, not a hang.
            self.redis = aioredis.from_url(
                settings.redis_url, socket_timeout=1.0, socket_connect_timeout=1.0, health_check_interval=10
            )
        self.store = PolicyStore(
            settings.gateway,
            redis=self.redis,
            policy_file=settings.policy_file,
            poll_seconds=settings.policy_poll_seconds,
            on_error=lambda source: metrics.POLICY_ERRORS.labels(metrics.bounded_source(source)).inc(),
            on_change=lambda compiled: metrics.POLICY_REVISION.set(compiled.revision),
        )
        self.contexts = ContextRegistry()
        self.audit: Any = _make_audit(settings, self.redis)
        self.metrics = metrics

    @property
    def policy(self) -> CompiledPolicy:
        return self.store.current

    def build_audit_record(self, ctx: Any) -> dict:
        return _build_record(ctx)

    async def start(self) -> None:
        await self.store.start()
        await self.audit.start()

    async def close(self) -> None:
        await self.store.close()
        await self.audit.close()
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
