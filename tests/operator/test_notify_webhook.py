"""Webhook delivery to a real local HTTP receiver: payload formats, HMAC signature, retries with back-off."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from gateway_operator import notify

EVENT = notify.ThresholdEvent(
    namespace="ai",
    budget="team-monthly",
    tenant="team",
    threshold_percent=80.0,
    action="notify",
    percent=81.5,
    spent_usd="81.5000",
    limit_usd="100",
    period_start="2026-11-01T00:00:00+00:00",
    period_end="2026-12-01T00:00:00+00:00",
)


class Receiver:
    """Answers the queued status codes in turn (then 200) and records every request."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.statuses = list(statuses or [])
        self.requests: list[tuple[dict[str, str], bytes]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(outer.statuses.pop(0) if outer.statuses else 200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    made: list[Receiver] = []

    def factory(statuses: list[int] | None = None) -> Receiver:
        made.append(Receiver(statuses))
        return made[-1]

    yield factory
    for r in made:
        r.close()


def valid_signature(secret: bytes, headers: dict[str, str], body: bytes) -> bool:
    """What a receiver does: recompute the MAC over `timestamp.body`, compare in constant time."""
    expected = hmac.new(secret, headers["x-kubegate-timestamp"].encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(headers["x-kubegate-signature"], f"sha256={expected}")


async def test_signed_json_event_is_received_with_a_valid_signature(receiver):
    r = receiver()
    body = notify.build_payload("json", EVENT)
    assert await notify.deliver(r.url, body, b"s3cret", sleep=_no_sleep)
    ((headers, got),) = r.requests
    assert got == body and valid_signature(b"s3cret", headers, got)
    assert not valid_signature(b"other", headers, got)
    doc = json.loads(got)
    assert doc["type"] == "kubegate.budget.threshold_reached"
    assert (doc["budget"], doc["threshold_percent"], doc["action"], doc["spent_usd"]) == (
        "team-monthly",
        80.0,
        "notify",
        "81.5000",
    )


async def test_slack_format_is_a_text_message(receiver):
    r = receiver()
    assert await notify.deliver(r.url, notify.build_payload("slack", EVENT), None, sleep=_no_sleep)
    ((headers, got),) = r.requests
    assert "x-kubegate-signature" not in headers
    text = json.loads(got)["text"]
    assert "ai/team-monthly" in text and "80% threshold" in text and "81.5000 of 100 USD" in text


async def test_5xx_and_429_are_retried_with_growing_back_off(receiver):
    r = receiver([503, 429, 500])
    slept: list[float] = []

    async def record(delay: float) -> None:
        slept.append(delay)

    assert await notify.deliver(r.url, b"{}", b"k", sleep=record)
    assert len(r.requests) == 4
    assert slept == [1.0, 2.0, 4.0]
    assert all(valid_signature(b"k", h, b) for h, b in r.requests)  # each attempt freshly signed


async def test_a_4xx_is_not_retried_and_a_dead_receiver_gives_up(receiver):
    r = receiver([400])
    assert not await notify.deliver(r.url, b"{}", None, sleep=_no_sleep)
    assert len(r.requests) == 1
    dead = receiver()
    url = dead.url
    dead.close()
    assert not await notify.deliver(url, b"{}", None, attempts=3, sleep=_no_sleep)


async def _no_sleep(_: float) -> None:
    return None
