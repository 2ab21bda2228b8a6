"""Per-object problems: why one object is left out of its Gateway's render, for that object's status.

An object the API server accepted can still be unusable (a time zone that does not exist, a downgrade cycle longer
than the CRD's rules look, a policy the data plane would refuse); it is left out with a reason and a message naming
its field, and the rest of its Gateway is rendered without it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

INVALID_SPEC = "InvalidSpec"

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class Problem:
    reason: str
    message: str


def field_errors(exc: ValidationError, prefix: str = "") -> str:
    """``spec.timezone: unknown IANA time zone 'Mars/Olympus'; ...`` (the input value itself is never echoed
    beyond what the validator's message says, so a stray secret in a spec does not reach a status)."""
    parts = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = ".".join(str(p) for p in err["loc"])
        where = f"{prefix}.{loc}" if prefix and loc else (prefix or loc or "<root>")
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


def object_key(kind: str, name: str) -> str:
    return f"{kind}/{name}"


def parse_objects(model: type[M], raws: Iterable[dict[str, Any]]) -> tuple[list[M], dict[str, Problem]]:
    """Parse each object on its own: (the valid ones, ``Kind/name`` -> InvalidSpec problem for the others)."""
    kind = model.model_fields["kind"].default
    valid: list[M] = []
    problems: dict[str, Problem] = {}
    for raw in raws:
        try:
            valid.append(model.model_validate(raw))
        except ValidationError as exc:
            name = (raw.get("metadata") or {}).get("name", "?")
            problems[object_key(kind, name)] = Problem(INVALID_SPEC, field_errors(exc))
    return valid, problems
