"""Witnesses of the audit log (#23 item 3): C2SP tlog-cosignature over the operator's signed checkpoints.

A witness cosigns a checkpoint only once a consistency proof from the last one it cosigned checks out; verification
can require a quorum of cosignatures by known witness keys. The insider of issue 23's strongest case (audit key AND
log signing key) rewrites history and re-signs it with the genuine key: the witnesses refuse, so the quorum fails.
"""

from __future__ import annotations

import base64
import json

import pytest

from gateway_plugins.audit.writer import heads_key
from gateway_plugins.policy.audit import tlog
from gateway_plugins.policy.audit.chain import checkpoint_tag, head_value
from gateway_plugins.policy.audit.note import NoteError, NoteSigner, sign_checkpoint
from gateway_plugins.policy.audit.transparency import LogState
from gateway_plugins.policy.audit.witness import (
    Cosigner,
    CosignerKey,
    Witness,
    WitnessRefused,
    add_cosignatures,
    cosigned_by,
    cosigner_key_id,
    message,
    require_quorum,
    split_note,
)
from tests.dataplane.test_audit import KEY, STREAM, ids, rewrite, sync, write_n
from tests.dataplane.test_audit_tlog_stream import ORIGIN, Operator, files, rechain, run
from tests.harness.redis import RedisServer


@pytest.fixture
def rds(tmp_path):
    server = RedisServer(workdir=tmp_path, persistent=True).start()
    yield server
    server.stop()


def _leaves(n: int, salt: str = "") -> list[bytes]:
    return [tlog.leaf_hash(f"{salt}record {i}".encode()) for i in range(n)]


def test_the_cosignature_format_is_c2sp_tlog_cosignature():
    """Checked from the spec's text, not from our own signer: key id, signed message and line layout."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    log = NoteSigner.generate(ORIGIN)
    note = sign_checkpoint(log, 5, tlog.root(_leaves(5)))
    w = Cosigner.generate("witness.example.com/w1")
    line = w.signature_line(note.partition("\n\n")[0] + "\n", 1679315147)
    dash, name, b64 = line.rstrip("\n").split(" ")
    raw = base64.b64decode(b64)
    assert dash == "\u2014" and name == "witness.example.com/w1" and len(raw) == 4 + 8 + 64
    import hashlib

    assert raw[:4] == hashlib.sha256(name.encode() + b"\n\x04" + w.key.public_key).digest()[:4]
    assert int.from_bytes(raw[4:12], "big") == 1679315147
    body = note.partition("\n\n")[0] + "\n"
    signed = b"cosignature/v1\ntime 1679315147\n" + body.encode()
    assert signed == message(body, 1679315147)
    Ed25519PublicKey.from_public_bytes(w.key.public_key).verify(raw[12:], signed)  # raises if wrong
    vkey = w.key.vkey()
    assert vkey.split("+", 2)[1] == cosigner_key_id(name, w.key.public_key).hex()
    assert base64.b64decode(vkey.split("+", 2)[2])[0] == 0x04 and CosignerKey.parse(vkey) == w.key


def test_witness_refuses_what_does_not_extend_what_it_cosigned(tmp_path):
    log = NoteSigner.generate(ORIGIN)
    w = Witness(Cosigner.generate("w1.example/w"), tmp_path / "state.json")
    leaves = _leaves(20)
    first = sign_checkpoint(log, 8, tlog.root(leaves[:8]))
    w.cosign(first, log.verifier(), [])  # the first checkpoint of a log: trust on first use
    tree = tlog.Tree(leaves)
    good = sign_checkpoint(log, 20, tree.root())
    line = w.cosign(good, log.verifier(), tree.consistency_proof(8, 20))
    assert cosigned_by(add_cosignatures(good, [line]), [w.cosigner.key]) == ["w1.example/w"]
    assert w.seen(ORIGIN) == (20, tree.root())
    # History rewritten from leaf 3 on, re-signed with the GENUINE log key, with a proof made from the forged tree.
    forged = tlog.Tree(leaves[:3] + _leaves(22, "x")[3:])
    resigned = sign_checkpoint(log, 22, forged.root())
    with pytest.raises(WitnessRefused, match="not consistent with the 20-record checkpoint"):
        w.cosign(resigned, log.verifier(), forged.consistency_proof(20, 22))
    with pytest.raises(WitnessRefused, match="fewer than the 20 already cosigned"):
        w.cosign(first, log.verifier(), [])
    with pytest.raises(WitnessRefused, match="not signed by"):
        w.cosign(sign_checkpoint(NoteSigner.generate(ORIGIN), 20, tree.root()), log.verifier(), [])
    assert w.seen(ORIGIN) == (20, tree.root())  # a refusal changes nothing


def test_quorum_counts_only_valid_cosignatures_by_known_keys(tmp_path):
    log = NoteSigner.generate(ORIGIN)
    note = sign_checkpoint(log, 4, tlog.root(_leaves(4)))
    body = note.partition("\n\n")[0] + "\n"
    w1, w2, w3 = (Cosigner.generate(f"w{i}.example/w") for i in (1, 2, 3))
    stranger = Cosigner.generate("stranger.example/w")
    impostor = Cosigner.generate("w3.example/w")  # w3's name, another key
    lines = [c.signature_line(body, 1_700_000_000) for c in (w1, w2, stranger, impostor)]
    cosigned = add_cosignatures(note, lines)
    keys = [w1.key, w2.key, w3.key]
    assert cosigned_by(cosigned, keys) == ["w1.example/w", "w2.example/w"]
    assert require_quorum(cosigned, keys, 2) == ["w1.example/w", "w2.example/w"]
    with pytest.raises(NoteError, match=r"2 valid witness cosignatures .* 3 required"):
        require_quorum(cosigned, keys, 3)
    # A cosignature of another checkpoint, copied onto this one, does not count.
    other = sign_checkpoint(log, 5, tlog.root(_leaves(5)))
    moved = add_cosignatures(note, [w3.signature_line(other.partition("\n\n")[0] + "\n", 1_700_000_000)])
    assert cosigned_by(moved, keys) == []
    # Dated in the future: not counted.
    future = add_cosignatures(note, [w3.signature_line(body, 4_000_000_000)])
    assert cosigned_by(future, keys, now=1_700_000_000) == []


async def test_witnesses_and_quorum_through_the_cli_against_a_real_stream(rds, capsys):
    await write_n(rds, 10)
    op = Operator(rds)
    cp1 = op.round()
    vkey = op.signer.vkey()
    stream_args = ["--redis-url", rds.url, "--stream", STREAM]
    witnesses = {}
    for n in ("w1", "w2", "w3", "stranger"):
        code, out, err = run(capsys, "witness-keygen", "--name", f"{n}.example/w", "--key-file", str(rds.dir / n))
        assert code == 0, err
        witnesses[n] = out.strip()

    def witness(name: str, note: str, proof: str | None = None) -> tuple[int, str, str]:
        f = files(rds, note=note, **({"proof": proof} if proof else {}))
        extra = ["--proof", f["proof"]] if proof else []
        return run(
            capsys, "witness", f["note"], *extra, "--log-key", vkey, "--name", f"{name}.example/w",
            "--key-file", str(rds.dir / name), "--state-file", str(rds.dir / f"{name}.state"),
        )  # fmt: skip

    code, note, err = witness("w1", cp1)
    assert code == 0, err
    code, note, err = witness("w2", note)  # chained: w1's cosignature is kept
    assert code == 0, err
    await write_n(rds, 5)
    cp2 = op.round()
    code, proof, err = run(
        capsys, "consistency", *stream_args, "--checkpoint", files(rds, c=cp2)["c"], "--old-size", "10"
    )
    assert code == 0 and json.loads(proof)["size"] == 15, err
    note = cp2
    for name in ("w1", "w2", "stranger"):
        code, note, err = witness(name, note, proof)
        assert code == 0, err
    cosigned = files(rds, cosigned=note)["cosigned"]
    quorum = ["--witness", witnesses["w1"], "--witness", witnesses["w2"], "--witness", witnesses["w3"]]
    code, out, err = run(
        capsys, "verify", "--public-key", vkey, *stream_args, "--checkpoint", cosigned, *quorum, "--quorum", "2"
    )
    assert code == 0 and "cosigned by 2 of the 3 witnesses (w1.example/w, w2.example/w)" in out, out + err
    code, out, err = run(capsys, "verify", "--public-key", vkey, *stream_args, "--checkpoint", cosigned, *quorum)
    assert code == 1 and "2 valid witness cosignatures" in err and "3 required" in err, err  # the stranger's: no
    # A proof given with the cosigned checkpoint carries the cosignatures: quorum checked offline too.
    code, out, err = run(capsys, "prove", "r3", *stream_args, "--checkpoint", cosigned)
    p = files(rds, p=out)["p"]
    code, out, err = run(capsys, "verify", "--public-key", vkey, "--proof", p, *quorum, "--quorum", "2")
    assert code == 0 and "cosigned by 2 of the 3" in out, out + err

    # The insider with the audit key and the genuine signing key rewrites r3 and re-signs the whole log.
    forged, last = rechain(ids(rds), {"r3": {"prompt_tokens": 0}})
    rewrite(rds, forged)
    tag = checkpoint_tag(KEY, last["chain"], last["seq"], last["hash"])
    sync(rds).hset(heads_key(STREAM), last["chain"], head_value(last["seq"], last["hash"], tag))
    await write_n(rds, 3)
    op.state = LogState(ORIGIN)
    resigned = op.round()
    code, out, err = run(
        capsys, "verify", "--public-key", vkey, *stream_args, "--checkpoint", files(rds, r=resigned)["r"]
    )
    assert code == 0, err  # alone, the re-signed log verifies with the public key
    code, proof, err = run(
        capsys, "consistency", *stream_args, "--checkpoint", files(rds, r=resigned)["r"], "--old-size", "15"
    )
    assert code == 0, err  # the forger can make a proof from the forged tree...
    for name in ("w1", "w2"):
        code, out, err = witness(name, resigned, proof)
        assert code == 1 and "REFUSED" in err and "not consistent with the 15-record checkpoint" in err, err
    # ...but no witness cosigns it, so a verifier that requires the quorum refuses the re-signed log.
    code, out, err = run(
        capsys, "verify", "--public-key", vkey, *stream_args, "--checkpoint", files(rds, r=resigned)["r"], *quorum,
        "--quorum", "1",
    )  # fmt: skip
    assert code == 1 and "0 valid witness cosignatures" in err, err
    state = json.loads((rds.dir / "w1.state").read_text())
    assert state[ORIGIN]["size"] == 15  # the refusal left the witness where it was


async def test_the_kubegate_entry_point_witnesses_and_verifies_a_quorum(rds):
    """Through `kubegate audit` (typer): witness-keygen, consistency, witness, verify --witness --quorum."""
    from tests.dataplane.test_cli import run as kubegate

    await write_n(rds, 6)
    op = Operator(rds)
    f = files(rds, cp1=op.round())
    keygen = kubegate("audit", "witness-keygen", "--name", "w.example/w", "--key-file", str(rds.dir / "wk"))
    assert keygen.returncode == 0, keygen.stderr
    wvkey = keygen.stdout.strip()
    common = ["--log-key", op.signer.vkey(), "--name", "w.example/w", "--key-file", str(rds.dir / "wk")]
    common += ["--state-file", str(rds.dir / "ws")]
    first = kubegate("audit", "witness", f["cp1"], *common)
    assert first.returncode == 0, first.stderr
    await write_n(rds, 3)
    f = files(rds, cp2=op.round())
    stream_args = ["--redis-url", rds.url, "--stream", STREAM]
    proof = kubegate("audit", "consistency", *stream_args, "--checkpoint", f["cp2"], "--old-size", "6")
    assert proof.returncode == 0, proof.stderr
    f.update(files(rds, proof=proof.stdout))
    cosigned = kubegate("audit", "witness", f["cp2"], *common, "--proof", f["proof"])
    assert cosigned.returncode == 0, cosigned.stderr
    f.update(files(rds, cosigned=cosigned.stdout))
    vkey = op.signer.vkey()
    ok = kubegate(
        "audit", "verify", "--public-key", vkey, *stream_args, "--checkpoint", f["cosigned"], "--witness", wvkey,
        "--quorum", "1",
    )  # fmt: skip
    assert ok.returncode == 0 and "cosigned by 1 of the 1 witnesses" in ok.stdout, ok.stderr
    bare = kubegate("audit", "verify", "--public-key", vkey, *stream_args, "--checkpoint", f["cp2"], "--witness", wvkey)
    assert bare.returncode == 1 and "0 valid witness cosignatures" in bare.stderr, bare.stderr


async def test_the_operator_round_carries_the_cosignatures_it_is_given(rds, tmp_path):
    """`tlog-cosignatures` (a witness's output) is merged into the round's checkpoint while the tree has not grown;
    the latest cosigned checkpoint stays in `tlog-witnessed-checkpoint` after it grows."""
    from gateway_operator.reconcile.auditlog import COSIGNATURES_KEY, WITNESSED_KEY, log_round

    from gateway_plugins.policy.audit.transparency import CHECKPOINT_KEY

    await write_n(rds, 4)
    log_signer = NoteSigner.generate(ORIGIN)
    conn = sync(rds)
    data, _ = log_round(conn, STREAM, KEY, log_signer, {})
    assert WITNESSED_KEY not in data
    w = Witness(Cosigner.generate("w.example/w"), tmp_path / "w.json")
    line = w.cosign(data[CHECKPOINT_KEY], log_signer.verifier(), [])
    data = {**data, COSIGNATURES_KEY: add_cosignatures(data[CHECKPOINT_KEY], [line])}
    again, _ = log_round(conn, STREAM, KEY, log_signer, data)
    assert cosigned_by(again[CHECKPOINT_KEY], [w.cosigner.key]) == ["w.example/w"]
    assert again[WITNESSED_KEY] == again[CHECKPOINT_KEY]
    data = {**data, **again}
    await write_n(rds, 2)
    grown, _ = log_round(conn, STREAM, KEY, log_signer, data)
    assert cosigned_by(grown[CHECKPOINT_KEY], [w.cosigner.key]) == []  # a new tree head: not cosigned yet
    assert WITNESSED_KEY not in grown and {**data, **grown}[WITNESSED_KEY] == again[WITNESSED_KEY]


async def test_with_witnesses_configured_the_round_keeps_only_their_valid_cosignatures(rds, tmp_path):
    """spec.audit.witnesses: a cosignature by another key, a forged one and a duplicate are dropped; the status
    counts distinct trusted witnesses against the quorum."""
    from gateway_operator.reconcile.auditlog import COSIGNATURES_KEY, WITNESSED_KEY, log_round, witnessed_status

    from gateway_plugins.policy.audit.transparency import CHECKPOINT_KEY

    await write_n(rds, 3)
    log_signer = NoteSigner.generate(ORIGIN)
    conn = sync(rds)
    data, _ = log_round(conn, STREAM, KEY, log_signer, {})
    note = data[CHECKPOINT_KEY]
    trusted = [Witness(Cosigner.generate(f"w.example/t{i}"), tmp_path / f"t{i}.json") for i in range(2)]
    stranger = Witness(Cosigner.generate("w.example/stranger"), tmp_path / "s.json")
    good = trusted[0].cosign(note, log_signer.verifier(), [])
    forged = trusted[1].cosigner.signature_line(split_note(note)[0].replace("\n3\n", "\n4\n"), 1)
    handed_in = add_cosignatures(note, [good, stranger.cosign(note, log_signer.verifier(), []), forged])
    keys = [w.cosigner.key for w in trusted]
    again, _ = log_round(conn, STREAM, KEY, log_signer, {**data, COSIGNATURES_KEY: handed_in}, keys)
    assert again[WITNESSED_KEY] == again[CHECKPOINT_KEY] == add_cosignatures(note, [good])
    status = witnessed_status({**data, **again}, (keys, 2))
    assert status == {"treeSize": 3, "cosignedBy": ["w.example/t0"], "quorum": 2, "quorumMet": False}
    # Unconfigured, the same hand-in is carried as it is (verifiers count what they trust).
    carried, _ = log_round(conn, STREAM, KEY, log_signer, {**data, COSIGNATURES_KEY: handed_in})
    assert carried[WITNESSED_KEY] == handed_in
    # Only the stranger's: nothing trusted to keep.
    only_stranger = add_cosignatures(note, [stranger.cosign(note, log_signer.verifier(), [])])
    none, _ = log_round(conn, STREAM, KEY, log_signer, {**data, COSIGNATURES_KEY: only_stranger}, keys)
    assert WITNESSED_KEY not in none
