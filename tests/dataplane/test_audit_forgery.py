"""Issue 11's attacker: can write Redis, does not have the audit key. Every forgery makes `verify` fail, naming it."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway_plugins.audit import AuditWriter
from gateway_plugins.audit.writer import heads_key
from gateway_plugins.policy.audit.chain import canonical, checkpoint_tag, head_value, parse_tagged_head
from gateway_plugins.policy.audit.checkpoint import advance, dumps
from gateway_plugins.policy.keys import audit_trims
from tests.dataplane.test_audit import KEY, ROOT, STREAM, aclient, ids, rec, rewrite, sync, verify
from tests.harness.redis import RedisServer


@pytest.fixture
def rds(tmp_path):
    server = RedisServer(workdir=tmp_path, persistent=True).start()
    yield server
    server.stop()


async def write(server, n: int, **kwargs) -> AuditWriter:
    w = AuditWriter(aclient(server), STREAM, batch=5, key=KEY, **kwargs)
    await w.start()
    for i in range(n):
        w.submit(rec(i))
    await w.close()
    return w


def checkpoint_file(server, current: dict | None = None) -> str:
    """What the operator writes to the Gateway's checkpoint ConfigMap from the heads it reads now."""
    cps, refused = advance(current or {}, sync(server).hgetall(heads_key(STREAM)), KEY)
    assert not refused
    path = server.dir / "checkpoints.json"
    path.write_text(dumps(cps))
    return str(path)


def recompute_unkeyed(entries):
    """The old attack: change records, then recompute SHA-256 hashes, links and head as the scheme describes."""
    prev, out, last = None, [], None
    for sid, fields in entries:
        r = json.loads(fields[b"r"])
        if prev is not None:
            r["prev"] = prev
        r.pop("hash")
        r["hash"] = hashlib.sha256(canonical(r)).hexdigest()
        prev = r["hash"]
        out.append((sid, {b"r": json.dumps(r)}))
        last = r
    return out, last


async def test_altered_and_recomputed_chain_fails(rds, capsys):
    await write(rds, 6)
    entries = ids(rds)
    r3 = json.loads(entries[2][1][b"r"])
    r3["status"] = "error"
    entries[2] = (entries[2][0], {b"r": json.dumps(r3)})
    forged, last = recompute_unkeyed(entries)
    rewrite(rds, forged)
    sync(rds).hset(heads_key(STREAM), last["chain"], head_value(last["seq"], last["hash"]))
    code, msg = verify(rds, capsys)
    assert code == 1 and "MAC does not verify with the audit key" in msg and "seq 1" in msg, msg


async def test_deleted_and_reordered_records_fail(rds, capsys):
    await write(rds, 6)
    entries = ids(rds)
    rewrite(rds, entries[:2] + entries[3:])
    code, msg = verify(rds, capsys)
    assert code == 1 and "record(s) 3..3 deleted" in msg, msg
    # Same stream ids, records 2 and 3 swapped.
    rewrite(rds, [entries[0], (entries[1][0], entries[2][1]), (entries[2][0], entries[1][1]), *entries[3:]])
    code, msg = verify(rds, capsys)
    assert code == 1 and "reordered" in msg, msg


async def test_truncated_tail_with_head_moved_back_fails_against_checkpoint(rds, capsys):
    w = await write(rds, 10)
    cps = checkpoint_file(rds)
    assert await _ok(rds, capsys, "--checkpoints", cps)
    entries = ids(rds)
    # Delete the last 5 records and put back the genuine head the writer wrote after its first batch of 5 (the
    # attacker recorded it then): Redis is consistent again, tag included.
    rewrite(rds, entries[:5])
    five = json.loads(entries[4][1][b"r"])
    old_head = head_value(5, five["hash"], checkpoint_tag(KEY, w.chain, 5, five["hash"]))
    sync(rds).hset(heads_key(STREAM), w.chain, old_head)
    code, msg = verify(rds, capsys)
    assert code == 0, "without the checkpoint a consistent truncation is invisible: that is why checkpoints exist"
    code, msg = verify(rds, capsys, "--checkpoints", cps)
    assert code == 1 and "checkpoint outside Redis says seq 10 existed: tail truncated" in msg, msg
    # The operator does not move its checkpoint back either, and says why.
    _, refused = advance(json.loads(Path(cps).read_text()), sync(rds).hgetall(heads_key(STREAM)), KEY)
    assert refused and "behind checkpoint seq 10" in refused[0]


async def test_forged_head_and_forged_checkpoint_are_refused(rds, capsys):
    w = await write(rds, 3)
    sync(rds).hset(heads_key(STREAM), w.chain, head_value(99, "a" * 64, "b" * 64))
    _, refused = advance({}, sync(rds).hgetall(heads_key(STREAM)), KEY)
    assert refused == [f"{w.chain}: head tag does not verify (forged head)"]
    path = rds.dir / "forged.json"
    path.write_text(json.dumps({w.chain: head_value(2, "c" * 64, "d" * 64)}))
    code, msg = verify(rds, capsys, "--checkpoints", str(path))
    assert code == 1 and "checkpoint tag does not verify" in msg, msg


async def test_deleted_stream_fails_even_with_heads_gone(rds, capsys):
    await write(rds, 4)
    cps = checkpoint_file(rds)
    r = sync(rds)
    r.delete(STREAM, heads_key(STREAM))
    code, msg = verify(rds, capsys)
    assert code == 1 and f"stream {STREAM} does not exist" in msg, msg
    code, msg = verify(rds, capsys, "--allow-empty", "--checkpoints", cps)
    assert code == 1 and "has no record but a checkpoint outside Redis says seq 4 existed" in msg, msg


async def _ok(server, capsys, *extra) -> bool:
    code, msg = verify(server, capsys, *extra)
    assert code == 0, msg
    return True


async def test_trimming_by_the_cap_is_told_from_deletion(rds, capsys):
    w = await write(rds, 40, maxlen=15)
    entries = ids(rds)
    assert len(entries) == 15
    mark = sync(rds).hget(audit_trims(STREAM), w.chain)
    assert parse_tagged_head(mark)[0] == 25  # records 1..25 trimmed, and the stream says so
    assert json.loads(entries[0][1][b"r"])["seq"] == 26
    code, msg = verify(rds, capsys)
    assert code == 0 and "15 records in 1 chains" in msg, msg
    # Deleting the oldest remaining records without a matching trim mark is deletion, not trimming.
    rewrite(rds, entries[3:])
    code, msg = verify(rds, capsys)
    assert code == 1 and "after the trim mark at seq 25: records 26..28 deleted" in msg, msg


async def test_trimmed_chain_without_mark_is_deletion(rds, capsys):
    await write(rds, 8)
    entries = ids(rds)
    rewrite(rds, entries[2:])
    code, msg = verify(rds, capsys)
    assert code == 1 and "chain starts at seq 3 with no trim mark: records 1..2 deleted" in msg, msg


def test_checkpoint_tag_binds_chain_seq_and_mac():
    tag = checkpoint_tag(KEY, "c", 5, "m" * 64)
    assert tag != checkpoint_tag(KEY, "c", 6, "m" * 64) != checkpoint_tag(KEY, "d", 5, "m" * 64)
    assert tag != checkpoint_tag(b"x" * 32, "c", 5, "m" * 64)


async def test_export_follow_keeps_records_the_cap_trims(rds, tmp_path):
    out = tmp_path / "audit.jsonl"
    cmd = [sys.executable, "-m", "gateway_operator.audit_cli", "export", "--redis-url", rds.url, "--stream", STREAM]
    cmd += ["--out", str(out), "--follow", "--poll-seconds", "0.05"]
    follower = subprocess.Popen(cmd, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        w = AuditWriter(aclient(rds), STREAM, batch=5, key=KEY, maxlen=10)
        await w.start()
        for i in range(30):
            w.submit(rec(i))
            if i % 5 == 4:
                assert await w.flush(timeout=30)
                # Wait until the follower has this batch before the next one pushes it out of the capped stream.
                deadline = time.monotonic() + 60
                while len(out.read_text().splitlines() if out.exists() else []) < i + 1:
                    assert time.monotonic() < deadline and follower.poll() is None
                    time.sleep(0.02)
        await w.close()
    finally:
        follower.terminate()
        follower.wait(timeout=30)
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["seq"] for x in lines] == list(range(1, 31))
    assert len(ids(rds)) == 10  # the stream itself kept only the cap
    # A restarted follower resumes after the last exported id instead of duplicating or starting over.
    w2 = await write(rds, 3)
    follower = subprocess.Popen(cmd, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while len(out.read_text().splitlines()) < 33:
            assert time.monotonic() < deadline and follower.poll() is None
            time.sleep(0.05)
    finally:
        follower.terminate()
        follower.wait(timeout=30)
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(lines) == 33 and [x["chain"] for x in lines[30:]] == [w2.chain] * 3
