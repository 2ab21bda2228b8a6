"""Checkpoints: chain heads copied out of Redis to where Redis writers cannot roll them back (pure functions).

The operator (which generated the Gateway's audit key) periodically reads the heads, keeps only those whose tag
verifies with the key, never moves a chain's checkpoint backwards, and writes the result to the ConfigMap
``{gateway}-audit-checkpoints`` (key ``checkpoints.json``). ``kubegate audit verify --checkpoints`` then reports
a tail deleted behind a checkpoint even when the head in Redis was moved back with it.
"""

from __future__ import annotations

import hmac
import json

from gateway_plugins.policy.audit.chain import checkpoint_tag, head_value, parse_tagged_head

CHECKPOINTS_KEY = "checkpoints.json"


def advance(current: dict[str, str], heads: dict, key: bytes) -> tuple[dict[str, str], list[str]]:
    """(new checkpoints ``{chain: "seq:mac:tag"}``, chains whose head in Redis was refused and why)."""
    out = dict(current)
    refused: list[str] = []
    for raw_chain, raw_head in heads.items():
        chain = raw_chain.decode() if isinstance(raw_chain, bytes) else raw_chain
        try:
            seq, mac, tag = parse_tagged_head(raw_head)
        except ValueError:
            refused.append(f"{chain}: unreadable head")
            continue
        if not tag or not hmac.compare_digest(tag, checkpoint_tag(key, chain, seq, mac)):
            refused.append(f"{chain}: head tag does not verify (forged head)")
            continue
        known = out.get(chain)
        if known is not None:
            kseq = parse_tagged_head(known)[0]
            if seq < kseq:
                refused.append(f"{chain}: head seq {seq} is behind checkpoint seq {kseq} (tail truncated)")
                continue
        out[chain] = head_value(seq, mac, tag)
    return out, refused


def dumps(checkpoints: dict[str, str]) -> str:
    return json.dumps(checkpoints, sort_keys=True, separators=(",", ":"))
