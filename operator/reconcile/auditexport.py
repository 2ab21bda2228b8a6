"""Retention by export (``spec.audit.export``): after each checkpoint round, the records the stored checkpoint covers
and that are not exported yet go into one sealed segment (``gateway_plugins.policy.audit.segments``) under
``$KUBEGATE_AUDIT_EXPORT_DIR/<namespace>/<gateway>/``; then the stream's exported mark moves to the last of them.
The proxies' cap never trims past that mark, so a record leaves Redis only once it is exported and checkpointed.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from gateway_plugins.policy.audit.segments import write_segment
from gateway_plugins.policy.audit.transparency import CHECKPOINT_KEY, STATE_KEY, LogState
from gateway_plugins.policy.keys import audit_exported

log = logging.getLogger("kubegate.operator")
EXPORT_DIR_ENV = "KUBEGATE_AUDIT_EXPORT_DIR"
NOTHING = "0-0"  # the mark before any record: set when export is enabled, so nothing is trimmed until exported
CHUNK = 10_000


def export_dir() -> str | None:
    return os.environ.get(EXPORT_DIR_ENV) or None


def _sid(value: str) -> tuple[int, int]:
    ms, _, seq = value.partition("-")
    return int(ms), int(seq or 0)


def disable(conn: Any, stream: str) -> None:
    """Export switched off: the cap applies again."""
    conn.delete(audit_exported(stream))


def export_round(conn: Any, stream: str, data: dict[str, str], directory: str | os.PathLike) -> Path | None:
    """Export what the stored checkpoint (ConfigMap ``data``) covers past the exported mark; the segment or None."""
    key = audit_exported(stream)
    conn.set(key, NOTHING, nx=True)
    raw = data.get(STATE_KEY)
    note = data.get(CHECKPOINT_KEY)
    if not raw or not note:
        return None
    state = LogState.loads(raw)
    mark = conn.get(key)
    mark = mark.decode() if isinstance(mark, bytes) else (mark or NOTHING)
    cut = state.last_id
    if not cut or _sid(cut) <= _sid(mark):
        return None
    entries: list[tuple[str, bytes]] = []
    start = "-" if mark == NOTHING else f"({mark}"
    while True:
        batch = conn.xrange(stream, min=start, max=cut, count=CHUNK)
        for sid, fields in batch:
            sid = sid.decode() if isinstance(sid, bytes) else sid
            entries.append((sid, fields.get(b"r") or fields.get("r") or b""))
        if len(batch) < CHUNK:
            break
        start = f"({entries[-1][0]}"
    if not entries:
        conn.set(key, cut)
        return None
    path = write_segment(directory, state.origin, state.size, entries, note)
    conn.set(key, cut)  # only once the segment is on disk: the cap may now trim up to here
    log.info("audit export of %s: %d records to %s", stream, len(entries), path)
    return path
