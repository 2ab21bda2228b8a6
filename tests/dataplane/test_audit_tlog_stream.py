"""The audit transparency log over a real Redis stream: the operator's logging and signing, `kubegate audit prove`
and `verify --public-key` (no audit key), and issue 23's attacker: holds the audit HMAC key (as every proxy does)
but not the checkpoint signing key."""

from __future__ import annotations

import json

import pytest
from gateway_operator.audit_cli import main as cli_main

from gateway_plugins.audit.writer import heads_key
from gateway_plugins.policy.audit import transparency
from gateway_plugins.policy.audit.chain import GENESIS, canonical, checkpoint_tag, head_value, seal
from gateway_plugins.policy.audit.note import NoteSigner
from gateway_plugins.policy.audit.transparency import LogState, advance, sign
from tests.dataplane.test_audit import KEY, STREAM, ids, rewrite, sync, verify, write_n
from tests.harness.redis import RedisServer

ORIGIN = "kubegate.dev/t/main/0123abcd"


@pytest.fixture
def rds(tmp_path):
    server = RedisServer(workdir=tmp_path, persistent=True).start()
    yield server
    server.stop()


class Operator:
    """What the operator's round does (``reconcile.auditlog``), without Kubernetes: log new records, sign."""

    def __init__(self, server) -> None:
        self.server = server
        self.signer = NoteSigner.generate(ORIGIN)
        self.state = LogState(ORIGIN)
        self.refused: str | None = None

    def round(self) -> str:
        r = sync(self.server)
        first = r.xrange(STREAM, count=1)
        start = f"({self.state.last_id}" if self.state.last_id else "-"
        self.state, self.refused = advance(
            self.state, r.xrange(STREAM, min=start), KEY, first[0][0].decode() if first else None
        )
        return sign(self.state, self.signer)


def files(server, **texts: str) -> dict[str, str]:
    out = {}
    for name, text in texts.items():
        path = server.dir / name
        path.write_text(text)
        out[name] = str(path)
    return out


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli_main(list(argv))
    got = capsys.readouterr()
    return code, got.out, got.err


async def test_prove_and_verify_with_the_public_key_only(rds, capsys):
    await write_n(rds, 20)
    op = Operator(rds)
    first = op.round()
    assert op.state.size == 20 and op.refused is None
    vkey = op.signer.vkey()
    f = files(rds, cp1=first)
    code, out, err = run(capsys, "prove", "r7", "--redis-url", rds.url, "--stream", STREAM, "--checkpoint", f["cp1"])
    assert code == 0, err
    doc = json.loads(out)
    assert (doc["leaf_index"], doc["tree_size"], json.loads(doc["record"])["request_id"]) == (7, 20, "r7")
    assert doc["checkpoint"] == first and len(doc["inclusion_proof"]) == 5
    proof = files(rds, proof=out)["proof"]
    # Offline: no Redis, no audit key.
    code, out, err = run(capsys, "verify", "--public-key", vkey, "--proof", proof)
    assert code == 0 and "request r7 is record 7 of the 20-record log" in out, out + err
    code, out, err = run(
        capsys, "verify", "--public-key", vkey, "--redis-url", rds.url, "--stream", STREAM, "--checkpoint", f["cp1"]
    )
    assert code == 0 and "20 records hash to the signed root" in out, out + err

    await write_n(rds, 13)  # a second writer (a new chain) adds records; the operator's next round logs them
    second = op.round()
    assert op.state.size == 33
    f = files(rds, cp1=first, cp2=second, vkey=vkey + "\n")
    code, out, err = run(
        capsys, "prove", "r7", "--redis-url", rds.url, "--stream", STREAM, "--checkpoint", f["cp2"],
        "--old-checkpoint", f["cp1"], "--public-key", f["vkey"],
    )  # fmt: skip
    assert code == 0, err
    docs = json.loads(out)
    assert [d["leaf_index"] for d in docs] == [7, 27]  # both writers had a request r7
    assert all(d["consistency"]["checkpoint"] == first and d["consistency"]["proof"] for d in docs)
    proof = files(rds, proof=out)["proof"]
    code, out, err = run(capsys, "verify", "--public-key", f["vkey"], "--proof", proof, "--old-checkpoint", f["cp1"])
    assert code == 0 and out.count("consistent with the older checkpoint") == 2, out + err
    code, out, err = run(
        capsys, "verify", "--public-key", vkey, "--redis-url", rds.url, "--stream", STREAM,
        "--checkpoint", f["cp2"], "--old-checkpoint", f["cp1"],
    )  # fmt: skip
    assert code == 0 and "consistent with the checkpoint of 20 records" in out, out + err
    code, _, err = run(capsys, "prove", "nope", "--redis-url", rds.url, "--stream", STREAM, "--checkpoint", f["cp2"])
    assert code == 1 and "request id 'nope': not among the 33 records" in err, err


def rechain(entries: list, change: dict) -> tuple[list, dict]:
    """The insider's forgery: change records, then re-seal every record of the chain with the audit key."""
    out, prev, last = [], GENESIS, None
    for sid, fields in entries:
        rec = json.loads(fields[b"r"])
        if rec["request_id"] in change:
            rec.update(change[rec["request_id"]])
        rec = seal(
            {k: v for k, v in rec.items() if k not in ("chain", "seq", "prev", "hash")},
            rec["chain"],
            rec["seq"],
            prev,
            KEY,
        )
        prev, last = rec["hash"], rec
        out.append((sid, {b"r": canonical(rec)}))
    return out, last


async def test_an_insider_with_the_audit_key_cannot_rewrite_the_signed_log(rds, capsys):
    await write_n(rds, 12)
    op = Operator(rds)
    genuine = op.round()
    vkey = op.signer.vkey()
    entries = ids(rds)
    code, out, err = run(
        capsys, "prove", "r5", "--redis-url", rds.url, "--stream", STREAM, "--checkpoint", files(rds, cp=genuine)["cp"]
    )
    assert code == 0
    genuine_proof = json.loads(out)

    # Rewrite r5 (cost, tokens), re-chain with the audit key, move the head: the HMAC verification is fooled.
    forged, last = rechain(entries, {"r5": {"prompt_tokens": 0, "status": "error"}})
    rewrite(rds, forged)
    sync(rds).hset(
        heads_key(STREAM),
        last["chain"],
        head_value(last["seq"], last["hash"], checkpoint_tag(KEY, last["chain"], last["seq"], last["hash"])),
    )
    code, msg = verify(rds, capsys)
    assert code == 0, msg  # what issue 23 is about: whoever holds the HMAC key can forge for the HMAC check

    # The public key is not fooled: the genuine checkpoint does not cover the rewritten stream.
    f = files(rds, genuine=genuine)
    stream_args = ["--redis-url", rds.url, "--stream", STREAM]
    code, _, err = run(capsys, "verify", "--public-key", vkey, *stream_args, "--checkpoint", f["genuine"])
    assert code == 1 and "TAMPERED" in err and "do not hash to the signed root" in err, err
    code, _, err = run(capsys, "prove", "r5", *stream_args, "--checkpoint", f["genuine"])
    assert code == 1 and "do not hash to the signed root" in err, err

    # Re-signing a checkpoint over the forged stream needs the signing key: another key, even under the log's
    # name, is refused; so is a proof made against that checkpoint.
    forger = NoteSigner.generate(ORIGIN)
    forged_state, _ = advance(LogState(ORIGIN), sync(rds).xrange(STREAM), KEY)
    forged_cp = sign(forged_state, forger)
    f = files(rds, forged=forged_cp)
    code, _, err = run(capsys, "verify", "--public-key", vkey, *stream_args, "--checkpoint", f["forged"])
    assert code == 1 and "not signed by kubegate.dev/t/main/0123abcd+" in err, err
    code, out, _ = run(capsys, "prove", "r5", *stream_args, "--checkpoint", f["forged"])
    assert code == 0  # the prover does not need the key; the verifier does
    code, _, err = run(capsys, "verify", "--public-key", vkey, "--proof", files(rds, p=out)["p"])
    assert code == 1 and "not signed by" in err, err
    # The genuine proof of the original r5 still verifies offline: the signed log keeps what was recorded.
    code, out, _ = run(capsys, "verify", "--public-key", vkey, "--proof", files(rds, p=json.dumps(genuine_proof))["p"])
    assert code == 0 and json.loads(genuine_proof["record"])["prompt_tokens"] == 5


async def test_tampered_checkpoint_and_tampered_proofs_fail(rds, capsys):
    await write_n(rds, 9)
    op = Operator(rds)
    cp = op.round()
    vkey = op.signer.vkey()
    code, out, _ = run(
        capsys, "prove", "r3", "--redis-url", rds.url, "--stream", STREAM, "--checkpoint", files(rds, cp=cp)["cp"]
    )
    doc = json.loads(out)
    body = cp.partition("\n\n")[0]
    tampered = {
        "size": cp.replace("\n9\n", "\n8\n", 1),
        "root": cp.replace(body.split("\n")[2], "A" * 43 + "=", 1),
    }
    for what, note in tampered.items():
        code, _, err = run(
            capsys,
            "verify",
            "--public-key",
            vkey,
            "--redis-url",
            rds.url,
            "--stream",
            STREAM,
            "--checkpoint",
            files(rds, t=note)["t"],
        )
        assert code == 1 and "does not verify" in err, (what, err)
    bad_docs = {
        "record": {**doc, "record": doc["record"].replace('"prompt_tokens":3', '"prompt_tokens":30')},
        "index": {**doc, "leaf_index": 4},
        "hash": {**doc, "inclusion_proof": [doc["inclusion_proof"][1], *doc["inclusion_proof"][1:]]},
        "short": {**doc, "inclusion_proof": doc["inclusion_proof"][:-1]},
    }
    for what, bad in bad_docs.items():
        code, _, err = run(capsys, "verify", "--public-key", vkey, "--proof", files(rds, p=json.dumps(bad))["p"])
        assert code == 1 and "TAMPERED" in err, (what, err)


async def test_the_operator_logs_only_records_whose_mac_verifies(rds):
    await write_n(rds, 4)
    r = sync(rds)
    r.xadd(
        STREAM,
        {"r": canonical({"v": 1, "request_id": "fake", "chain": "x", "seq": 1, "prev": GENESIS, "hash": "0" * 64})},
    )
    await write_n(rds, 2)
    op = Operator(rds)
    op.round()
    assert op.state.size == 4
    assert "record MAC does not verify" in op.refused and "the log stops before it" in op.refused
    op.round()
    assert op.state.size == 4  # stays stopped: no record past the forged one gets in


async def test_proofs_after_the_cap_trimmed_the_first_logged_records(rds, capsys, monkeypatch):
    monkeypatch.setattr(transparency, "ANCHOR_EVERY", 8)
    await write_n(rds, 30)
    op = Operator(rds)
    cp = op.round()
    assert [a.size for a in op.state.anchors] == [8, 16, 24]
    sync(rds).xtrim(STREAM, maxlen=12, approximate=False)  # the 18 oldest records go, as the cap would
    cp = op.round()
    assert [a.size for a in op.state.anchors] == [16, 24]  # the anchor at 8 is no use any more
    f = files(rds, cp=cp, state=op.state.dumps())
    args = ["--redis-url", rds.url, "--stream", STREAM, "--checkpoint", f["cp"]]
    code, _, err = run(capsys, "prove", "r26", *args)
    assert code == 1 and "records deleted from the stream (or the cap trimmed the oldest" in err, err
    # The stream holds leaves 18..29; the anchor at 24 is the oldest whose last leaf is still there.
    code, out, err = run(capsys, "prove", "r26", *args, "--tlog-state", f["state"])
    assert code == 0 and json.loads(out)["leaf_index"] == 26, err
    code, _, err = run(capsys, "verify", "--public-key", op.signer.vkey(), "--proof", files(rds, p=out)["p"])
    assert code == 0, err
    code, out, err = run(capsys, "verify", "--public-key", op.signer.vkey(), *args, "--tlog-state", f["state"])
    assert code == 0 and "6 records hash to the signed root of the 30-record log" in out, out + err
    assert "6 older records in the stream not covered" in out
    code, _, err = run(capsys, "prove", "r20", *args, "--tlog-state", f["state"])
    assert code == 1 and "precedes the oldest anchor the stream still holds" in err, err


@pytest.mark.parametrize("n", [0, 1])
async def test_an_empty_or_tiny_log_round_trips(rds, capsys, n):
    await write_n(rds, n)
    op = Operator(rds)
    cp = op.round()
    assert op.state.size == n
    args = ["--redis-url", rds.url, "--stream", STREAM, "--checkpoint", files(rds, cp=cp)["cp"]]
    code, out, err = run(capsys, "verify", "--public-key", op.signer.vkey(), *args)
    assert code == 0 and f"{n} records hash to the signed root of the {n}-record log" in out, out + err


async def test_the_kubegate_entry_point_proves_and_verifies(rds):
    """Through `kubegate audit` (typer): prove, then verify with --public-key only (no --redis-url, no key)."""
    from tests.dataplane.test_cli import run as kubegate

    await write_n(rds, 5)
    op = Operator(rds)
    f = files(rds, cp=op.round())
    proved = kubegate("audit", "prove", "r2", "--redis-url", rds.url, "--stream", STREAM, "--checkpoint", f["cp"])
    assert proved.returncode == 0, proved.stderr
    proof = files(rds, proof=proved.stdout)["proof"]
    checked = kubegate("audit", "verify", "--public-key", op.signer.vkey(), "--proof", proof)
    assert checked.returncode == 0 and "request r2 is record 2 of the 5-record log" in checked.stdout, checked.stderr
    bad = kubegate("audit", "verify", "--public-key", "nonsense", "--proof", proof)
    assert bad.returncode == 2 and "error: --public-key: public key: expected a vkey" in bad.stderr, bad.stderr
    missing = rds.dir / "no-checkpoint"
    res = kubegate("audit", "prove", "r2", "--redis-url", rds.url, "--stream", STREAM, "--checkpoint", str(missing))
    assert (
        res.returncode == 2
        and res.stderr.strip() == f"kubegate: error: --checkpoint: No such file or directory: {missing}"
    )
    res = kubegate("audit", "prove", "zz", "--redis-url", rds.url, "--stream", STREAM, "--checkpoint", f["cp"])
    assert res.returncode == 1 and res.stderr.startswith("kubegate: error: request id 'zz': not among the 5 records")


async def test_a_history_re_signed_with_the_genuine_key_is_inconsistent_with_an_older_checkpoint(rds, capsys):
    """Someone with the audit key AND the signing key (a cluster admin) rewrites a record and re-signs from scratch:
    every new checkpoint verifies on its own, but not against a checkpoint a tenant or auditor kept from before."""
    await write_n(rds, 10)
    op = Operator(rds)
    kept = op.round()  # an auditor keeps this one
    forged, last = rechain(ids(rds), {"r3": {"prompt_tokens": 0}})
    rewrite(rds, forged)
    tag = checkpoint_tag(KEY, last["chain"], last["seq"], last["hash"])
    sync(rds).hset(heads_key(STREAM), last["chain"], head_value(last["seq"], last["hash"], tag))
    await write_n(rds, 5)
    op.state = LogState(ORIGIN)  # the log state thrown away and rebuilt over the rewritten stream
    resigned = op.round()
    f = files(rds, kept=kept, resigned=resigned)
    stream_args = ["--redis-url", rds.url, "--stream", STREAM]
    code, _, err = run(capsys, "verify", "--public-key", op.signer.vkey(), *stream_args, "--checkpoint", f["resigned"])
    assert code == 0, err  # alone, the re-signed log is self-consistent
    code, _, err = run(
        capsys, "verify", "--public-key", op.signer.vkey(), *stream_args,
        "--checkpoint", f["resigned"], "--old-checkpoint", f["kept"],
    )  # fmt: skip
    assert code == 1 and "consistency from 10 to 15 records" in err and "history rewritten" in err, err
    code, _, err = run(
        capsys, "prove", "r2", *stream_args, "--checkpoint", f["resigned"], "--old-checkpoint", f["kept"]
    )
    assert code == 1 and "history rewritten" in err, err
