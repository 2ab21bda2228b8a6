"""The audit stream as a transparency log: what the operator keeps and signs, what a prover and a verifier do
(pure logic over stream entries; the callers read Redis and the ConfigMap).

- The operator reads the stream past the last entry it logged, checks each record's MAC with the audit key (a
  Redis writer without the key cannot get a record into the log; such a record stops the log there, reported),
  appends its leaf to the frontier, and signs a checkpoint (``note``) over the new size and root.
- Its state (``tlog-state`` in the checkpoint ConfigMap): the origin, tree size, stream ids of the first and last
  leaf, the frontier, and every ``ANCHOR_EVERY`` leaves an *anchor* (size, stream id of its last leaf, frontier).
  The stream's cap trims the oldest records; a prover then starts from the oldest anchor still in the stream.
  Anchors are not signed and need not be: every proof is checked against a signed root before it is shown.
- ``prove``: the inclusion proof of the record(s) with a request id against the latest checkpoint; ``verify``
  (public key only): the records in the stream hash to the signed root, proofs, consistency of two checkpoints.
"""

from __future__ import annotations

import base64
import hmac
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from gateway_plugins.policy.audit import tlog
from gateway_plugins.policy.audit.chain import canonical, digest
from gateway_plugins.policy.audit.note import Checkpoint, NoteError, NoteSigner, Verifier, open_checkpoint

STATE_KEY = "tlog-state"
CHECKPOINT_KEY = "tlog-checkpoint"
PUBLIC_KEY_KEY = "tlog-public-key"
ANCHOR_EVERY = 16384
MAX_ANCHORS = 64


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def _unb64(s: str) -> bytes:
    return base64.b64decode(s, validate=True)


def _sid(value: str | bytes) -> tuple[int, int]:
    text = value.decode() if isinstance(value, bytes) else value
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


@dataclass
class Anchor:
    size: int
    last_id: str
    frontier: list[bytes]

    def to_json(self) -> dict[str, Any]:
        return {"size": self.size, "last_id": self.last_id, "frontier": [_b64(h) for h in self.frontier]}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Anchor:
        return cls(int(d["size"]), str(d["last_id"]), [_unb64(h) for h in d["frontier"]])


@dataclass
class LogState:
    origin: str
    size: int = 0
    first_id: str | None = None
    last_id: str | None = None
    frontier: list[bytes] = field(default_factory=list)
    anchors: list[Anchor] = field(default_factory=list)

    def root(self) -> bytes:
        return tlog.frontier_root(self.frontier)

    def dumps(self) -> str:
        return json.dumps(
            {
                "origin": self.origin,
                "size": self.size,
                "first_id": self.first_id,
                "last_id": self.last_id,
                "frontier": [_b64(h) for h in self.frontier],
                "anchors": [a.to_json() for a in self.anchors],
            },
            sort_keys=True,
            separators=(",", ":"),
        )

    @classmethod
    def loads(cls, text: str | bytes) -> LogState:
        d = json.loads(text)
        state = cls(
            origin=str(d["origin"]),
            size=int(d["size"]),
            first_id=d.get("first_id"),
            last_id=d.get("last_id"),
            frontier=[_unb64(h) for h in d["frontier"]],
            anchors=[Anchor.from_json(a) for a in d.get("anchors") or []],
        )
        if len(state.frontier) != bin(state.size).count("1"):
            raise ValueError("tlog state: frontier does not fit the tree size")
        return state


def _raw(fields: dict) -> bytes:
    raw = fields.get(b"r", fields.get("r"))
    if raw is None:
        raise ValueError("entry has no record")
    return raw.encode() if isinstance(raw, str) else raw


def check_record(raw: bytes, key: bytes) -> str | None:
    """Why the operator must not log this record (None: it may)."""
    try:
        rec = json.loads(raw)
        mac = str(rec["hash"])
    except Exception:
        return "entry is not a valid audit record"
    if not hmac.compare_digest(digest(rec, key), mac):
        return "record MAC does not verify with the audit key (forged or altered in Redis)"
    if canonical(rec) != raw:
        return "record is not in canonical form"
    return None


def advance(
    state: LogState, entries: Iterable[tuple[str | bytes, dict]], key: bytes, first_stream_id: str | None = None
) -> tuple[LogState, str | None]:
    """Append the records of ``entries`` (stream order, past ``state.last_id``) whose MAC verifies; stops at the
    first that does not and returns why. ``first_stream_id``: the oldest entry still in the stream, to drop
    anchors nobody can start from any more."""
    refused = None
    for raw_id, fields in entries:
        sid = raw_id.decode() if isinstance(raw_id, bytes) else raw_id
        if state.last_id is not None and _sid(sid) <= _sid(state.last_id):
            continue
        try:
            raw = _raw(fields)
        except ValueError as exc:
            refused = f"stream id {sid}: {exc}"
            break
        problem = check_record(raw, key)
        if problem:
            refused = f"stream id {sid}: {problem}; the log stops before it"
            break
        state.frontier = tlog.append(state.frontier, state.size, tlog.leaf_hash(raw))
        state.size += 1
        state.last_id = sid
        if state.first_id is None:
            state.first_id = sid
        if state.size % ANCHOR_EVERY == 0:
            state.anchors.append(Anchor(state.size, sid, list(state.frontier)))
    if first_stream_id is not None:
        gone = [a for a in state.anchors if _sid(a.last_id) < _sid(first_stream_id)]
        keep = gone[-1:]  # the newest of the trimmed ones still lets a prover start at the stream's head
        state.anchors = keep + [a for a in state.anchors if _sid(a.last_id) >= _sid(first_stream_id)]
    state.anchors = state.anchors[-MAX_ANCHORS:]
    return state, refused


def sign(state: LogState, signer: NoteSigner) -> str:
    from gateway_plugins.policy.audit.note import sign_checkpoint

    return sign_checkpoint(signer, state.size, state.root())


# --- reading the log back out of the stream ---------------------------------------------------------------------


class LogError(ValueError):
    """The stream does not match the signed log, or a proof cannot be made or does not verify."""


@dataclass
class StreamLog:
    """The leaves the stream still holds for a tree of ``size`` leaves: a :class:`tlog.Tree`, the stream id and raw
    bytes of each leaf from ``tree.start`` on, and how many stream entries precede the first usable leaf."""

    tree: tlog.Tree
    ids: list[str]
    raws: list[bytes]
    uncovered: int


def _starts(state: LogState | None) -> list[tuple[int, str | None, list[bytes]]]:
    """(size, id of the last leaf before the start or None, frontier), smallest size first."""
    starts: list[tuple[int, str | None, list[bytes]]] = [(0, None, [])]
    if state is not None:
        starts += [(a.size, a.last_id, a.frontier) for a in sorted(state.anchors, key=lambda a: a.size)]
    return starts


def read_log(entries: Iterable[tuple[str | bytes, dict]], size: int, state: LogState | None = None) -> StreamLog:
    """The log of ``size`` leaves from the stream's entries (all of them, stream order). Leaf 0 is the entry
    ``state.first_id`` (without a state: the stream's first entry); once that was trimmed, the oldest anchor
    whose last leaf is still in the stream is where the leaves start."""
    listed = [(raw_id.decode() if isinstance(raw_id, bytes) else raw_id, fields) for raw_id, fields in entries]
    position = {sid: i for i, (sid, _) in enumerate(listed)}
    first_id = state.first_id if state is not None else (listed[0][0] if listed else None)
    chosen = None
    for start, last_id, frontier in _starts(state):
        if start > size:
            break
        if last_id is None:
            if size == 0:
                chosen = (0, len(listed), [])
                break
            if first_id is not None and first_id in position:
                chosen = (0, position[first_id], [])
                break
        elif last_id in position:
            chosen = (start, position[last_id] + 1, frontier)
            break
    if chosen is None:
        raise LogError(
            "the stream no longer holds the start of the log nor the end of any anchor (trimmed by the cap); "
            "records this old are proven from an export"
        )
    start, at, frontier = chosen
    needed = size - start
    tail = listed[at : at + needed]
    if len(tail) < needed:
        hint = "" if state is not None else " (or the cap trimmed the oldest: give the log's state, --tlog-state)"
        raise LogError(
            f"the stream holds {start + len(tail)} records of the log but the checkpoint says {size}: "
            f"records deleted from the stream{hint}"
        )
    raws = [_raw(fields) for _, fields in tail]
    tree = tlog.Tree([tlog.leaf_hash(r) for r in raws], start=start, frontier=frontier)
    return StreamLog(tree, [sid for sid, _ in tail], raws, at)


def open_verified(note: str, verifier: Verifier) -> Checkpoint:
    try:
        return open_checkpoint(note, verifier)
    except NoteError as exc:
        raise LogError(f"checkpoint: {exc}") from None


def check_stream(log: StreamLog, checkpoint: Checkpoint) -> None:
    if log.tree.root(checkpoint.size) != checkpoint.root:
        raise LogError(
            f"the stream's records do not hash to the signed root of the {checkpoint.size}-record log: a record "
            "was altered, inserted, deleted or reordered after it was logged"
        )


def uncovered_ids(entries: Iterable[tuple[str | bytes, dict]], log: StreamLog, request_id: str) -> list[str]:
    """Stream ids of records with this request id that precede the log's first usable leaf (no proof from Redis)."""
    out = []
    for i, (raw_id, fields) in enumerate(entries):
        if i >= log.uncovered:
            break
        try:
            if json.loads(_raw(fields)).get("request_id") == request_id:
                out.append(raw_id.decode() if isinstance(raw_id, bytes) else raw_id)
        except ValueError:
            continue
    return out


def prove(log: StreamLog, request_id: str, note: str, checkpoint: Checkpoint, old_note: str | None = None) -> list:
    """Proof documents (JSON-able) of every logged record with this request id; checked before they are returned."""
    out = []
    for offset, raw in enumerate(log.raws):
        try:
            rec = json.loads(raw)
        except ValueError:
            continue
        if rec.get("request_id") != request_id:
            continue
        index = log.tree.start + offset
        doc: dict[str, Any] = {
            "request_id": request_id,
            "stream_id": log.ids[offset],
            "record": raw.decode(),
            "leaf_index": index,
            "tree_size": checkpoint.size,
            "leaf_hash": _b64(tlog.leaf_hash(raw)),
            "inclusion_proof": [_b64(h) for h in log.tree.inclusion_proof(index, checkpoint.size)],
            "checkpoint": note,
        }
        if old_note is not None:
            doc["consistency"] = {"checkpoint": old_note}
        out.append(doc)
    return out


def add_consistency(docs: list, proof: list[bytes]) -> None:
    for doc in docs:
        doc["consistency"]["proof"] = [_b64(h) for h in proof]


def consistency(log: StreamLog, old: Checkpoint, new: Checkpoint) -> list[bytes]:
    if old.size > new.size:
        raise LogError(f"the older checkpoint has more records ({old.size}) than the newer ({new.size})")
    try:
        proof = log.tree.consistency_proof(old.size, new.size)
        tlog.verify_consistency(old.size, new.size, old.root, new.root, proof)
    except tlog.ProofError as exc:
        raise LogError(f"consistency from {old.size} to {new.size} records: {exc}") from None
    return proof


def verify_proof(doc: dict, verifier: Verifier, old_note: str | None = None) -> Checkpoint:
    """Check one ``prove`` document with the public key only: the checkpoint's signature, the record's leaf and
    its inclusion, and (when present or asked for) the consistency from an older checkpoint."""
    try:
        cp = open_verified(doc["checkpoint"], verifier)
        raw = doc["record"].encode()
        leaf = tlog.leaf_hash(raw)
        if json.loads(raw).get("request_id") != doc["request_id"]:
            raise LogError("the record does not carry the request id the proof is for")
        if int(doc["tree_size"]) != cp.size:
            raise LogError(f"proof is for a tree of {doc['tree_size']} records, its checkpoint has {cp.size}")
        proof = [_unb64(h) for h in doc["inclusion_proof"]]
        tlog.verify_inclusion(int(doc["leaf_index"]), cp.size, leaf, proof, cp.root)
        cons = doc.get("consistency")
        if old_note is not None and (cons is None or cons.get("checkpoint") != old_note):
            raise LogError("proof has no consistency proof from the checkpoint given with --old-checkpoint")
        if cons is not None:
            old = open_verified(cons["checkpoint"], verifier)
            tlog.verify_consistency(old.size, cp.size, old.root, cp.root, [_unb64(h) for h in cons["proof"]])
    except tlog.ProofError as exc:
        raise LogError(str(exc)) from None
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, LogError):
            raise
        raise LogError(f"not a proof document ({type(exc).__name__}: {exc})") from None
    return cp
