"""``kubegate audit prove`` and ``kubegate audit verify --public-key``: the audit transparency log, checked with
the log's public key only (no audit HMAC key). Sync redis-py, no kopf; ``audit_cli.main`` routes here.

Where the inputs come from (the ConfigMap ``{gateway}-audit-checkpoints``, written by the operator):

- ``--checkpoint``: key ``tlog-checkpoint``, the latest signed checkpoint (a C2SP signed note);
- ``--public-key``: ``status.auditLogPublicKey`` of the LLMGateway, or key ``tlog-public-key`` (a C2SP vkey), as
  the string itself or a file holding it; an auditor should take it from a copy kept outside the cluster;
- ``--tlog-state``: key ``tlog-state``; needed only once the stream's cap has trimmed the first logged records;
- ``--old-checkpoint``: a checkpoint kept from earlier (e.g. the one a proof was first given with).

Witnesses (C2SP tlog-cosignature, ``gateway_plugins.policy.audit.witness``): ``consistency`` prints the proof from
the size a witness last cosigned to a checkpoint; ``witness`` checks it against the witness's state and only then
cosigns (the checkpoint is printed with the cosignature appended, so witnesses can be chained); ``verify
--public-key --witness <vkey> ... --quorum N`` requires N valid cosignatures by those keys.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
from typing import Any

from gateway_plugins.policy.audit.note import NoteError, Verifier, parse_checkpoint
from gateway_plugins.policy.audit.segments import SegmentError, read_segment, segments, verify_segments
from gateway_plugins.policy.audit.tlog import ProofError
from gateway_plugins.policy.audit.transparency import (
    LogError,
    LogState,
    add_consistency,
    check_stream,
    consistency,
    open_verified,
    prove,
    read_log,
    uncovered_ids,
    verify_proof,
)
from gateway_plugins.policy.audit.verify import stream_entries
from gateway_plugins.policy.audit.witness import (
    Cosigner,
    CosignerKey,
    Witness,
    WitnessRefused,
    add_cosignatures,
    require_quorum,
    split_note,
)
from gateway_plugins.policy.keys import GatewayKeys


class UsageError(Exception):
    """A missing or unreadable input: reported as ``error: ...``, exit status 2."""

    code = 2


class NotFound(UsageError):
    """No provable record with that request id: exit status 1."""

    code = 1


def handles(argv: list[str]) -> bool:
    public = any(a == "--public-key" or a.startswith("--public-key=") for a in argv)
    return bool(argv) and (argv[0] in TLOG_COMMANDS or (argv[0] == "verify" and public))


TLOG_COMMANDS = ("prove", "consistency", "witness", "witness-keygen")


def _common(s: argparse.ArgumentParser, redis_required: bool) -> None:
    s.add_argument(
        "--redis-url",
        required=redis_required,
        help="the gateway's Redis: redis://, rediss://, redis+sentinel:// or redis+cluster:// (docs/redis.md)",
    )
    s.add_argument("--gateway", default="main", help="gateway name")
    s.add_argument("--namespace", default="default", help="gateway namespace")
    s.add_argument("--stream", default=None, help="stream key; overrides --gateway")
    s.add_argument("--checkpoint", default=None, help="file: the signed checkpoint (ConfigMap key tlog-checkpoint)")
    s.add_argument("--old-checkpoint", default=None, help="file: an earlier signed checkpoint, to check consistency")
    s.add_argument("--tlog-state", default=None, help="file: ConfigMap key tlog-state (needed after trimming)")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kubegate audit", description="The audit transparency log.")
    sub = p.add_subparsers(dest="cmd", required=True)
    pr = sub.add_parser("prove", help="inclusion proof of one request's record against a signed checkpoint")
    pr.add_argument("request_id", help="the request id (response header x-kubegate-request-id)")
    _common(pr, True)
    pr.add_argument("--public-key", default=None, help="vkey or file: also check the checkpoint's signature")
    v = sub.add_parser("verify", help="verify with the log's public key only")
    _common(v, False)
    v.add_argument("--public-key", required=True, help="the log's vkey (status.auditLogPublicKey) or a file with it")
    v.add_argument("--proof", default=None, help="file from `kubegate audit prove` (no Redis needed)")
    v.add_argument("--segments", default=None, help="directory of exported segments (spec.audit.export; no Redis)")
    v.add_argument("--witness", action="append", default=[], help="a witness's vkey (or a file): repeat per witness")
    v.add_argument("--quorum", type=int, default=None, help="valid cosignatures required (default: one per --witness)")
    v.add_argument("--allow-trimmed", action="store_true", help=argparse.SUPPRESS)
    v.add_argument("--allow-empty", action="store_true", help=argparse.SUPPRESS)
    c = sub.add_parser("consistency", help="consistency proof (JSON) from an older tree size to a checkpoint")
    _common(c, True)
    c.add_argument("--old-size", type=int, required=True, help="the tree size the witness last cosigned")
    w = sub.add_parser("witness", help="cosign a checkpoint once it is consistent with the last one cosigned")
    w.add_argument("note", help="file: the signed checkpoint (cosignatures already on it are kept)")
    w.add_argument("--proof", default=None, help="file: output of `consistency` from the size the witness last saw")
    w.add_argument("--log-key", required=True, help="the log's vkey (or a file): only its checkpoints are cosigned")
    w.add_argument("--name", required=True, help="the witness's key name (e.g. witness.example.com/w1)")
    w.add_argument("--key-file", required=True, help="file: the witness's Ed25519 private key (base64)")
    w.add_argument("--state-file", required=True, help="file: the witness's state (size and root per log)")
    k = sub.add_parser("witness-keygen", help="a new witness key: private key to --key-file, vkey to stdout")
    k.add_argument("--name", required=True, help="the witness's key name")
    k.add_argument("--key-file", required=True, help="file to create (mode 0600)")
    return p


def _read(path: str, option: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as exc:
        raise UsageError(f"{option}: {exc.strerror}: {path}") from None


def _verifier(value: str) -> Verifier:
    text = _read(value, "--public-key") if os.path.isfile(value) else value
    try:
        return Verifier.parse(text)
    except NoteError as exc:
        raise UsageError(f"--public-key: {exc}") from None


def _state(args: argparse.Namespace) -> LogState | None:
    if not args.tlog_state:
        return None
    try:
        return LogState.loads(_read(args.tlog_state, "--tlog-state"))
    except (ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"--tlog-state: not a tlog-state document ({exc})") from None


def _entries(args: argparse.Namespace) -> list:
    from gateway_plugins.policy.redis_client import connect_sync

    stream = args.stream or GatewayKeys(args.namespace, args.gateway).audit_stream
    client = connect_sync(args.redis_url, socket_timeout=10, socket_connect_timeout=5)
    try:
        return list(stream_entries(client, stream))
    finally:
        client.close()


def _prove(args: argparse.Namespace) -> int:
    if not args.checkpoint:
        raise UsageError("prove needs --checkpoint (ConfigMap {gateway}-audit-checkpoints, key tlog-checkpoint)")
    note = _read(args.checkpoint, "--checkpoint")
    old_note = _read(args.old_checkpoint, "--old-checkpoint") if args.old_checkpoint else None
    if args.public_key:
        verifier = _verifier(args.public_key)
        cp = open_verified(note, verifier)
        old = open_verified(old_note, verifier) if old_note else None
    else:
        cp = parse_checkpoint(note.partition("\n\n")[0] + "\n")
        old = parse_checkpoint(old_note.partition("\n\n")[0] + "\n") if old_note else None
    entries = _entries(args)
    log = read_log(entries, cp.size, _state(args))
    check_stream(log, cp)
    # Before the search: a log inconsistent with the older checkpoint is reported whatever the request id.
    cons = consistency(log, old, cp) if old is not None else None
    docs = prove(log, args.request_id, note, cp, old_note)
    if not docs:
        early = uncovered_ids(entries, log, args.request_id)
        where = (
            f"its record (stream id {', '.join(early)}) precedes the oldest anchor the stream still holds: "
            "prove it from an export"
            if early
            else f"not among the {cp.size} records of the checkpoint (not logged yet, or trimmed)"
        )
        raise NotFound(f"request id {args.request_id!r}: {where}")
    if cons is not None:
        add_consistency(docs, cons)
    print(json.dumps(docs[0] if len(docs) == 1 else docs, indent=2, ensure_ascii=False))
    return 0


def _verify_proofs(args: argparse.Namespace, verifier: Verifier) -> int:
    try:
        loaded: Any = json.loads(_read(args.proof, "--proof"))
    except ValueError:
        raise UsageError("--proof: not JSON (the output of `kubegate audit prove`)") from None
    docs = loaded if isinstance(loaded, list) else [loaded]
    old_note = _read(args.old_checkpoint, "--old-checkpoint") if args.old_checkpoint else None
    for doc in docs:
        cp = verify_proof(doc, verifier, old_note)
        cons = " and consistent with the older checkpoint" if doc.get("consistency") else ""
        cons += _quorum(doc["checkpoint"], args)
        print(
            f"OK: request {doc['request_id']} is record {doc['leaf_index']} of the {cp.size}-record log {cp.origin}, "
            f"whose checkpoint is signed by the log's key{cons}"
        )
    return 0


def _verify_segments(args: argparse.Namespace, verifier: Verifier) -> int:
    paths = segments(args.segments)
    if not paths:
        raise UsageError(f"--segments: no segment (seg-*.jsonl) in {args.segments}")
    try:
        count, records, first = verify_segments(paths, verifier)
    except SegmentError as exc:
        raise LogError(str(exc)) from None
    witnessed = _quorum(read_segment(paths[-1])[2], args)
    how = (
        "hash to their signed roots"
        if first == 0
        else f"are signed and contiguous from leaf {first} (roots not recomputed: the export starts after leaf 0)"
    )
    print(f"OK: {records} records in {count} exported segments {how}{witnessed}")
    return 0


def _verify_stream(args: argparse.Namespace, verifier: Verifier) -> int:
    if not args.checkpoint or not args.redis_url:
        raise UsageError("verify --public-key needs --proof, or --redis-url and --checkpoint")
    note = _read(args.checkpoint, "--checkpoint")
    cp = open_verified(note, verifier)
    witnessed = _quorum(note, args)
    old = open_verified(_read(args.old_checkpoint, "--old-checkpoint"), verifier) if args.old_checkpoint else None
    log = read_log(_entries(args), cp.size, _state(args))
    check_stream(log, cp)
    if old is not None:
        consistency(log, old, cp)
    checked = cp.size - log.tree.start
    before = f" (the {log.tree.start} before them are summed up by an anchor)" if log.tree.start else ""
    before += f"; {log.uncovered} older records in the stream not covered" if log.uncovered else ""
    cons = f"; consistent with the checkpoint of {old.size} records" if old is not None else ""
    print(
        f"OK: {checked} records hash to the signed root of the {cp.size}-record log {cp.origin}{before}{cons}"
        f"{witnessed}"
    )
    return 0


def _witnesses(args: argparse.Namespace) -> list[str]:
    """Names of the witnesses whose valid cosignatures on ``args.checkpoint``'s note meet the quorum (if asked)."""
    if not args.witness:
        if args.quorum:
            raise UsageError("--quorum needs the witnesses' keys (--witness)")
        return []
    keys = []
    for value in args.witness:
        text = _read(value, "--witness") if os.path.isfile(value) else value
        try:
            keys.append(CosignerKey.parse(text))
        except NoteError as exc:
            raise UsageError(f"--witness: {exc}") from None
    quorum = len(keys) if args.quorum is None else args.quorum
    if not 1 <= quorum <= len(keys):
        raise UsageError(f"--quorum: must be between 1 and the {len(keys)} --witness keys given")
    args.witness_keys, args.quorum = keys, quorum
    return [k.name for k in keys]


def _quorum(note: str, args: argparse.Namespace) -> str:
    if not args.witness:
        return ""
    names = require_quorum(note, args.witness_keys, args.quorum)
    return f"; cosigned by {len(names)} of the {len(args.witness_keys)} witnesses ({', '.join(names)})"


def _consistency(args: argparse.Namespace) -> int:
    if not args.checkpoint:
        raise UsageError("consistency needs --checkpoint (ConfigMap {gateway}-audit-checkpoints, key tlog-checkpoint)")
    note = _read(args.checkpoint, "--checkpoint")
    cp = parse_checkpoint(split_note(note)[0])
    if not 0 <= args.old_size <= cp.size:
        raise UsageError(f"--old-size: must be between 0 and the checkpoint's {cp.size} records")
    log = read_log(_entries(args), cp.size, _state(args))
    check_stream(log, cp)
    try:
        proof = log.tree.consistency_proof(args.old_size, cp.size)
    except ProofError as exc:
        raise LogError(f"consistency from {args.old_size} records: {exc}") from None
    doc = {"old_size": args.old_size, "size": cp.size, "proof": [base64.b64encode(h).decode() for h in proof]}
    print(json.dumps(doc, indent=2))
    return 0


def _witness(args: argparse.Namespace) -> int:
    note = _read(args.note, "note")
    log_key = _verifier(args.log_key)
    try:
        cosigner = Cosigner.from_private_b64(args.name, _read(args.key_file, "--key-file"))
    except NoteError as exc:
        raise UsageError(f"--key-file: {exc}") from None
    proof: list[bytes] = []
    if args.proof:
        try:
            doc = json.loads(_read(args.proof, "--proof"))
            proof = [base64.b64decode(h, validate=True) for h in doc["proof"]]
            size = int(doc["size"])
        except (ValueError, KeyError, TypeError):
            raise UsageError("--proof: not the output of `kubegate audit consistency`") from None
        if size != parse_checkpoint(split_note(note)[0]).size:
            raise UsageError(f"--proof: is for a tree of {size} records, not this checkpoint's")
    line = Witness(cosigner, args.state_file).cosign(note, log_key, proof)
    sys.stdout.write(add_cosignatures(note, [line]))
    return 0


def _witness_keygen(args: argparse.Namespace) -> int:
    cosigner = Cosigner.generate(args.name)
    try:
        fd = os.open(args.key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise UsageError(f"--key-file: {exc.strerror}: {args.key_file}") from None
    with os.fdopen(fd, "w") as f:
        f.write(cosigner.private_key_b64 + "\n")
    print(cosigner.key.vkey())
    return 0


def main(argv: list[str], *, redis_source: str = "--redis-url", prefix: str = "") -> int:
    """As ``audit_cli.main``: ``redis_source`` names the Redis in messages, ``prefix`` starts error lines."""
    args = _parser().parse_args(argv)
    try:
        if args.cmd == "prove":
            return _prove(args)
        if args.cmd == "consistency":
            return _consistency(args)
        if args.cmd == "witness":
            return _witness(args)
        if args.cmd == "witness-keygen":
            return _witness_keygen(args)
        _witnesses(args)
        verifier = _verifier(args.public_key)
        if args.segments:
            return _verify_segments(args, verifier)
        return _verify_proofs(args, verifier) if args.proof else _verify_stream(args, verifier)
    except UsageError as exc:
        print(f"{prefix}error: {exc}", file=sys.stderr)
        return exc.code
    except WitnessRefused as exc:
        print(f"REFUSED: {exc}", file=sys.stderr)
        return 1
    except (LogError, NoteError) as exc:
        print(f"TAMPERED: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        from gateway_plugins.policy.redis_client import RedisAddressError

        if type(exc).__module__.startswith("redis") or isinstance(exc, RedisAddressError):
            print(f"{prefix}error: Redis at {redis_source}: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 2
        raise
