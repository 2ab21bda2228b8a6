"""``kubegate audit prove`` and ``kubegate audit verify --public-key``: the audit transparency log, checked with
the log's public key only (no audit HMAC key). Sync redis-py, no kopf; ``audit_cli.main`` routes here.

Where the inputs come from (the ConfigMap ``{gateway}-audit-checkpoints``, written by the operator):

- ``--checkpoint``: key ``tlog-checkpoint``, the latest signed checkpoint (a C2SP signed note);
- ``--public-key``: ``status.auditLogPublicKey`` of the LLMGateway, or key ``tlog-public-key`` (a C2SP vkey), as
  the string itself or a file holding it; an auditor should take it from a copy kept outside the cluster;
- ``--tlog-state``: key ``tlog-state``; needed only once the stream's cap has trimmed the first logged records;
- ``--old-checkpoint``: a checkpoint kept from earlier (e.g. the one a proof was first given with).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from gateway_plugins.policy.audit.note import NoteError, Verifier, parse_checkpoint
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
from gateway_plugins.policy.keys import GatewayKeys


class UsageError(Exception):
    """A missing or unreadable input: reported as ``error: ...``, exit status 2."""

    code = 2


class NotFound(UsageError):
    """No provable record with that request id: exit status 1."""

    code = 1


def handles(argv: list[str]) -> bool:
    public = any(a == "--public-key" or a.startswith("--public-key=") for a in argv)
    return bool(argv) and (argv[0] == "prove" or (argv[0] == "verify" and public))


def _common(s: argparse.ArgumentParser, redis_required: bool) -> None:
    s.add_argument("--redis-url", required=redis_required, help="redis:// URL of the gateway's Redis")
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
    v.add_argument("--allow-trimmed", action="store_true", help=argparse.SUPPRESS)
    v.add_argument("--allow-empty", action="store_true", help=argparse.SUPPRESS)
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
    import redis

    stream = args.stream or GatewayKeys(args.namespace, args.gateway).audit_stream
    client = redis.Redis.from_url(args.redis_url, socket_timeout=10, socket_connect_timeout=5)
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
        print(
            f"OK: request {doc['request_id']} is record {doc['leaf_index']} of the {cp.size}-record log {cp.origin}, "
            f"whose checkpoint is signed by the log's key{cons}"
        )
    return 0


def _verify_stream(args: argparse.Namespace, verifier: Verifier) -> int:
    if not args.checkpoint or not args.redis_url:
        raise UsageError("verify --public-key needs --proof, or --redis-url and --checkpoint")
    cp = open_verified(_read(args.checkpoint, "--checkpoint"), verifier)
    old = open_verified(_read(args.old_checkpoint, "--old-checkpoint"), verifier) if args.old_checkpoint else None
    log = read_log(_entries(args), cp.size, _state(args))
    check_stream(log, cp)
    if old is not None:
        consistency(log, old, cp)
    checked = cp.size - log.tree.start
    before = f" (the {log.tree.start} before them are summed up by an anchor)" if log.tree.start else ""
    before += f"; {log.uncovered} older records in the stream not covered" if log.uncovered else ""
    cons = f"; consistent with the checkpoint of {old.size} records" if old is not None else ""
    print(f"OK: {checked} records hash to the signed root of the {cp.size}-record log {cp.origin}{before}{cons}")
    return 0


def main(argv: list[str], *, redis_source: str = "--redis-url", prefix: str = "") -> int:
    """As ``audit_cli.main``: ``redis_source`` names the Redis in messages, ``prefix`` starts error lines."""
    args = _parser().parse_args(argv)
    try:
        if args.cmd == "prove":
            return _prove(args)
        verifier = _verifier(args.public_key)
        return _verify_proofs(args, verifier) if args.proof else _verify_stream(args, verifier)
    except UsageError as exc:
        print(f"{prefix}error: {exc}", file=sys.stderr)
        return exc.code
    except (LogError, NoteError) as exc:
        print(f"TAMPERED: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        if type(exc).__module__.startswith("redis"):
            print(f"{prefix}error: Redis at {redis_source}: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 2
        raise
