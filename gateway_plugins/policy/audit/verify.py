"""Walk an audit stream and report the first broken link (pure logic over entries, heads, trim marks, checkpoints).

What a Redis writer without the audit key can do, and what reports it:

- change a record, or change it and recompute its MAC without the key: "MAC does not verify";
- delete or reorder records: a gap or a backwards ``seq`` in the chain;
- delete the tail and move the head back: the head is behind a checkpoint kept outside Redis;
- delete the stream, or point verify at a gateway with no records: "no audit records" (``allow_empty`` accepts);
- delete the oldest records: refused unless the stream's trim mark says the cap trimmed them (mark and first
  remaining record must link).
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from gateway_plugins.policy.audit.chain import GENESIS, checkpoint_tag, digest, parse_head, parse_tagged_head


@dataclass
class Report:
    ok: bool
    records: int = 0
    chains: int = 0
    problem: str | None = None
    stream_id: str | None = None
    chain: str | None = None
    seq: int | None = None
    per_chain: dict[str, int] = field(default_factory=dict)

    def message(self) -> str:
        if self.ok:
            return f"OK: {self.records} records in {self.chains} chains verified"
        where = f"stream id {self.stream_id}, " if self.stream_id else ""
        chain = f"chain {self.chain}, seq {self.seq}: " if self.chain else ""
        return f"TAMPERED: {where}{chain}{self.problem}"


@dataclass(frozen=True)
class Checkpoint:
    """A chain head the operator copied out of Redis after checking its tag: records up to ``seq`` existed."""

    seq: int
    mac: str
    tag: str


def _s(v: str | bytes) -> str:
    return v.decode() if isinstance(v, bytes) else v


def _first_problem(rec: dict, trim: tuple[int, str] | None, allow_trimmed: bool) -> str | None:
    seq, prev = int(rec["seq"]), rec["prev"]
    if trim is not None:
        tseq, tmac = trim
        if seq == tseq + 1 and hmac.compare_digest(prev, tmac):
            return None
        if seq <= tseq:
            return f"record seq {seq} is older than the trim mark (seq {tseq}): re-inserted record"
        return f"chain resumes at seq {seq} after the trim mark at seq {tseq}: records {tseq + 1}..{seq - 1} deleted"
    if seq == 1:
        return None if prev == GENESIS else "first record of the chain does not link to genesis (forged)"
    if allow_trimmed:
        return None
    return f"chain starts at seq {seq} with no trim mark: records 1..{seq - 1} deleted"


def _link_problem(rec: dict, seen: tuple[int, str] | None) -> str | None:
    seq, prev = int(rec["seq"]), rec["prev"]
    lseq, lhash = seen  # type: ignore[misc]
    if seq <= lseq:
        return f"seq {seq} after seq {lseq}: duplicated or reordered record"
    if seq > lseq + 1:
        return f"seq {seq} follows seq {lseq}: record(s) {lseq + 1}..{seq - 1} deleted or reordered"
    if prev != lhash:
        return f"prev does not match record seq {lseq} (forged or replaced record)"
    return None


def verify_entries(
    entries: Iterable[tuple[str | bytes, dict]],
    heads: dict,
    key: bytes,
    *,
    trims: dict | None = None,
    checkpoints: dict[str, Checkpoint] | None = None,
    allow_trimmed: bool = False,
    allow_empty: bool = False,
) -> Report:
    """``entries``: (stream id, fields) in stream order; ``heads``/``trims``: chain -> "seq:mac[:tag]" as in Redis;
    ``checkpoints``: chain -> :class:`Checkpoint` from outside Redis. ``allow_trimmed`` accepts a chain starting
    after seq 1 without a trim mark (records written before trim marks existed)."""
    trim_marks = {_s(c): parse_head(v) for c, v in (trims or {}).items()}
    checkpoints = checkpoints or {}
    for chain, cp in checkpoints.items():
        if not hmac.compare_digest(cp.tag, checkpoint_tag(key, chain, cp.seq, cp.mac)):
            return Report(False, problem="checkpoint tag does not verify with the audit key", chain=chain, seq=cp.seq)
    last: dict[str, tuple[int, str]] = {}
    at_checkpoint: dict[str, str] = {}
    count = 0
    for raw_id, fields in entries:
        sid = _s(raw_id)
        raw = fields.get(b"r", fields.get("r"))
        try:
            rec = json.loads(raw)
            chain, seq, mac = rec["chain"], int(rec["seq"]), rec["hash"]
            _ = rec["prev"]
        except Exception:
            return Report(False, count, len(last), "entry is not a valid audit record", sid)
        if not hmac.compare_digest(digest(rec, key), str(mac)):
            problem = "record MAC does not verify with the audit key (altered, or recomputed without the key)"
            return Report(False, count, len(last), problem, sid, chain, seq)
        seen = last.get(chain)
        problem = (
            _first_problem(rec, trim_marks.get(chain), allow_trimmed) if seen is None else _link_problem(rec, seen)
        )
        if problem:
            return Report(False, count, len(last), problem, sid, chain, seq)
        last[chain] = (seq, mac)
        cp = checkpoints.get(chain)
        if cp is not None and cp.seq == seq:
            at_checkpoint[chain] = mac
        count += 1
    if count == 0 and not allow_empty:
        return Report(False, 0, 0, "no audit records (stream missing or empty; --allow-empty accepts that)")
    for raw_chain, raw_head in heads.items():
        chain = _s(raw_chain)
        hseq, hmac_ = parse_head(raw_head)
        seen = last.get(chain)
        trim = trim_marks.get(chain)
        if seen is None:
            if trim is not None and trim[0] == hseq:
                continue  # every record of this chain was trimmed by the cap
            problem = f"chain head is seq {hseq} but no record of it is in the stream"
            return Report(False, count, len(last), problem, None, chain, hseq)
        if seen[0] < hseq:
            problem = f"stream ends at seq {seen[0]} but head says {hseq}: tail deleted"
            return Report(False, count, len(last), problem, None, chain, seen[0] + 1)
        if seen[0] == hseq and seen[1] != hmac_:
            problem = "last record's MAC differs from the chain head (tail replaced)"
            return Report(False, count, len(last), problem, None, chain, hseq)
        # seen > head happens only when a write raced this read (heads are read first); accept it.
    for chain in last:
        if chain not in heads and chain.encode() not in heads:
            return Report(
                False, count, len(last), "chain has no head entry (heads deleted)", None, chain, last[chain][0]
            )
    for chain, cp in sorted(checkpoints.items()):
        seen = last.get(chain)
        trim = trim_marks.get(chain)
        if seen is None or seen[0] < cp.seq:
            if trim is not None and trim[0] >= cp.seq:
                continue  # trimmed by the cap past the checkpoint: nothing left to compare
            end = f"ends at seq {seen[0]}" if seen else "has no record"
            problem = f"chain {end} but a checkpoint outside Redis says seq {cp.seq} existed: tail truncated"
            return Report(False, count, len(last), problem, None, chain, cp.seq)
        if chain in at_checkpoint and not hmac.compare_digest(at_checkpoint[chain], cp.mac):
            problem = "record at the checkpoint differs from the checkpoint (chain rewritten)"
            return Report(False, count, len(last), problem, None, chain, cp.seq)
    return Report(True, count, len(last), per_chain={c: s for c, (s, _) in last.items()})


def parse_checkpoints(document: str | bytes) -> dict[str, Checkpoint]:
    """The checkpoint ConfigMap's ``checkpoints.json``: ``{chain: "seq:mac:tag"}``."""
    data = json.loads(document)
    if not isinstance(data, dict):
        raise ValueError("checkpoints: expected a JSON object {chain: 'seq:mac:tag'}")
    out = {}
    for chain, value in data.items():
        seq, mac, tag = parse_tagged_head(value)
        out[chain] = Checkpoint(seq, mac, tag)
    return out


STREAM_PAGE = 1000


def stream_entries(client, stream: str, start: str = "-", end: str = "+") -> Iterator[tuple[bytes, dict]]:
    """Every entry of ``stream`` between the ids ``start`` and ``end``, read page by page (sync redis client)."""
    cursor = start
    first = True
    while True:
        page = client.xrange(stream, min=cursor if first else f"({cursor}", max=end, count=STREAM_PAGE)
        first = False
        if not page:
            return
        yield from page
        cursor = page[-1][0].decode()
        if len(page) < STREAM_PAGE:
            return
