"""Which fate the inventory gives each SDK field path (forwarded, normalized, refused, or none)."""

from __future__ import annotations

import re
from functools import cache

from gateway_plugins.contract import inventory as inv
from gateway_plugins.contract.routes import BODIES
from tests.contract.field_paths import FREE_FORM, field_paths

_TAGS = re.compile(r"\.?\{[^}]*\}")


def _untagged(path: str) -> str:
    return _TAGS.sub("", path).replace("..", ".")


@cache
def _forwarded(endpoint: str) -> tuple[list[re.Pattern[str]], frozenset[str]]:
    paths = field_paths(BODIES[endpoint])
    patterns = []
    for path in paths:
        if path.endswith(FREE_FORM):
            patterns.append(inv.compile_pattern(path.removesuffix(FREE_FORM)))
        else:
            patterns.append(inv.compile_pattern(path, subtree=False))
    return patterns, frozenset(_untagged(p) for p in paths if not p.endswith(FREE_FORM))


def fate(endpoint: str, path: str) -> str | None:
    patterns, untagged = _forwarded(endpoint)
    if any(p.match(path) for p in patterns) or _untagged(path) in untagged:
        return "forwarded"
    if inv.match(inv.NORMALIZED, endpoint, path):
        return "normalized"
    if inv.match(inv.POLICY, endpoint, path):
        return "policy"
    if inv.match(inv.REFUSED, endpoint, path):
        return "refused"
    return None
