"""Status documents for kubegate objects (pure): conditions, and whether a status write is needed at all."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

# Messages are stable texts (no revisions, no timestamps) so an unchanged object never gets a status write.
MAX_MESSAGE = 1024


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def condition(kind: str, ok: bool, reason: str, message: str) -> dict[str, str]:
    return {"type": kind, "status": "True" if ok else "False", "reason": reason, "message": message[:MAX_MESSAGE]}


def ready_status(generation: int | None, ok: bool, reason: str, message: str) -> dict[str, Any]:
    """Status of a Tenant or ModelRoute: ``Ready`` plus ``Reconciled`` (the operator has seen this generation)."""
    return {
        "observedGeneration": generation,
        "conditions": [
            condition("Ready", ok, reason, message),
            condition("Reconciled", True, "Observed", "the operator has processed this generation"),
        ],
    }


def stamp(current: dict[str, Any] | None, desired: dict[str, Any], now: str) -> dict[str, Any]:
    """``desired`` with ``lastTransitionTime`` on each condition: kept from the current condition of that type when
    its status did not change, else ``now``. An unchanged condition therefore compares equal (no write), and
    ``kubectl describe`` shows since when a condition holds."""
    if "conditions" not in desired:
        return desired
    previous = {c.get("type"): c for c in (current or {}).get("conditions") or []}
    stamped = []
    for cond in desired["conditions"]:
        before = previous.get(cond["type"])
        same = before is not None and before.get("status") == cond["status"] and before.get("lastTransitionTime")
        stamped.append({**cond, "lastTransitionTime": before["lastTransitionTime"] if same else now})
    return {**desired, "conditions": stamped}


def needs_write(current: dict[str, Any] | None, desired: dict[str, Any]) -> bool:
    """True when a key of ``desired`` differs from ``current`` (keys the operator does not own are ignored)."""
    current = current or {}
    return any(current.get(k) != v for k, v in desired.items())


def already_observed(event_type: str | None, body: dict[str, Any]) -> bool:
    """A watch event of an object whose current generation the operator has already handled.

    Status writes (ours) do not bump ``generation``: skipping them keeps one Tenant change at O(1) reconciles.
    """
    if event_type not in (None, "MODIFIED"):
        return False
    generation = (body.get("metadata") or {}).get("generation")
    return generation is not None and (body.get("status") or {}).get("observedGeneration") == generation


def tenant_state(spec: dict[str, Any], at: datetime | None = None) -> str:
    """A Tenant's lifecycle as its status shows it: ``Suspended``, ``Expired`` (its trial's ``expiresAt`` passed),
    ``Trial`` (one is set, still ahead) or ``Active``."""
    if spec.get("suspended"):
        return "Suspended"
    expires = spec.get("expiresAt")
    if not expires:
        return "Active"
    try:
        end = datetime.fromisoformat(str(expires).replace("Z", "+00:00"))
    except ValueError:
        return "Active"  # an invalid value is refused by the API server and by the renderer, which say so
    if end.tzinfo is None:
        return "Active"
    return "Expired" if (at or datetime.now(UTC)) >= end else "Trial"
