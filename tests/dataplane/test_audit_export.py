"""Retention by export (#23 item 4): sealed segments on a filesystem; the stream trimmed only past what is exported
and checkpointed; an export outage loses no record (the cap waits)."""

from __future__ import annotations

import json

import pytest
from gateway_operator.reconcile.auditexport import disable, export_round
from gateway_operator.reconcile.auditlog import log_round

from gateway_plugins.audit import AuditWriter
from gateway_plugins.policy.audit.note import NoteSigner
from gateway_plugins.policy.audit.segments import SegmentError, segments, verify_segments
from gateway_plugins.policy.keys import audit_exported
from tests.dataplane.test_audit import KEY, STREAM, aclient, rec, sync
from tests.dataplane.test_audit_tlog_stream import ORIGIN, run
from tests.harness.redis import RedisServer


@pytest.fixture
def rds(tmp_path):
    server = RedisServer(workdir=tmp_path, persistent=True).start()
    yield server
    server.stop()


async def write(server, start: int, n: int, maxlen: int) -> None:
    w = AuditWriter(aclient(server), STREAM, batch=7, key=KEY, maxlen=maxlen)
    await w.start()
    for i in range(start, start + n):
        w.submit(rec(i))
    await w.close()


def request_ids(server) -> list[str]:
    return [json.loads(f[b"r"])["request_id"] for _, f in sync(server).xrange(STREAM)]


def exported_ids(directory) -> list[str]:
    out = []
    for path in segments(directory):
        lines = path.read_text().splitlines()[1:-1]
        out += [json.loads(json.loads(line)["r"])["request_id"] for line in lines]
    return out


async def test_the_cap_trims_only_what_is_exported_and_checkpointed(rds, tmp_path, capsys):
    conn = sync(rds)
    signer = NoteSigner.generate(ORIGIN)
    out = tmp_path / "export"
    data: dict[str, str] = {}

    def round_() -> None:
        nonlocal data
        log_data, stopped = log_round(conn, STREAM, KEY, signer, data)
        assert stopped is None
        data = {**data, **log_data}  # the ConfigMap is stored before the export reads it
        export_round(conn, STREAM, data, out)

    round_()  # export enabled before any record: the mark exists, nothing may be trimmed
    assert conn.get(audit_exported(STREAM)) == b"0-0"
    await write(rds, 0, 50, maxlen=10)
    assert len(request_ids(rds)) == 50  # the cap of 10 waits for the export
    round_()
    assert exported_ids(out) == [f"r{i}" for i in range(50)]
    await write(rds, 50, 20, maxlen=10)
    assert request_ids(rds) == [f"r{i}" for i in range(50, 70)]  # exported ones trimmed, the rest kept

    # Export outage: the directory cannot be written. Nothing is marked, nothing past the mark trimmed.
    blocked = tmp_path / "blocked"
    blocked.write_text("not a directory")
    log_data, _ = log_round(conn, STREAM, KEY, signer, data)
    data = {**data, **log_data}
    with pytest.raises(OSError):
        export_round(conn, STREAM, data, blocked)
    await write(rds, 70, 30, maxlen=10)
    assert request_ids(rds) == [f"r{i}" for i in range(50, 100)]
    watcher = AuditWriter(aclient(rds), STREAM, key=KEY)  # what each proxy reports as export lag
    oldest = int(sync(rds).xrange(STREAM, count=1)[0][0].split(b"-")[0]) / 1000
    assert await watcher.export_lag(now=oldest + 42) == pytest.approx(42, abs=0.01)
    round_()  # back: the export catches up, the next write trims
    await write(rds, 100, 1, maxlen=10)
    assert exported_ids(out) == [f"r{i}" for i in range(100)]
    assert len(request_ids(rds)) == 10
    round_()  # r100 into a segment of its own
    assert await watcher.export_lag() == 0.0

    # The segments check with the public key only, offline.
    assert verify_segments(segments(out), signer.verifier()) == (3, 101, 0)
    code, text, err = run(capsys, "verify", "--public-key", signer.vkey(), "--segments", str(out))
    assert code == 0 and "OK: 101 records in 3 exported segments hash to their signed roots" in text, err
    code, _, err = run(capsys, "verify", "--public-key", NoteSigner.generate(ORIGIN).vkey(), "--segments", str(out))
    assert code == 1 and "not signed by" in err, err
    second = segments(out)[1]
    second.write_text(second.read_text().replace('\\"prompt_tokens\\":60', '\\"prompt_tokens\\":0', 1))
    with pytest.raises(SegmentError, match="do not hash to the signed root"):
        verify_segments(segments(out), signer.verifier())
    second.unlink()
    with pytest.raises(SegmentError, match="starts at leaf 100, expected 50"):
        verify_segments(segments(out), signer.verifier())
    segments(out)[0].unlink()  # an export that starts later: signatures and contiguity only
    assert verify_segments(segments(out), signer.verifier()) == (1, 1, 100)

    disable(conn, STREAM)  # export switched off: the cap applies again
    assert await watcher.export_lag() is None
    await write(rds, 101, 30, maxlen=10)
    assert len(request_ids(rds)) == 10


async def test_the_checkpoint_round_exports_per_gateway_spec(rds, tmp_path, monkeypatch, caplog):
    """``reconcile.checkpoints._export``: off removes the mark; on without a directory keeps every record (mark at
    0-0, a warning); on with one writes ``<dir>/<namespace>/<gateway>/`` segments."""
    from gateway_operator.reconcile import checkpoints

    conn = sync(rds)
    signer = NoteSigner.generate(ORIGIN)
    await write(rds, 0, 5, maxlen=1_000_000)
    data, _ = log_round(conn, STREAM, KEY, signer, {})
    gw = {"metadata": {"namespace": "t", "name": "main"}, "spec": {"audit": {"export": {"enabled": True}}}}
    monkeypatch.delenv("KUBEGATE_AUDIT_EXPORT_DIR", raising=False)
    checkpoints._export(gw, rds.url, STREAM, data)
    assert conn.get(audit_exported(STREAM)) == b"0-0" and "no KUBEGATE_AUDIT_EXPORT_DIR" in caplog.text
    monkeypatch.setenv("KUBEGATE_AUDIT_EXPORT_DIR", str(tmp_path / "pv"))
    checkpoints._export(gw, rds.url, STREAM, data)
    assert exported_ids(tmp_path / "pv" / "t" / "main") == [f"r{i}" for i in range(5)]
    checkpoints._export({**gw, "spec": {}}, rds.url, STREAM, data)
    assert conn.get(audit_exported(STREAM)) is None


async def test_kubegate_audit_verify_segments_entry_point(rds, tmp_path):
    from tests.dataplane.test_cli import run as kubegate

    conn = sync(rds)
    signer = NoteSigner.generate(ORIGIN)
    await write(rds, 0, 3, maxlen=1_000_000)
    data, _ = log_round(conn, STREAM, KEY, signer, {})
    export_round(conn, STREAM, data, tmp_path / "seg")
    ok = kubegate("audit", "verify", "--public-key", signer.vkey(), "--segments", str(tmp_path / "seg"))
    assert ok.returncode == 0 and "OK: 3 records in 1 exported segments" in ok.stdout, ok.stderr
