"""Budget threshold notifications: which thresholds are new this period (pure), webhook payloads, signing, delivery.

The operator, not the proxy, sends webhooks: a slow or dead receiver must never hold a request. Delivery is
retried with exponential back-off in a background task; the threshold is recorded in the Budget's status (and an
Event posted) whether or not the receiver answers, so a threshold fires once per period.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from dataclasses import asdict, dataclass
from typing import Any

log = logging.getLogger("kubegate.operator")

SIGNATURE_HEADER = "X-Kubegate-Signature"
TIMESTAMP_HEADER = "X-Kubegate-Timestamp"
EVENT_TYPE = "kubegate.budget.threshold_reached"
ATTEMPTS = 6
BASE_DELAY = 1.0
MAX_DELAY = 60.0
TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class ThresholdEvent:
    namespace: str
    budget: str
    tenant: str
    threshold_percent: float
    action: str
    percent: float
    spent_usd: str
    limit_usd: str | None  # None: the Budget limits tokens only
    period_start: str
    period_end: str
    spent_tokens: int = 0
    limit_tokens: int | None = None  # None: the Budget limits USD only


def new_thresholds(
    thresholds: list[dict[str, Any]], percent: float, reached_before: list[float]
) -> list[dict[str, Any]]:
    """Thresholds ``percent`` has reached that were not reached before in this period, lowest first.

    Keyed by percent, not by the action: 50/80/95 % "notify" are three notifications, not one.
    """
    done = {float(p) for p in reached_before}
    hits = [t for t in thresholds if percent >= float(t["percent"]) and float(t["percent"]) not in done]
    return sorted(hits, key=lambda t: float(t["percent"]))


def reached_this_period(status: dict[str, Any] | None, period_start: str) -> list[float]:
    """Thresholds already notified, from the Budget's status; none when the period has rolled over."""
    status = status or {}
    notified = status.get("thresholdsReached") or {}
    if notified.get("periodStart") != period_start:
        return []
    return [float(p) for p in notified.get("percents") or []]


def _fmt_percent(value: float) -> str:
    return f"{value:g}"


def summary(event: ThresholdEvent) -> str:
    spent = [f"{event.spent_usd} of {event.limit_usd} USD"] if event.limit_usd is not None else []
    if event.limit_tokens is not None:
        spent.append(f"{event.spent_tokens} of {event.limit_tokens} tokens")
    return (
        f"Budget {event.namespace}/{event.budget} (tenant {event.tenant}) reached its "
        f"{_fmt_percent(event.threshold_percent)}% threshold ({event.action}): spent {' and '.join(spent)} "
        f"({event.percent:.1f}%) this period (resets {event.period_end})."
    )


def build_payload(fmt: str, event: ThresholdEvent) -> bytes:
    """The request body: a Slack incoming-webhook message, or kubegate's JSON event document."""
    if fmt == "slack":
        doc: dict[str, Any] = {"text": summary(event)}
    else:
        doc = {"type": EVENT_TYPE, **asdict(event), "message": summary(event)}
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>`` of HMAC-SHA256 over ``timestamp.body``; the timestamp in the MAC stops replays of old bodies."""
    mac = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={mac}"


def build_headers(body: bytes, secret: bytes | None, now: float | None = None) -> dict[str, str]:
    timestamp = str(int(time.time() if now is None else now))
    headers = {"Content-Type": "application/json", "User-Agent": "kubegate-operator", TIMESTAMP_HEADER: timestamp}
    if secret:
        headers[SIGNATURE_HEADER] = sign(secret, timestamp, body)
    return headers


def backoff(attempt: int) -> float:
    return min(MAX_DELAY, BASE_DELAY * 2**attempt)


def _retryable(status: int) -> bool:
    return status == 429 or status >= 500


async def deliver(
    url: str, body: bytes, secret: bytes | None, attempts: int = ATTEMPTS, sleep: Any = asyncio.sleep
) -> bool:
    """POST ``body``; retry connection errors, 429 and 5xx with exponential back-off. True when accepted (2xx)."""
    # Imported on first delivery: httpx (with the CLI it imports) is about 7 MiB of the operator's memory, and most
    # operators never send a webhook.
    import httpx

    async with httpx.AsyncClient(timeout=TIMEOUT, follow_redirects=False) as http:
        for attempt in range(attempts):
            # Re-signed per attempt: the timestamp is part of the MAC and receivers may reject stale ones.
            headers = build_headers(body, secret)
            try:
                response = await http.post(url, content=body, headers=headers)
            except httpx.HTTPError as exc:
                problem = type(exc).__name__
            else:
                if response.is_success:
                    return True
                if not _retryable(response.status_code):
                    log.warning("budget webhook refused with HTTP %s; not retried", response.status_code)
                    return False
                problem = f"HTTP {response.status_code}"
            if attempt + 1 < attempts:
                delay = backoff(attempt)
                log.info("budget webhook failed (%s); retry %d in %.0fs", problem, attempt + 1, delay)
                await sleep(delay)
    log.warning("budget webhook gave up after %d attempts", attempts)
    return False


_tasks: set[asyncio.Task] = set()


def send_in_background(url: str, body: bytes, secret: bytes | None) -> asyncio.Task:
    """Schedule ``deliver`` without waiting for it (the refresh loop goes on); the set keeps the task alive."""
    task = asyncio.get_running_loop().create_task(deliver(url, body, secret))
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)
    return task
