"""Walk an audit stream and report the first broken link (pure logic over entries + heads)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field

from gateway_plugins.audit.chain import GENESIS, digest, parse_head


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
        return f"TAMPERED: {where}chain {self.chain}, seq {self.seq}: {self.problem}"


def _s(v: str | bytes) -> str:
    return v.decode() if isinstance(v, bytes) else v


def _link_problem(rec: dict, seen: tuple[int, str] | None, allow_trimmed: bool) -> str | None:
    seq, prev = int(rec["seq"]), rec["prev"]
    if digest(rec) != rec["hash"]:
        return "record content does not match its hash (altered)"
    if seen is None:
        if seq != 1 and not allow_trimmed:
            return f"chain starts at seq {seq}: records 1..{seq - 1} deleted (or trimmed: --allow-trimmed)"
        if seq == 1 and prev != GENESIS:
            return "first record of the chain does not link to genesis (forged)"
        return None
    lseq, lhash = seen
    if seq <= lseq:
        return f"seq {seq} after seq {lseq}: duplicated or reordered record"
    if seq > lseq + 1:
        return f"seq {seq} follows seq {lseq}: record(s) {lseq + 1}..{seq - 1} deleted or reordered"
    if prev != lhash:
        return f"prev hash does not match record seq {lseq} (forged or replaced record)"
    return None


def verify_entries(entries: Iterable[tuple[str | bytes, dict]], heads: dict, allow_trimmed: bool = False) -> Report:
    """``entries``: (stream id, fields) in stream order; ``heads``: chain -> "seq:hash".

    ``allow_trimmed`` accepts a chain whose first record in the stream has seq > 1 (MAXLEN trimming).
    """
    last: dict[str, tuple[int, str]] = {}
    count = 0
    for raw_id, fields in entries:
        sid = _s(raw_id)
        raw = fields.get(b"r", fields.get("r"))
        try:
            rec = json.loads(raw)
            chain, seq, hash_ = rec["chain"], int(rec["seq"]), rec["hash"]
            _ = rec["prev"]
        except Exception:
            return Report(False, count, len(last), "entry is not a valid audit record", sid)
        problem = _link_problem(rec, last.get(chain), allow_trimmed)
        if problem:
            return Report(False, count, len(last), problem, sid, chain, seq)
        last[chain] = (seq, hash_)
        count += 1
    for raw_chain, raw_head in heads.items():
        chain = _s(raw_chain)
        hseq, hhash = parse_head(raw_head)
        seen = last.get(chain)
        if seen is None:
            return Report(
                False,
                count,
                len(last),
                f"chain head is seq {hseq} but no record of it is in the stream",
                None,
                chain,
                hseq,
            )
        if seen[0] < hseq:
            return Report(
                False,
                count,
                len(last),
                f"stream ends at seq {seen[0]} but head says {hseq}: tail deleted",
                None,
                chain,
                seen[0] + 1,
            )
        if seen[0] == hseq and seen[1] != hhash:
            return Report(
                False,
                count,
                len(last),
                "last record's hash differs from the chain head (tail replaced)",
                None,
                chain,
                hseq,
            )
        # seen > head happens only when a write raced this read (heads are read first); accept it.
    for chain in last:
        if chain not in heads and chain.encode() not in heads:
            return Report(
                False, count, len(last), "chain has no head entry (heads deleted)", None, chain, last[chain][0]
            )
    return Report(True, count, len(last), per_chain={c: s for c, (s, _) in last.items()})
