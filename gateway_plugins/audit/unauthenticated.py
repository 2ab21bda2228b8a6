"""Refusals without a valid key are summarised, not recorded one by one, so a flood cannot evict tenants' records.

Anyone who can reach the port can send requests without a valid key. With one ~770-byte audit record each, a
flood would push tenants' records out of the capped stream. Instead, per window (``window`` seconds, per
process), for each (reason, source class) pair:

* the FIRST refusal is written as an ordinary audit record (a sample), with ``decisions.source`` set and
  ``decisions.sampled: true``;
* every refusal is counted, and when the window ends one summary record is written: ``call_type:
  "unauthenticated_summary"``, ``status: "summary"``, ``decisions.summary`` = ``{window_start, window_end,
  total, counts: {reason: {source: n}}, samples: {reason: {source: request_id}}}``.

So a window writes at most ``len(reasons) * len(SOURCE_CLASSES) + 1`` records, whatever the traffic. Counts
name no IP address and no key: the source is one of :data:`SOURCE_CLASSES`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from gateway_plugins.audit import metrics
from gateway_plugins.audit.record import SCHEMA_VERSION

log = logging.getLogger(__name__)

SUMMARY_CALL_TYPE = "unauthenticated_summary"
SUMMARY_STATUS = "summary"
# The bounded set a peer address is reduced to; nothing finer (an address is personal data and unbounded).
SOURCE_CLASSES = ("loopback", "private", "public", "other", "unknown")
# Networks a cluster's own traffic comes from: RFC 1918, carrier-grade NAT, IPv6 unique local, link-local.
_PRIVATE = tuple(
    ipaddress.ip_network(n)
    for n in (
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",
        "169.254.0.0/16",
        "fc00::/7",
        "fe80::/10",
    )
)


def source_class(client: Any) -> str:
    """The class of an ASGI ``scope["client"]`` (``(host, port)`` or None): never the address itself."""
    if not client:
        return "unknown"
    try:
        ip = ipaddress.ip_address(str(client[0]).split("%", 1)[0])
    except (ValueError, IndexError, TypeError):
        return "unknown"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return "loopback"
    if any(ip in net for net in _PRIVATE if net.version == ip.version):
        return "private"
    if ip.is_global and not ip.is_multicast:
        return "public"
    return "other"  # unspecified, multicast, documentation and other reserved ranges


def summary_record(window_start: float, window_end: float, counts: dict, samples: dict) -> dict:
    """A summary in the audit record's field list (so every consumer of records reads it unchanged)."""
    nested: dict[str, dict[str, int]] = {}
    for (reason, source), n in sorted(counts.items()):
        nested.setdefault(reason, {})[source] = n
    sampled: dict[str, dict[str, str]] = {}
    for (reason, source), request_id in sorted(samples.items()):
        sampled.setdefault(reason, {})[source] = request_id
    return {
        "v": SCHEMA_VERSION,
        "time": round(window_end, 6),
        "request_id": uuid.uuid4().hex,
        "tenant": "unauthenticated",
        "key_id": "",
        "call_type": SUMMARY_CALL_TYPE,
        "requested_model": "",
        "model": "",
        "served_model": None,
        "deployment_id": None,
        "region": None,
        "allowed_regions": [],
        "decisions": {
            "summary": {
                "window_start": round(window_start, 6),
                "window_end": round(window_end, 6),
                "total": sum(counts.values()),
                "counts": nested,
                "samples": sampled,
            }
        },
        "pii_counts": {},
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "cost_usd": 0.0,
        "latency_ms": 0.0,
        "status": SUMMARY_STATUS,
        "http_status": None,
    }


class RefusalSummary:
    """Counts unauthenticated refusals per (reason, source class); writes a sample and a summary per window."""

    def __init__(
        self, submit: Callable[[dict], None], window: float = 60.0, clock: Callable[[], float] = time.time
    ) -> None:
        if window <= 0:
            raise ValueError("window: must be > 0")
        self._submit = submit
        self.window = window
        self._clock = clock
        self._start: float | None = None
        self._counts: dict[tuple[str, str], int] = {}
        self._samples: dict[tuple[str, str], str] = {}
        self._task: asyncio.Task | None = None

    def offer(self, record: dict, reason: str, source: str) -> bool:
        """Count one refusal; write ``record`` if it is the window's first for (reason, source). Never raises."""
        try:
            now = self._clock()
            if self._start is not None and now - self._start >= self.window:
                self.flush(now)
            if self._start is None:
                self._start = now
            source = source if source in SOURCE_CLASSES else "other"
            key = (reason, source)
            self._counts[key] = self._counts.get(key, 0) + 1
            if key in self._samples:
                metrics.RECORDS.labels("summarised").inc()
                return False
            self._samples[key] = str(record.get("request_id", ""))
            decisions = dict(record.get("decisions") or {})
            decisions.update(source=source, sampled=True)
            self._submit({**record, "decisions": decisions})
            return True
        except Exception:  # never let auditing break a request
            log.exception("audit: counting an unauthenticated refusal failed")
            return False

    def flush(self, now: float | None = None) -> dict | None:
        """Write the current window's summary (if anything was counted) and start a new window."""
        if not self._counts:
            self._start = None
            return None
        end = self._clock() if now is None else now
        record = summary_record(self._start if self._start is not None else end, end, self._counts, self._samples)
        self._counts, self._samples, self._start = {}, {}, None
        self._submit(record)
        return record

    async def _run(self) -> None:
        while True:
            start = self._start
            # Sleep to the end of the open window (or a full window when none is open), then close it.
            delay = self.window if start is None else max(0.0, start + self.window - self._clock())
            await asyncio.sleep(min(delay, self.window) or 0.01)
            if self._start is not None and self._clock() - self._start >= self.window:
                self.flush()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="kubegate-audit-unauthenticated")

    async def close(self) -> None:
        """Stop the timer and write what the open window counted (a stopping pod loses no count)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.flush()
