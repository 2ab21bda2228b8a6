"""Audit records for a time range, from the Redis stream or a ``kubegate audit export`` file, plus an integrity line."""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path

from gateway_plugins.policy.audit.chain import decode_key
from gateway_plugins.policy.audit.verify import stream_entries, verify_entries
from gateway_plugins.policy.keys import audit_heads, audit_trims

NO_KEY = "not verified: no audit key (set KUBEGATE_AUDIT_KEY, the Gateway's audit-key Secret value)"


def _audit_key() -> bytes | None:
    text = os.environ.get("KUBEGATE_AUDIT_KEY")
    return decode_key(text) if text else None


def _ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


def from_redis(
    url: str, stream: str, since: datetime, until: datetime, *, key: bytes | None = None
) -> tuple[list[dict], str]:
    """Records whose stream time is in [since, until], and ``audit verify``'s verdict on the whole stream.

    ``key``: the audit key (default: ``$KUBEGATE_AUDIT_KEY``; ``kubegate dev``'s own for its Redis)."""
    from gateway_plugins.policy.redis_client import connect_sync

    client = connect_sync(url, socket_timeout=10, socket_connect_timeout=5)
    try:
        # The whole chain is verified (a range alone cannot prove nothing before it was removed); heads first, as
        # `kubegate audit verify` does, so a concurrent writer can only make the stream longer than its heads.
        heads = client.hgetall(audit_heads(stream))
        trims = client.hgetall(audit_trims(stream))
        key = key if key is not None else _audit_key()
        if key is None:
            integrity = NO_KEY
        else:
            integrity = verify_entries(stream_entries(client, stream, "-", "+"), heads, key, trims=trims).message()
        records = []
        for sid, fields in stream_entries(client, stream, str(_ms(since)), str(_ms(until))):
            rec = json.loads(fields[b"r"])
            rec["stream_id"] = sid.decode()
            records.append(rec)
    finally:
        client.close()
    return records, integrity


def from_file(path: Path, since: datetime, until: datetime) -> tuple[list[dict], str]:
    """Records of an export file in [since, until]; the links between them are verified (heads are not in a file)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    entries, records = [], []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            raise ValueError(f"{path}:{n}: not a JSON audit record") from None
        sid = rec.pop("stream_id", f"line-{n}")
        entries.append((sid, {"r": json.dumps(rec)}))
        rec["stream_id"] = sid
        if since.timestamp() <= float(rec.get("time", 0)) <= until.timestamp():
            records.append(rec)
    # An export may start mid-chain (a --since range) and carries no chain heads: check every link it holds, and
    # take its last records as the heads, so only a deleted tail of the file would go unnoticed. Said so below.
    last: dict[str, str] = {}
    for _, fields in entries:
        rec = json.loads(fields["r"])
        if "chain" in rec and "seq" in rec and "hash" in rec:
            last[rec["chain"]] = f"{rec['seq']}:{rec['hash']}"
    key = _audit_key()
    if key is None:
        return records, NO_KEY
    report = verify_entries(entries, last, key, allow_trimmed=True, allow_empty=True)
    note = " (export file: links checked, chain heads not available)" if report.ok else ""
    return records, report.message() + note
