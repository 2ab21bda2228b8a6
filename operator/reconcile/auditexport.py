"""Retention by export (``spec.audit.export``): after each checkpoint round, the records the stored checkpoint covers
and that a destination does not hold yet go into one sealed segment (``gateway_plugins.policy.audit.segments``) there:
the export volume (``$KUBEGATE_AUDIT_EXPORT_DIR/<namespace>/<gateway>/``, ``enabled``) and/or an S3 bucket with
object lock (``s3``, ``reconcile.audits3``).

Each destination has its own mark (hash ``<stream>:exported-to``), moved only once the segment is stored there; the
stream's exported mark (``<stream>:exported``), which the proxies' cap never trims past, is the lowest mark of the
configured destinations. So a record leaves Redis only once every destination holds it and a checkpoint covers it,
and a destination that is down (or added later) holds the cap back instead of losing records.

A round retried after a crash (or after an upload whose answer was lost) first looks for a segment that starts at the
same leaf: one found is adopted when its records are exactly the stream's, never rewritten (a locked object cannot
be), and the mark moves to its last record.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol

import redis

from gateway_plugins.policy.audit.segments import SegmentError, parse_segment, render_segment, write_bytes
from gateway_plugins.policy.audit.transparency import CHECKPOINT_KEY, STATE_KEY, LogState
from gateway_plugins.policy.keys import audit_export_marks, audit_exported

log = logging.getLogger("kubegate.operator")
EXPORT_DIR_ENV = "KUBEGATE_AUDIT_EXPORT_DIR"
NOTHING = "0-0"  # the mark before any record: set when export is enabled, so nothing is trimmed until exported
CHUNK = 10_000
VOLUME = "volume"
S3 = "s3"


class ExportProblem(ValueError):
    """A destination that cannot be used as configured; the text names the field and the fix (no secrets)."""


class Destination(Protocol):
    def find(self, first_leaf: int) -> tuple[str, str] | None:
        """(name, text) of a stored segment that starts at ``first_leaf``, if any."""

    def put(self, name: str, body: bytes) -> str:
        """Store a segment durably; where it went (path or object key)."""


class VolumeDestination:
    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = Path(directory)

    def find(self, first_leaf: int) -> tuple[str, str] | None:
        for path in sorted(self.directory.glob(f"seg-{first_leaf:012d}-*.jsonl")):
            return path.name, path.read_text(encoding="utf-8")
        return None

    def put(self, name: str, body: bytes) -> str:
        return str(write_bytes(self.directory, name, body))


def export_dir() -> str | None:
    return os.environ.get(EXPORT_DIR_ENV) or None


@contextlib.contextmanager
def volume(ns: str, name: str):
    """The Gateway's directory on the export volume."""
    directory = export_dir()
    if directory is None:
        raise ExportProblem(
            f"spec.audit.export.enabled: no {EXPORT_DIR_ENV} on the operator; set the chart value "
            "operator.auditExport.claimName (records are kept in Redis meanwhile)"
        )
    yield VolumeDestination(os.path.join(directory, ns, name))


def _sid(value: str) -> tuple[int, int]:
    ms, _, seq = value.partition("-")
    return int(ms), int(seq or 0)


def _text(value: Any) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def disable(conn: Any, stream: str) -> None:
    """Export switched off: the cap applies again."""
    conn.delete(audit_exported(stream), audit_export_marks(stream))


def mark_of(conn: Any, stream: str, dest: str) -> str:
    """The destination's mark, created at :data:`NOTHING` (everything the stream still holds goes there). A volume
    export from before per-destination marks keeps its progress: the stream's mark was its mark."""
    marks = audit_export_marks(stream)
    mark = _text(conn.hget(marks, dest))
    if mark is None:
        legacy = _text(conn.get(audit_exported(stream))) if dest == VOLUME and not conn.exists(marks) else None
        mark = legacy or NOTHING
        conn.hsetnx(marks, dest, mark)
    return mark


def combine(conn: Any, stream: str, dests: list[str]) -> str:
    """Set the stream's exported mark to the lowest mark of ``dests`` (all configured ones); forget the others."""
    marks = audit_export_marks(stream)
    lowest = min((mark_of(conn, stream, d) for d in dests), key=_sid)
    stale = [f for f in map(_text, conn.hkeys(marks)) if f.partition(":")[0] not in dests]
    if stale:
        conn.hdel(marks, *stale)
    conn.set(audit_exported(stream), lowest)
    return lowest


def _entries(conn: Any, stream: str, mark: str, cut: str) -> list[tuple[str, bytes]]:
    entries: list[tuple[str, bytes]] = []
    start = "-" if mark == NOTHING else f"({mark}"
    while True:
        batch = conn.xrange(stream, min=start, max=cut, count=CHUNK)
        for sid, fields in batch:
            entries.append((_text(sid), fields.get(b"r") or fields.get("r") or b""))
        if len(batch) < CHUNK:
            return entries
        start = f"({entries[-1][0]}"


def export_to(conn: Any, stream: str, data: dict[str, str], dest: str, target: Destination) -> str | None:
    """Export to one destination what the stored checkpoint (ConfigMap ``data``) covers past its mark; where the
    last segment went, or None when there was nothing to export."""
    raw, note = data.get(STATE_KEY), data.get(CHECKPOINT_KEY)
    mark = mark_of(conn, stream, dest)
    if not raw or not note:
        return None
    state = LogState.loads(raw)
    cut = state.last_id
    where = None
    marks = audit_export_marks(stream)
    while cut and _sid(cut) > _sid(mark):
        entries = _entries(conn, stream, mark, cut)
        if not entries:
            conn.hset(marks, dest, cut)
            break
        first_leaf = state.size - len(entries)
        found = target.find(first_leaf)
        if found is not None:
            name, last = _adopt(found, entries, first_leaf)
            where = name
        else:
            name, body = render_segment(state.origin, state.size, entries, note)
            where, last = target.put(name, body), entries[-1][0]
        # Only once the segment is stored: the stream's mark (the lowest of these) may then pass it.
        conn.hset(marks, mapping={dest: last, f"{dest}:segment": name})
        log.info("audit export of %s to %s: %s (through %s)", stream, dest, name, last)
        mark = last
    return where


def _adopt(found: tuple[str, str], entries: list[tuple[str, bytes]], first_leaf: int) -> tuple[str, str]:
    """A segment stored by an earlier, interrupted round: (its name, its last stream id) if it holds exactly the
    stream's records from ``first_leaf`` on; otherwise a SegmentError (never overwritten: it may be locked)."""
    name, text = found
    header, records, _ = parse_segment(name, text)
    # Its header must describe its own records: the mark moves to header["last_id"], and an empty or mislabelled
    # segment (not ours) must not move it past records no segment holds.
    consistent = bool(records) and header.get("last_id") == records[-1][0] and header.get("first_id") == records[0][0]
    if not consistent or header.get("first_leaf") != first_leaf or records != entries[: len(records)]:
        raise SegmentError(
            f"{name}: a stored segment at leaf {first_leaf} holds other records than the audit stream; "
            "move it aside (or fix the destination) so the export can go on"
        )
    return name, str(header["last_id"])


def export_round(conn: Any, stream: str, data: dict[str, str], directory: str | os.PathLike) -> str | None:
    """Export to the volume ``directory`` only (the Gateway's sole destination); the segment's path or None."""
    where = export_to(conn, stream, data, VOLUME, VolumeDestination(directory))
    combine(conn, stream, [VOLUME])
    return where


Opener = Callable[[], AbstractContextManager[Destination]]


def describe(exc: BaseException) -> str:
    """What went wrong, safe for a log line and the status: our own errors' text, else an S3 error code or the
    exception's class (a client library's message may echo request details)."""
    if isinstance(exc, ExportProblem | SegmentError):
        return str(exc)
    code = (getattr(exc, "response", None) or {}).get("Error", {}).get("Code")
    return f"S3 error {code}" if code else type(exc).__name__


def export_all(conn: Any, stream: str, data: dict[str, str], dests: dict[str, Opener]) -> dict[str, Any]:
    """One round to every configured destination, then the stream's mark set to the lowest; the Gateway's
    ``status.auditExport``. A destination that fails (down, misconfigured) only holds the cap back: the others go on,
    and it catches up from its own mark in a later round. Redis errors propagate (nothing can be marked)."""
    status: dict[str, Any] = {}
    for dest, open_ in dests.items():
        problem = ""
        try:
            with open_() as target:
                export_to(conn, stream, data, dest, target)
        except redis.RedisError:
            raise
        except Exception as exc:  # any destination failure: recorded, retried next round, never fatal to the others
            problem = describe(exc)
            log.warning("audit export of %s to %s failed (%s); retried next round", stream, dest, problem)
        marks = {_text(k): _text(v) for k, v in conn.hgetall(audit_export_marks(stream)).items()}
        status[dest] = {"exportedThrough": marks.get(dest) or NOTHING, "error": problem}
        if marks.get(f"{dest}:segment"):
            status[dest]["lastSegment"] = marks[f"{dest}:segment"]
    lowest = combine(conn, stream, list(dests))
    status["exportedThrough"] = lowest
    status["lagSeconds"] = lag(conn, stream, lowest)
    return status


def lag(conn: Any, stream: str, mark: str, now: float | None = None) -> int:
    """Seconds since the oldest record not yet held by every destination was written; 0 when there is none."""
    start = "-" if mark == NOTHING else f"({mark}"
    oldest = conn.xrange(stream, min=start, count=1)
    if not oldest:
        return 0
    ms = int(_text(oldest[0][0]).split("-")[0])
    return max(0, int((time.time() if now is None else now) - ms / 1000))
