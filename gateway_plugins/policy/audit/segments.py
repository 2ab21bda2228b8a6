"""Sealed export segments of the audit log: records plus the signed checkpoint that covers them, on a filesystem.

The operator's checkpoint round (when the LLMGateway sets ``spec.audit.export``) writes, after each signed checkpoint
is stored, the records logged since the last segment into one file and only then moves the stream's exported mark
(``<stream>:exported``) to the last of them; the proxies' cap never trims past that mark. A segment is JSON Lines:

- a header ``{"kind": "kubegate-audit-segment", "v": 1, "origin", "first_leaf", "size", "first_id", "last_id",
  "records"}``: leaves ``[first_leaf, size)`` of the log, stream ids ``first_id`` .. ``last_id``;
- one line per record ``{"id": <stream id>, "r": <the record exactly as stored, the Merkle leaf's bytes>}``;
- a last line ``{"checkpoint": <the signed note of the tree of size records>}``.

On a volume it is written to a temporary name, fsync'd, renamed to ``seg-<first_leaf>-<size>.jsonl`` and the
directory fsync'd: a crash leaves a whole segment or none, and a round retried after a crash writes the same file
again. In a bucket (``gateway_operator.reconcile.audits3``) the same bytes are one object of that name.
:func:`verify_segments` checks a directory with the log's public key only.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from gateway_plugins.policy.audit import tlog
from gateway_plugins.policy.audit.note import NoteError, Verifier, open_checkpoint

KIND = "kubegate-audit-segment"


class SegmentError(ValueError):
    """A segment that is malformed, not signed by the log's key, or whose records do not hash to its checkpoint."""


def segment_name(first_leaf: int, size: int) -> str:
    return f"seg-{first_leaf:012d}-{size:012d}.jsonl"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def render_segment(origin: str, size: int, entries: list[tuple[str, bytes]], note: str) -> tuple[str, bytes]:
    """(name, bytes) of the segment sealing ``entries`` (stream id, stored record), the last ``len(entries)`` leaves
    of the ``size``-leaf tree whose signed checkpoint is ``note``: the same bytes whatever the destination."""
    if not entries or len(entries) > size:
        raise ValueError(f"a segment holds 1 to {size} records, not {len(entries)}")
    first_leaf = size - len(entries)
    header = {
        "kind": KIND,
        "v": 1,
        "origin": origin,
        "first_leaf": first_leaf,
        "size": size,
        "first_id": entries[0][0],
        "last_id": entries[-1][0],
        "records": len(entries),
    }
    lines = [json.dumps(header)]
    lines += [json.dumps({"id": sid, "r": raw.decode()}, ensure_ascii=False) for sid, raw in entries]
    lines.append(json.dumps({"checkpoint": note}))
    return segment_name(first_leaf, size), ("\n".join(lines) + "\n").encode()


def write_segment(
    directory: str | os.PathLike, origin: str, size: int, entries: list[tuple[str, bytes]], note: str
) -> Path:
    """Seal ``entries`` into one segment file (:func:`render_segment`)."""
    name, body = render_segment(origin, size, entries, note)
    return write_bytes(directory, name, body)


def write_bytes(directory: str | os.PathLike, name: str, body: bytes) -> Path:
    """Write a rendered segment: temporary name, fsync, rename, fsync of the directory."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    target = out / name
    fd, tmp = tempfile.mkstemp(dir=out, prefix=".seg-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(body)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(out)
    return target


def read_segment(path: Path) -> tuple[dict, list[tuple[str, bytes]], str]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, ValueError) as exc:
        raise SegmentError(f"{path.name}: not a segment ({type(exc).__name__})") from None
    return parse_segment(path.name, text)


def parse_segment(name: str, text: str) -> tuple[dict, list[tuple[str, bytes]], str]:
    """(header, records, checkpoint note) of a segment's text, e.g. an object fetched back from a bucket."""
    try:
        lines = text.splitlines()
        header = json.loads(lines[0])
        records = [(str(d["id"]), str(d["r"]).encode()) for d in map(json.loads, lines[1:-1])]
        note = json.loads(lines[-1])["checkpoint"]
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise SegmentError(f"{name}: not a segment ({type(exc).__name__})") from None
    if not isinstance(header, dict) or header.get("kind") != KIND or header.get("records") != len(records):
        raise SegmentError(f"{name}: not a segment, or its record count does not match its header")
    return header, records, note


def segments(directory: str | os.PathLike) -> list[Path]:
    return sorted(Path(directory).glob("seg-*.jsonl"))


def verify_segments(paths: Iterable[Path], verifier: Verifier) -> tuple[int, int, int]:
    """(segments, records, first leaf) once every segment's checkpoint is signed by ``verifier`` and the segments are
    contiguous; from leaf 0, also that the records hash to each segment's signed root (RFC 9162)."""
    frontier: list[bytes] = []
    count = records = 0
    first = expected = None
    for path in paths:
        header, entries, note = read_segment(path)
        try:
            cp = open_checkpoint(note, verifier)
        except NoteError as exc:
            raise SegmentError(f"{path.name}: {exc}") from None
        if cp.size != header["size"] or header["first_leaf"] != cp.size - len(entries):
            raise SegmentError(f"{path.name}: header does not match its checkpoint of {cp.size} records")
        if expected is not None and header["first_leaf"] != expected:
            raise SegmentError(f"{path.name}: starts at leaf {header['first_leaf']}, expected {expected} (a gap)")
        if first is None:
            first = header["first_leaf"]
        if first == 0:
            for i, (_, raw) in enumerate(entries):
                frontier = tlog.append(frontier, header["first_leaf"] + i, tlog.leaf_hash(raw))
            if tlog.frontier_root(frontier) != cp.root:
                raise SegmentError(f"{path.name}: records do not hash to the signed root of {cp.size} records")
        expected = cp.size
        count += 1
        records += len(entries)
    return count, records, first or 0
