"""Retention by export to an S3-compatible bucket with object lock (#23 item 4), against a real S3 server
(versitygw, built by scripts/ensure-s3.sh; versioned buckets with object lock, as on AWS): segments under load,
object lock refusing deletion and rewriting, an S3 outage losing nothing while the trim waits, an upload whose
answer was lost adopted instead of duplicated, and the segments fetched back checked with the public key only."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import threading

import pytest
from botocore.exceptions import ClientError
from gateway_operator.reconcile import auditexport
from gateway_operator.reconcile.auditexport import S3, VOLUME, VolumeDestination, export_all
from gateway_operator.reconcile.auditlog import log_round
from gateway_operator.reconcile.audits3 import S3Destination, Target, destination, fetch_segments, s3_client

from gateway_plugins.audit import AuditWriter
from gateway_plugins.policy.audit.note import NoteSigner
from gateway_plugins.policy.audit.segments import render_segment, segments, verify_segments
from gateway_plugins.policy.keys import audit_exported
from tests.dataplane.test_audit import KEY, STREAM, aclient, rec, sync
from tests.dataplane.test_audit_tlog_stream import ORIGIN, run
from tests.harness.redis import RedisServer
from tests.harness.s3 import S3Server

BUCKET = "kubegate-audit"
PREFIX = "audit/t/main/"


@pytest.fixture
def rds(tmp_path):
    server = RedisServer(workdir=tmp_path, persistent=True).start()
    yield server
    server.stop()


@pytest.fixture
def s3server(tmp_path):
    server = S3Server(tmp_path / "s3").start()
    server.client().create_bucket(Bucket=BUCKET, ObjectLockEnabledForBucket=True)
    yield server
    server.stop()


def target(server: S3Server, mode: str = "COMPLIANCE", days: int = 1, **changes) -> Target:
    return Target(
        **{
            "endpoint": server.url,
            "bucket": BUCKET,
            "region": server.region,
            "prefix": PREFIX,
            "access_key_id": server.access_key,
            "secret_access_key": server.secret_key,
            "ca_pem": None,
            "path_style": True,
            "mode": mode,
            "retention_days": days,
            **changes,
        }
    )


class Gateway:
    """The operator's checkpoint round for one Gateway (``reconcile.checkpoints``: log round, ConfigMap stored,
    then ``export_all``), exporting to a volume and/or a bucket."""

    def __init__(self, server: RedisServer, volume=None, bucket: Target | None = None) -> None:
        self.conn = sync(server)
        self.signer = NoteSigner.generate(ORIGIN)
        self.data: dict[str, str] = {}
        self.dests: dict[str, auditexport.Opener] = {}
        if volume is not None:
            self.dests[VOLUME] = lambda: contextlib.nullcontext(VolumeDestination(volume))
        if bucket is not None:
            self.dests[S3] = lambda: destination(bucket)

    def round(self) -> dict:
        log_data, stopped = log_round(self.conn, STREAM, KEY, self.signer, self.data)
        assert stopped is None
        self.data = {**self.data, **log_data}
        return export_all(self.conn, STREAM, self.data, self.dests)


async def write(server, start: int, n: int, maxlen: int = 1_000_000, batch: int = 7) -> None:
    w = AuditWriter(aclient(server), STREAM, batch=batch, key=KEY, maxlen=maxlen)
    await w.start()
    for i in range(start, start + n):
        w.submit(rec(i))
        if i % 100 == 99:
            assert await w.flush(timeout=120)  # written (not dropped at close): the load is what reaches Redis
    assert await w.flush(timeout=120)
    await w.close()


def stream_ids(server) -> list[str]:
    return [json.loads(f[b"r"])["request_id"] for _, f in sync(server).xrange(STREAM)]


def ids_in(directory) -> list[str]:
    out = []
    for path in segments(directory):
        out += [json.loads(json.loads(line)["r"])["request_id"] for line in path.read_text().splitlines()[1:-1]]
    return out


def fetch(server: S3Server, out) -> tuple[int, list[str]]:
    return fetch_segments(server.client(), BUCKET, PREFIX, out)


async def test_segments_reach_the_bucket_under_load_locked_and_verifiable(rds, s3server, tmp_path, capsys):
    gw = Gateway(rds, volume=tmp_path / "pv", bucket=target(s3server, days=3))
    gw.round()
    assert sync(rds).get(audit_exported(STREAM)) == b"0-0"  # both destinations configured: nothing trimmed yet

    n = 3000
    done = threading.Event()
    rounds = []

    def rounds_while_writing() -> None:
        while not done.is_set():
            rounds.append(gw.round())

    exporter = asyncio.create_task(asyncio.to_thread(rounds_while_writing))
    await write(rds, 0, n, maxlen=200, batch=25)
    done.set()
    await exporter
    status = gw.round()
    assert all(not r[VOLUME]["error"] and not r[S3]["error"] for r in [*rounds, status]), rounds
    assert len(rounds) >= 2  # the export ran while records were being written

    want = [f"r{i}" for i in range(n)]
    got, notes = fetch(s3server, tmp_path / "fetched")
    assert notes == [] and got == len(segments(tmp_path / "fetched"))
    assert ids_in(tmp_path / "fetched") == want  # every record, once, in order
    assert ids_in(tmp_path / "pv") == want
    # The same sealed bytes in both destinations.
    assert [p.read_bytes() for p in segments(tmp_path / "fetched")] == [
        p.read_bytes() for p in segments(tmp_path / "pv")
    ]
    assert status[S3]["exportedThrough"] == status[VOLUME]["exportedThrough"] == status["exportedThrough"]
    assert status[S3]["lastSegment"] == segments(tmp_path / "fetched")[-1].name and status["lagSeconds"] == 0

    # Each object is locked: COMPLIANCE, about three days from its upload.
    s3 = s3server.client()
    for path in segments(tmp_path / "fetched"):
        held = s3.get_object_retention(Bucket=BUCKET, Key=PREFIX + path.name)["Retention"]
        left = held["RetainUntilDate"] - dt.datetime.now(dt.UTC)
        assert held["Mode"] == "COMPLIANCE" and dt.timedelta(days=2) < left <= dt.timedelta(days=3)

    # Only what both destinations hold leaves Redis: the next write trims to the cap.
    await write(rds, n, 1, maxlen=200)
    assert len(stream_ids(rds)) <= 201 and stream_ids(rds)[-1] == f"r{n}"

    # Fetched back, the segments check with the public key only (signed, contiguous from leaf 0, hashing to roots).
    assert verify_segments(segments(tmp_path / "fetched"), gw.signer.verifier())[1:] == (n, 0)
    code, text, err = run(capsys, "verify", "--public-key", gw.signer.vkey(), "--segments", str(tmp_path / "fetched"))
    assert code == 0 and f"OK: {n} records in {got} exported segments hash to their signed roots" in text, err


async def test_object_lock_refuses_deleting_or_rewriting_an_exported_segment(rds, s3server, tmp_path, capsys):
    gw = Gateway(rds, bucket=target(s3server, mode="COMPLIANCE"))
    await write(rds, 0, 10)
    key = PREFIX + gw.round()[S3]["lastSegment"]
    s3 = s3server.client()
    version = s3.list_object_versions(Bucket=BUCKET, Prefix=key)["Versions"][0]["VersionId"]

    def refused(**kw) -> str:
        with pytest.raises(ClientError) as err:
            s3.delete_object(Bucket=BUCKET, Key=key, VersionId=version, **kw)
        return err.value.response["Error"]["Code"]

    # COMPLIANCE: the server refuses to delete the locked version, even with the bypass, even for its root user,
    # and refuses to shorten its retention.
    assert refused() == "AccessDenied"
    assert refused(BypassGovernanceRetention=True) == "AccessDenied"
    with pytest.raises(ClientError, match="AccessDenied"):
        s3.put_object_retention(
            Bucket=BUCKET,
            Key=key,
            Retention={"Mode": "GOVERNANCE", "RetainUntilDate": dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)},
        )
    # A rewrite only adds a version, and a plain delete only a marker: the locked version stays, and it is the one
    # fetched and verified (the attempt is reported).
    forged = (
        s3.get_object(Bucket=BUCKET, Key=key)["Body"].read().replace(b'\\"prompt_tokens\\":3', b'\\"prompt_tokens\\":0')
    )
    s3.put_object(Bucket=BUCKET, Key=key, Body=forged, ChecksumAlgorithm="SHA256")
    s3.delete_object(Bucket=BUCKET, Key=key)
    got, notes = fetch(s3server, tmp_path / "fetched")
    assert got == 1 and notes == [
        f"{key}: 1 later version(s) ignored",
        f"{key}: a delete marker hides it; its locked version was fetched",
    ]
    assert verify_segments(segments(tmp_path / "fetched"), gw.signer.verifier())[1:] == (10, 0)
    # The same with the command line an auditor runs (credentials that can only read, here the server's root).
    from tests.dataplane.test_cli import run as kubegate

    env = {"AWS_ACCESS_KEY_ID": s3server.access_key, "AWS_SECRET_ACCESS_KEY": s3server.secret_key}
    argv = ["--bucket", BUCKET, "--prefix", PREFIX, "--endpoint", s3server.url, "--path-style"]
    fetched = kubegate("audit", "fetch-s3", *argv, "--out", str(tmp_path / "cli"), env=env)
    assert fetched.returncode == 0 and "fetched 1 segments" in fetched.stdout, fetched.stderr
    assert "1 later version(s) ignored" in fetched.stderr and "a delete marker hides it" in fetched.stderr
    ok = kubegate("audit", "verify", "--public-key", gw.signer.vkey(), "--segments", str(tmp_path / "cli"))
    assert ok.returncode == 0 and "OK: 10 records in 1 exported segments" in ok.stdout, ok.stderr
    bad = kubegate("audit", "fetch-s3", *argv, "--out", str(tmp_path / "x"), env={**env, "AWS_SECRET_ACCESS_KEY": "x"})
    assert bad.returncode == 1 and "S3 error SignatureDoesNotMatch" in bad.stderr, bad.stderr
    # The forged version does not verify (what a verifier would see if it took the newest version).
    (tmp_path / "forged").mkdir()
    (tmp_path / "forged" / segments(tmp_path / "fetched")[0].name).write_bytes(forged)
    code, _, err = run(capsys, "verify", "--public-key", gw.signer.vkey(), "--segments", str(tmp_path / "forged"))
    assert code == 1 and "do not hash to the signed root" in err, err
    # The export goes on past the delete marker: the next records go to a new segment, nothing is re-uploaded.
    await write(rds, 10, 5)
    assert gw.round()[S3]["error"] == ""
    assert fetch(s3server, tmp_path / "fetched2")[0] == 2
    assert ids_in(tmp_path / "fetched2") == [f"r{i}" for i in range(15)]


async def test_governance_mode_refuses_a_delete_without_the_bypass(rds, s3server):
    gw = Gateway(rds, bucket=target(s3server, mode="GOVERNANCE"))
    await write(rds, 0, 3)
    key = PREFIX + gw.round()[S3]["lastSegment"]
    s3 = s3server.client()
    version = s3.list_object_versions(Bucket=BUCKET, Prefix=key)["Versions"][0]["VersionId"]
    assert s3.get_object_retention(Bucket=BUCKET, Key=key)["Retention"]["Mode"] == "GOVERNANCE"
    with pytest.raises(ClientError, match="AccessDenied"):
        s3.delete_object(Bucket=BUCKET, Key=key, VersionId=version)


async def test_an_s3_outage_loses_nothing_and_holds_the_trim(rds, s3server, tmp_path):
    gw = Gateway(rds, volume=tmp_path / "pv", bucket=target(s3server))
    watcher = AuditWriter(aclient(rds), STREAM, key=KEY)  # what each proxy reports as export lag
    gw.round()  # export on before any record: the mark exists, nothing may be trimmed
    await write(rds, 0, 50, maxlen=10)
    gw.round()
    await write(rds, 50, 1, maxlen=10)
    assert stream_ids(rds) == [f"r{i}" for i in range(41, 51)]  # both hold r0..r49: trimmed to the cap

    s3server.stop()
    await write(rds, 51, 30, maxlen=10)
    status = gw.round()
    assert status[VOLUME]["error"] == "" and status[S3]["error"].startswith("EndpointConnectionError"), status
    # The volume has everything; the bucket's mark holds the stream's: nothing past r49 is trimmed.
    assert ids_in(tmp_path / "pv") == [f"r{i}" for i in range(81)]
    assert status["exportedThrough"] == status[S3]["exportedThrough"] != status[VOLUME]["exportedThrough"]
    await write(rds, 81, 20, maxlen=10)
    assert stream_ids(rds) == [f"r{i}" for i in range(50, 101)]  # r50.. wait for the bucket
    oldest = int(sync(rds).xrange(STREAM, min=f"({status['exportedThrough']}", count=1)[0][0].split(b"-")[0]) / 1000
    assert await watcher.export_lag(now=oldest + 600) == pytest.approx(600, abs=0.01)
    assert auditexport.lag(sync(rds), STREAM, status["exportedThrough"], now=oldest + 600) == 600

    s3server.start()  # back: the bucket catches up from its own mark, the trim follows
    status = gw.round()
    assert status[S3]["error"] == "" and status["exportedThrough"] == status[VOLUME]["exportedThrough"]
    await write(rds, 101, 1, maxlen=10)
    assert len(stream_ids(rds)) == 10
    gw.round()
    assert await watcher.export_lag() == 0.0
    got, _ = fetch(s3server, tmp_path / "fetched")
    assert ids_in(tmp_path / "fetched") == [f"r{i}" for i in range(102)] == ids_in(tmp_path / "pv")
    assert verify_segments(segments(tmp_path / "fetched"), gw.signer.verifier()) == (got, 102, 0)


async def test_an_upload_whose_answer_was_lost_is_adopted_not_duplicated(rds, s3server, tmp_path):
    t = target(s3server)
    gw = Gateway(rds, bucket=t)
    await write(rds, 0, 20)
    log_data, _ = log_round(gw.conn, STREAM, KEY, gw.signer, gw.data)
    gw.data = {**gw.data, **log_data}
    # The operator stored the segment, then died before moving its mark (or the answer never came back).
    entries = [(sid.decode(), f[b"r"]) for sid, f in gw.conn.xrange(STREAM)]
    name, body = render_segment(ORIGIN, 20, entries, gw.data["tlog-checkpoint"])
    with s3_client(t) as s3:
        S3Destination(s3, t).put(name, body)
    await write(rds, 20, 7)
    status = gw.round()  # a new checkpoint of 27: the stored 0..20 is adopted, 20..27 follows
    assert status[S3]["error"] == "" and status[S3]["lastSegment"] == "seg-000000000020-000000000027.jsonl"
    assert fetch(s3server, tmp_path / "fetched") == (2, [])  # one version each: nothing re-uploaded
    assert verify_segments(segments(tmp_path / "fetched"), gw.signer.verifier()) == (2, 27, 0)

    # Something else at the next leaf (another log's object): the export stops there and says so; nothing is
    # marked, so nothing is trimmed.
    await write(rds, 27, 3)
    with s3_client(t) as s3:
        S3Destination(s3, t).put("seg-000000000027-000000000030.jsonl", body)
    mark = gw.conn.get(audit_exported(STREAM))
    status = gw.round()
    assert "holds other records than the audit stream" in status[S3]["error"]
    assert gw.conn.get(audit_exported(STREAM)) == mark
    # Nor does an empty segment whose header claims a later last record move the mark past records it lacks.
    header = json.loads(body.splitlines()[0])
    empty = {**header, "first_leaf": 27, "size": 27, "records": 0, "last_id": "9999999999999-0"}
    note = json.loads(body.splitlines()[-1])
    with s3_client(t) as s3:
        S3Destination(s3, t).put(
            "seg-000000000027-000000000027.jsonl", (json.dumps(empty) + "\n" + json.dumps(note) + "\n").encode()
        )
    status = gw.round()
    assert "holds other records than the audit stream" in status[S3]["error"]
    assert gw.conn.get(audit_exported(STREAM)) == mark


async def test_a_bucket_without_object_lock_or_a_wrong_key_is_an_export_error(rds, s3server, tmp_path):
    s3server.client().create_bucket(Bucket="no-lock")
    await write(rds, 0, 5)
    gw = Gateway(rds, bucket=target(s3server, bucket="no-lock"))
    status = gw.round()
    assert status[S3]["error"] == "S3 error InvalidRequest" and status["exportedThrough"] == "0-0"
    # The server kept the object it refused to lock: a later round does not adopt it as exported.
    status = gw.round()
    assert "is not under object-lock retention" in status[S3]["error"] and status["exportedThrough"] == "0-0"
    status = Gateway(rds, bucket=target(s3server, secret_access_key="wrong")).round()
    assert status[S3]["error"] == "S3 error SignatureDoesNotMatch", status
    assert "wrong" not in json.dumps(status)


async def test_a_private_ca_is_trusted_only_when_given(rds, tmp_path):
    from tests.harness.controlplane import _Pki

    (tmp_path / "pki").mkdir()
    pki = _Pki(tmp_path / "pki")
    server = S3Server(tmp_path / "s3", tls=(pki.serving_cert, pki.serving_key)).start()
    try:
        server.client(ca_file=pki.ca_cert).create_bucket(Bucket=BUCKET, ObjectLockEnabledForBucket=True)
        await write(rds, 0, 5)
        status = Gateway(rds, bucket=target(server)).round()
        assert status[S3]["error"] == "SSLError", status  # not in the system trust store
        status = Gateway(rds, bucket=target(server, ca_pem=pki.ca_cert.read_text())).round()
        assert status[S3]["error"] == "" and status[S3]["lastSegment"].startswith("seg-000000000000-")
    finally:
        server.stop()


async def test_a_volume_export_from_before_per_destination_marks_keeps_its_progress(rds, s3server, tmp_path):
    """Upgrade: the stream's mark was the volume's; adding a bucket starts it at what the stream still holds."""
    await write(rds, 0, 10)
    gw = Gateway(rds, volume=tmp_path / "pv")
    gw.round()
    gw.conn.delete(f"{STREAM}:exported-to")  # as an operator before this change left it
    await write(rds, 10, 5)
    gw.dests[S3] = lambda: destination(target(s3server))
    status = gw.round()
    assert [p.name for p in segments(tmp_path / "pv")] == [
        "seg-000000000000-000000000010.jsonl",
        "seg-000000000010-000000000015.jsonl",
    ]
    assert status[S3]["exportedThrough"] == status[VOLUME]["exportedThrough"] == status["exportedThrough"]
    assert fetch(s3server, tmp_path / "fetched") == (1, []) and ids_in(tmp_path / "fetched") == [
        f"r{i}" for i in range(15)
    ]
