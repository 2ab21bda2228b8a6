"""Pure rewriting of texts given entity spans: placeholders, redaction, keyed hashes."""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
from dataclasses import dataclass, field
from functools import lru_cache

from gateway_plugins.pii.engine import Span
from gateway_plugins.policy.schema import PiiAction

log = logging.getLogger("kubegate.pii")

HASH_KEY_ENV = "KUBEGATE_PII_HASH_KEY"
_ephemeral_key: bytes | None = None


def _process_secret() -> bytes:
    global _ephemeral_key
    raw = os.environ.get(HASH_KEY_ENV)
    if raw:
        return raw.encode()
    if _ephemeral_key is None:
        # Without a configured secret, tokens are still keyed (not guessable from the value) but
        # differ between replicas and restarts; say so once.
        log.warning("%s is not set: PII hash tokens are stable only within this process", HASH_KEY_ENV)
        _ephemeral_key = secrets.token_bytes(32)
    return _ephemeral_key


@lru_cache(maxsize=4096)
def _tenant_key(secret: bytes, tenant_id: str) -> bytes:
    return hmac.new(secret, b"kubegate/pii/v1/" + tenant_id.encode(), hashlib.sha256).digest()


def hash_token(tenant_id: str, entity: str, value: str) -> str:
    """Same tenant + same value -> same token, across requests; another tenant gets another token."""
    mac = hmac.new(_tenant_key(_process_secret(), tenant_id), value.encode(), hashlib.sha256).hexdigest()
    return f"<{entity}_{mac[:16]}>"


@dataclass(slots=True)
class PiiState:
    """Per-request mapping; lives in ``ctx.pii_state`` (memory only) for the life of the request."""

    tenant_id: str
    tokens: dict[tuple[str, str], str] = field(default_factory=dict)  # (entity, value) -> token
    originals: dict[str, str] = field(default_factory=dict)  # token -> value, for restore
    counters: dict[str, int] = field(default_factory=dict)  # entity -> last placeholder number
    counts: dict[str, int] = field(default_factory=dict)  # entity -> occurrences acted on

    def token_for(self, entity: str, value: str, action: PiiAction) -> str:
        if action is PiiAction.REDACT:
            return ""
        key = (entity, value)
        token = self.tokens.get(key)
        if token is None:
            if action is PiiAction.HASH:
                token = hash_token(self.tenant_id, entity, value)
            else:
                n = self.counters.get(entity, 0) + 1
                self.counters[entity] = n
                token = f"<{entity}_{n}>"
            self.tokens[key] = token
            self.originals[token] = value
        return token


# Most protective first: refusing beats removing, removing beats a linkable token, which beats a placeholder.
_STRICTNESS = {PiiAction.BLOCK: 3, PiiAction.REDACT: 2, PiiAction.HASH: 1, PiiAction.MASK: 0}


def strictest(span: Span, actions: dict[str, PiiAction]) -> tuple[str, PiiAction] | None:
    """The entity type and action that govern ``span``: the strictest over every type recognised on it."""
    best: tuple[str, PiiAction] | None = None
    for entity in span.entities:
        action = actions.get(entity)
        if action is not None and (best is None or _STRICTNESS[action] > _STRICTNESS[best[1]]):
            best = (entity, action)
    return best


def blocked_types(spans_per_text: list[tuple[Span, ...]], actions: dict[str, PiiAction]) -> list[str]:
    found = {e for spans in spans_per_text for s in spans for e in s.entities if actions.get(e) is PiiAction.BLOCK}
    return sorted(found)


def count_detections(spans_per_text: list[tuple[Span, ...]], actions: dict[str, PiiAction]) -> dict[str, int]:
    """Every detection of a type the policy names, overlapping ones included (the audit counts them all)."""
    counts: dict[str, int] = {}
    for spans in spans_per_text:
        for s in spans:
            for e in s.entities:
                if e in actions:
                    counts[e] = counts.get(e, 0) + 1
    return counts


def rewrite(text: str, spans: tuple[Span, ...], actions: dict[str, PiiAction], state: PiiState) -> str:
    """``text`` with every span replaced per its strictest action; spans are sorted and disjoint."""
    if not spans:
        return text
    parts: list[str] = []
    pos = 0
    for span in spans:
        governing = strictest(span, actions)
        if governing is None:
            continue
        entity, action = governing
        parts.append(text[pos : span.start])
        parts.append(state.token_for(entity, text[span.start : span.end], action))
        state.counts[entity] = state.counts.get(entity, 0) + 1
        pos = span.end
    parts.append(text[pos:])
    return "".join(parts)
