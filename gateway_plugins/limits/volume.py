"""The Gateway's spend this UTC month at list prices, which volume-discount tiers go by.

The counter is one key for the whole Gateway, while the admit and settle scripts touch only one tenant's keys (one
Redis Cluster slot). So it is read beside the scripts, not in them: each proxy process keeps the value it last read
and reads it again once it is ``KUBEGATE_VOLUME_REFRESH_SECONDS`` old (default 5; one GET, paid by one request in
that time), and each settle adds its list price once the settle script has applied (a replayed settle adds nothing). A tier therefore starts up
to a few seconds after the month's usage crossed it on another replica; the charge of each request is the tier its
reservation saw, in the reservation and at settle alike.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from gateway_plugins.policy.redis_client import STORE_ERRORS

log = logging.getLogger("kubegate.limits")

REFRESH_ENV = "KUBEGATE_VOLUME_REFRESH_SECONDS"
# Kept past the month's end so the last days' settles land on a key that still exists.
TTL_SECONDS = 40 * 86400


class VolumeCache:
    def __init__(self) -> None:
        self.refresh = float(os.environ.get(REFRESH_ENV) or 5.0)
        self.key = ""
        self.micro = 0
        self.read_at = float("-inf")

    async def current(self, redis: Any, key: str) -> int:
        """The month's volume (micro-USD at list prices) as last read, read again when stale or another month."""
        if key != self.key or time.monotonic() - self.read_at >= self.refresh:
            try:
                raw = await redis.get(key)
            except STORE_ERRORS as exc:
                # The tier read before stands (or none): a discount is never the reason a request fails.
                log.warning("volume counter unreadable: %s", type(exc).__name__)
                return self.micro if key == self.key else 0
            self.key, self.micro, self.read_at = key, int(raw or 0), time.monotonic()
        return self.micro

    async def add(self, redis: Any, key: str, list_micro: int) -> None:
        """Count a settled request's list price (after its settle, not on the answer's path)."""
        if key == self.key:
            self.micro += list_micro
        try:
            pipe = redis.pipeline(transaction=False)
            pipe.incrby(key, list_micro)
            pipe.expire(key, TTL_SECONDS)
            await pipe.execute()
        except STORE_ERRORS as exc:
            log.warning("volume counter not updated: %s", type(exc).__name__)


def basis_points(tiers: list[Any], volume_micro: int) -> int:
    """The discount (basis points) of the highest tier ``volume_micro`` reached; tiers ascend."""
    bp = 0
    for tier in tiers:
        if volume_micro >= int(tier.from_usd * 1_000_000):
            bp = tier.basis_points
    return bp


VOLUME = VolumeCache()
