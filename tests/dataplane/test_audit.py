"""Audit trail against real redis-server processes: chain, tamper detection, CLI, concurrency, outage."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis
from gateway_operator.audit_cli import main as cli_main
from prometheus_client import REGISTRY

from gateway_plugins.audit import AuditWriter, build_record
from gateway_plugins.audit.record import FIELDS
from gateway_plugins.context import RequestContext
from gateway_plugins.policy.schema import Tenant
from tests.harness.procs import free_port
from tests.harness.redis import RedisServer

STREAM = "kubegate:t:audit"
ROOT = Path(__file__).resolve().parents[2]
# The Gateway's audit key (the operator generates one per Gateway into a Secret mounted only in proxies).
KEY = secrets.token_bytes(32)
KEY_B64 = base64.b64encode(KEY).decode()


@pytest.fixture
def rds(tmp_path):
    server = RedisServer(workdir=tmp_path, persistent=True).start()
    yield server
    server.stop()


def sync(server) -> redis.Redis:
    return redis.Redis.from_url(server.url)


def aclient(server) -> aioredis.Redis:
    return aioredis.Redis.from_url(server.url, socket_timeout=1, socket_connect_timeout=1, retry_on_error=[])


def rec(i: int) -> dict:
    return {"v": 1, "request_id": f"r{i}", "tenant": "acme", "status": "ok", "prompt_tokens": i}


async def write_n(server, n: int, chain: str | None = None) -> AuditWriter:
    w = AuditWriter(aclient(server), STREAM, chain_id=chain, batch=7, key=KEY)
    await w.start()
    for i in range(n):
        w.submit(rec(i))
    await w.close()
    return w


def verify(server, capsys, *extra: str) -> tuple[int, str]:
    key_file = server.dir / "audit.key"
    key_file.write_text(KEY_B64)
    code = cli_main(["verify", "--redis-url", server.url, "--stream", STREAM, "--key-file", str(key_file), *extra])
    out = capsys.readouterr()
    return code, out.out + out.err


def ids(server) -> list[tuple[bytes, dict]]:
    return sync(server).xrange(STREAM)


def rewrite(server, entries: list[tuple[bytes, dict]]) -> None:
    """Replace the stream's content keeping the given ids (XADD can't insert in the middle)."""
    r = sync(server)
    r.delete(STREAM)
    for sid, fields in entries:
        r.xadd(STREAM, fields, id=sid)


def metric(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_build_record_has_stable_fields_and_no_text():
    ctx = RequestContext(
        request_id="req-1",
        tenant=Tenant(id="acme"),
        key_id="k_ab12cd",
        requested_model="gpt-x",
        call_type="acompletion",
    )
    ctx.decisions = {"refused": "budget", "downgrade": {"from": "gpt-x", "to": "mini"}, "odd": {1, 2}}
    ctx.pii_counts = {"EMAIL_ADDRESS": 2}
    ctx.status, ctx.http_status = "refused", 402
    r = build_record(ctx)
    assert tuple(r) == FIELDS and r["v"] == 1
    assert r["tenant"] == "acme" and r["key_id"] == "k_ab12cd" and r["pii_counts"] == {"EMAIL_ADDRESS": 2}
    assert r["decisions"]["downgrade"] == {"from": "gpt-x", "to": "mini"}
    json.dumps(r, allow_nan=False)  # canonical-encodable


async def test_chain_verifies_and_export_round_trips(rds, capsys, tmp_path):
    w = await write_n(rds, 50)
    assert w.written == 50
    code, msg = verify(rds, capsys)
    assert code == 0, msg
    assert "50 records in 1 chains" in msg
    out = tmp_path / "a.jsonl"
    assert cli_main(["export", "--redis-url", rds.url, "--stream", STREAM, "--out", str(out)]) == 0
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["request_id"] for x in lines] == [f"r{i}" for i in range(50)]
    assert [x["seq"] for x in lines] == list(range(1, 51))
    raw = ids(rds)
    assert [x["stream_id"] for x in lines] == [i.decode() for i, _ in raw]
    # --since with a stream id is inclusive
    assert cli_main(["export", "--redis-url", rds.url, "--stream", STREAM, "--since", lines[10]["stream_id"]]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 40


async def test_altered_field_detected(rds, capsys):
    await write_n(rds, 10)
    entries = ids(rds)
    sid, fields = entries[4]
    body = json.loads(fields[b"r"])
    body["status"] = "ok-but-edited"
    entries[4] = (sid, {"r": json.dumps(body)})
    rewrite(rds, entries)
    code, msg = verify(rds, capsys)
    assert code == 1
    assert f"stream id {sid.decode()}" in msg and "seq 5" in msg and "altered" in msg


async def test_deleted_middle_record_detected(rds, capsys):
    w = await write_n(rds, 10)
    sid, _ = ids(rds)[3]
    sync(rds).xdel(STREAM, sid)
    code, msg = verify(rds, capsys)
    assert code == 1 and f"chain {w.chain}, seq 5" in msg and "4..4 deleted" in msg


async def test_deleted_tail_detected_via_head(rds, capsys):
    w = await write_n(rds, 10)
    for sid, _ in ids(rds)[-2:]:
        sync(rds).xdel(STREAM, sid)
    code, msg = verify(rds, capsys)
    assert code == 1 and f"chain {w.chain}, seq 9" in msg and "tail deleted" in msg


async def test_deleted_head_record_detected(rds, capsys):
    await write_n(rds, 5)
    sync(rds).xdel(STREAM, ids(rds)[0][0])
    code, msg = verify(rds, capsys)
    assert code == 1 and "starts at seq 2" in msg
    # MAXLEN trimming is the legitimate form of this; the operator can opt in.
    code, msg = verify(rds, capsys, "--allow-trimmed")
    assert code == 0, msg


async def test_reordered_records_detected(rds, capsys):
    await write_n(rds, 6)
    entries = ids(rds)
    (a_id, a), (b_id, b) = entries[2], entries[3]
    entries[2], entries[3] = (a_id, b), (b_id, a)
    rewrite(rds, entries)
    code, msg = verify(rds, capsys)
    assert code == 1 and f"stream id {a_id.decode()}" in msg and "seq 4" in msg and "reordered" in msg


async def test_replayed_copy_detected(rds, capsys):
    await write_n(rds, 4)
    r = sync(rds)
    r.xadd(STREAM, ids(rds)[1][1])  # a valid record appended again
    code, msg = verify(rds, capsys)
    assert code == 1 and "seq 2 after seq 4" in msg


async def test_inserted_forged_record_detected(rds, capsys):
    w = await write_n(rds, 4)
    from gateway_plugins.policy.audit.chain import seal

    r = sync(rds)
    last = json.loads(ids(rds)[-1][1][b"r"])
    # A forger who knows the scheme seals a well-formed record, but cannot also fix the head without
    # Redis access... and if they append it after the real tail, the prev link is right: so forge one
    # that claims to be seq 5 with a wrong prev (they don't know the real one in the middle case).
    forged = seal({"v": 1, "request_id": "evil"}, w.chain, 5, "f" * 64, KEY)
    r.xadd(STREAM, {"r": json.dumps(forged)})
    code, msg = verify(rds, capsys)
    assert code == 1 and "seq 5" in msg and "prev does not match" in msg
    assert last["seq"] == 4


async def test_two_writers_interleave_and_verify(rds, capsys):
    w1 = AuditWriter(aclient(rds), STREAM, batch=3, key=KEY)
    w2 = AuditWriter(aclient(rds), STREAM, batch=5, key=KEY)
    await w1.start()
    await w2.start()
    for i in range(200):
        (w1 if i % 2 else w2).submit(rec(i))
        if i % 17 == 0:
            await asyncio.sleep(0)
    await asyncio.gather(w1.close(), w2.close())
    chains = [json.loads(f[b"r"])["chain"] for _, f in ids(rds)]
    assert len(chains) == 200 and set(chains) == {w1.chain, w2.chain}
    # genuinely interleaved, not one block after the other
    switches = sum(1 for a, b in itertools.pairwise(chains) if a != b)
    assert switches > 2
    code, msg = verify(rds, capsys)
    assert code == 0 and "200 records in 2 chains" in msg, msg


def test_two_processes_interleave_and_verify(rds, capsys):
    script = (
        "import asyncio,sys\n"
        "import redis.asyncio as r\n"
        "from gateway_plugins.audit import AuditWriter\n"
        "async def m():\n"
        f"    w=AuditWriter(r.Redis.from_url('{rds.url}'),'{STREAM}',batch=4,key={KEY!r})\n"
        "    await w.start()\n"
        "    for i in range(300):\n"
        "        w.submit({'i':i})\n"
        "        if i%10==0: await asyncio.sleep(0.001)\n"
        "    await w.close()\n"
        "asyncio.run(m())\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", script], cwd=ROOT) for _ in range(2)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    code, msg = verify(rds, capsys)
    assert code == 0 and "600 records in 2 chains" in msg, msg


async def test_redis_restart_mid_load_loses_nothing(rds, capsys):
    w = AuditWriter(aclient(rds), STREAM, batch=16, max_backoff=0.2, key=KEY)
    await w.start()
    spooled_before = metric("kubegate_audit_records_total", outcome="spooled")
    n = 0

    async def load(count: int) -> None:
        nonlocal n
        for _ in range(count):
            w.submit(rec(n))
            n += 1
            await asyncio.sleep(0.001)

    await load(200)
    await asyncio.to_thread(rds.stop)
    await load(300)  # Redis is down: these must wait in the spool
    assert w.spool_depth > 0
    assert metric("kubegate_audit_spool_depth") == w.spool_depth
    assert metric("kubegate_audit_records_total", outcome="spooled") > spooled_before
    await asyncio.to_thread(rds.start)
    await load(200)
    assert await w.flush(timeout=30)
    await w.close()
    assert w.dropped == 0
    raw = ids(rds)
    assert len(raw) == n == 700
    assert [json.loads(f[b"r"])["request_id"] for _, f in raw] == [f"r{i}" for i in range(700)]
    code, msg = verify(rds, capsys)
    assert code == 0 and "700 records" in msg, msg
    assert metric("kubegate_audit_spool_depth") == 0


async def test_retry_after_a_lost_reply_writes_each_record_once(rds, capsys):
    """Redis committed the batch but its reply never came (a timeout on a loaded node): the writer retries the
    batch, and the retry must not add a second copy of its records."""
    client = aclient(rds)
    real_pipeline = client.pipeline
    lost = {"replies": 2}

    def pipeline(*args, **kwargs):
        pipe = real_pipeline(*args, **kwargs)
        real_execute = pipe.execute

        async def execute(*eargs, **ekwargs):
            result = await real_execute(*eargs, **ekwargs)
            if lost["replies"]:
                lost["replies"] -= 1
                raise redis.exceptions.TimeoutError("reply lost after commit")
            return result

        pipe.execute = execute
        return pipe

    client.pipeline = pipeline
    w = AuditWriter(client, STREAM, batch=7, max_backoff=0.05, key=KEY)
    await w.start()
    for i in range(20):
        w.submit(rec(i))
    assert await w.flush(timeout=10)
    await w.close()
    assert lost["replies"] == 0, "the lost replies were exercised"
    assert [json.loads(f[b"r"])["request_id"] for _, f in ids(rds)] == [f"r{i}" for i in range(20)]
    code, msg = verify(rds, capsys)
    assert code == 0 and "20 records" in msg, msg


async def test_spool_full_drops_oldest_and_verify_reports_gap(rds, capsys):
    dead = aioredis.Redis(port=free_port(), socket_connect_timeout=0.2, retry_on_error=[])
    w = AuditWriter(dead, STREAM, max_spool=5, max_backoff=0.05, key=KEY)
    await w.start()
    dropped_before = metric("kubegate_audit_records_total", outcome="dropped")
    for i in range(8):
        w.submit(rec(i))
    await asyncio.sleep(0.2)
    assert w.spool_depth == 5 and w.dropped == 3
    assert metric("kubegate_audit_records_total", outcome="dropped") - dropped_before == 3
    w.redis = aclient(rds)  # Redis "comes back"
    assert await w.flush(timeout=10)
    await w.close()
    assert [json.loads(f[b"r"])["seq"] for _, f in ids(rds)] == [4, 5, 6, 7, 8]
    code, msg = verify(rds, capsys)
    assert code == 1 and "starts at seq 4" in msg


async def test_submit_never_raises_without_redis():
    w = AuditWriter(None, STREAM, key=KEY)
    await w.start()
    w.submit(rec(1))
    w.submit({"bad": float("nan")})  # not canonical-encodable: dropped, not raised
    await asyncio.sleep(0.05)
    assert w.spool_depth == 1
    await w.close(timeout=0.1)


def test_module_entry_point_exit_codes(rds):
    r = sync(rds)
    env = {**os.environ, "KUBEGATE_AUDIT_KEY": KEY_B64}

    def run(*args: str) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "gateway_operator.audit_cli", "verify", *args]
        return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60, env=env)

    # A gateway that does not exist (or whose stream was deleted) is not "OK: 0 records".
    missing = run("--redis-url", rds.url, "--gateway", "nothing")
    assert missing.returncode == 1 and "stream kubegate:{default:nothing:audit} does not exist" in missing.stderr
    ok = run("--redis-url", rds.url, "--gateway", "nothing", "--allow-empty")
    assert ok.returncode == 0 and "OK: 0 records" in ok.stdout
    r.xadd("kubegate:{default:x:audit}", {"r": "not json"})
    bad = run("--redis-url", rds.url, "--gateway", "x")
    assert bad.returncode == 1 and "TAMPERED" in bad.stderr
    no_key = subprocess.run(
        [sys.executable, "-m", "gateway_operator.audit_cli", "verify", "--redis-url", rds.url, "--gateway", "x"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if k != "KUBEGATE_AUDIT_KEY"},
    )
    assert no_key.returncode != 0 and "needs the audit key" in no_key.stderr
    down = run("--redis-url", f"redis://127.0.0.1:{free_port()}/0")
    assert down.returncode == 2 and "--redis-url" in down.stderr
    time.sleep(0)


def _crash_while_redis_is_down(rds, spool: Path, count: int) -> str:
    """A writer process submits ``count`` records while Redis is down, waits for the spool file, then is killed."""
    script = (
        "import asyncio,os,signal,sys,time\n"
        "import redis.asyncio as r\n"
        "from gateway_plugins.audit import AuditWriter\n"
        "async def m():\n"
        f"    w=AuditWriter(r.Redis.from_url('{rds.url}',socket_connect_timeout=0.2),'{STREAM}',"
        f"spool_dir='{spool}',max_backoff=0.05,key={KEY!r})\n"
        "    await w.start()\n"
        f"    for i in range({count}): w.submit({{'v':1,'request_id':f'crashed{{i}}'}})\n"
        f"    while w._disk.size < {count}: await asyncio.sleep(0.01)\n"
        "    print(w.chain, flush=True)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "asyncio.run(m())\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == -9, done.stderr[-2000:]
    return done.stdout.strip()


async def test_records_spooled_on_disk_survive_a_crash_during_an_outage(rds, capsys, tmp_path):
    spool = tmp_path / "spool"
    await asyncio.to_thread(rds.stop)
    dead_chain = _crash_while_redis_is_down(rds, spool, 40)
    assert len(list(spool.glob("*/*.jsonl"))) == 1
    await asyncio.to_thread(rds.start)
    # The dead writer's first 15 records reached Redis before it died (a partly drained spool): they must
    # not be written twice.
    lines = [json.loads(x) for x in next(spool.glob("*/*.jsonl")).read_text().splitlines()]
    r = sync(rds)
    for line in lines[:15]:
        r.xadd(STREAM, {"r": line["r"]})
    r.hset(f"{STREAM}:heads", dead_chain, f"{lines[14]['seq']}:{lines[14]['hash']}")
    recovered_before = metric("kubegate_audit_records_total", outcome="recovered")

    w = AuditWriter(aclient(rds), STREAM, spool_dir=str(spool), max_backoff=0.05, key=KEY)
    await w.start()
    w.submit(rec(1))
    assert await w.flush(timeout=30)
    await w.close()

    assert w.recovered == 25
    assert metric("kubegate_audit_records_total", outcome="recovered") - recovered_before == 25
    crashed = [json.loads(f[b"r"])["request_id"] for _, f in ids(rds) if json.loads(f[b"r"])["chain"] == dead_chain]
    assert crashed == [f"crashed{i}" for i in range(40)]
    assert list(spool.glob("*/*.jsonl")) == []  # replayed files are removed; the live writer's empty one too
    code, msg = verify(rds, capsys)
    assert code == 0 and "41 records in 2 chains" in msg, msg


async def test_live_writers_spool_files_are_not_replayed_by_another(rds, tmp_path):
    spool = tmp_path / "spool"
    dead = RedisServer()  # never started: every write fails
    down = AuditWriter(aclient(dead), STREAM, spool_dir=str(spool), max_backoff=0.05, key=KEY)
    await down.start()
    for i in range(5):
        down.submit(rec(i))
    for _ in range(500):
        if down._disk.size == 5:
            break
        await asyncio.sleep(0.01)
    assert down._disk.size == 5
    up = AuditWriter(aclient(rds), STREAM, spool_dir=str(spool), max_backoff=0.05, key=KEY)
    await up.start()
    up.submit(rec(99))
    assert await up.flush(timeout=30)
    await up.close()
    assert up.recovered == 0 and len(ids(rds)) == 1  # the live writer's file is locked: not touched
    await down.close(timeout=0.2)
    assert len(list(spool.glob("*/*.jsonl"))) == 1  # left for the next writer, records intact
    other = AuditWriter(aclient(rds), "kubegate:other:audit", spool_dir=str(spool), max_backoff=0.05, key=KEY)
    await other.start()
    other.submit(rec(7))
    assert await other.flush(timeout=30)
    await other.close()
    assert other.recovered == 0  # another stream's writer never takes this stream's records
