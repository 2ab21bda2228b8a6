"""Canonical encoding and hash chaining of audit records (pure functions, no I/O).

A record's ``hash`` is SHA-256 over the canonical JSON (sorted keys, no whitespace, UTF-8) of the
record without its ``hash`` field; the record carries ``chain``, ``seq`` and ``prev`` (the previous
record's hash in the same chain), so altering, deleting, inserting or reordering records breaks it.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

GENESIS = "0" * 64


def canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def digest(record: dict) -> str:
    body = {k: v for k, v in record.items() if k != "hash"}
    return hashlib.sha256(canonical(body)).hexdigest()


def seal(record: dict, chain: str, seq: int, prev: str) -> dict:
    sealed = dict(record, chain=chain, seq=seq, prev=prev)
    sealed.pop("hash", None)
    sealed["hash"] = digest(sealed)
    return sealed


def head_value(seq: int, hash_: str) -> str:
    return f"{seq}:{hash_}"


def parse_head(value: str | bytes) -> tuple[int, str]:
    text = value.decode() if isinstance(value, bytes) else value
    seq, _, hash_ = text.partition(":")
    return int(seq), hash_
