"""``kubegate audit verify|export`` (also ``python -m gateway_operator.audit_cli``); sync redis-py, no kopf."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import UTC, datetime

from gateway_plugins.policy.audit.chain import decode_key
from gateway_plugins.policy.audit.verify import parse_checkpoints, stream_entries, verify_entries
from gateway_plugins.policy.keys import GatewayKeys, audit_heads, audit_trims


def _time_to_id(value: str, end: bool) -> str:
    """Accept a stream id, epoch milliseconds, or an ISO-8601 time (UTC if no zone)."""
    if "-" in value and value.split("-")[0].isdigit() and value.split("-")[1].isdigit():
        return value
    if value.isdigit():
        return value
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise SystemExit(f"--since/--until: not a stream id, epoch ms or ISO time: {value!r}") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return str(int(t.timestamp() * 1000))


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kubegate audit", description="Verify or export the hash-chained audit stream.")
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("verify", "export"):
        s = sub.add_parser(name)
        s.add_argument(
            "--redis-url",
            required=True,
            help="the gateway's Redis: redis://, rediss://, redis+sentinel:// or redis+cluster:// (docs/redis.md)",
        )
        s.add_argument("--gateway", default="main", help="gateway name")
        s.add_argument(
            "--namespace", default="default", help="gateway namespace (stream kubegate:{<ns>:<gateway>:audit})"
        )
        s.add_argument("--stream", default=None, help="stream key; overrides --gateway")
        if name == "verify":
            s.add_argument(
                "--key-file",
                default=None,
                help="file with the Gateway's audit key (base64, Secret {gateway}-kubegate-audit-key, key audit-key); "
                "default: $KUBEGATE_AUDIT_KEY",
            )
            s.add_argument(
                "--checkpoints",
                default=None,
                help="checkpoints.json of ConfigMap {gateway}-audit-checkpoints (heads kept outside Redis)",
            )
            s.add_argument(
                "--allow-trimmed",
                action="store_true",
                help="accept chains starting after seq 1 without a trim mark (streams from before trim marks)",
            )
            s.add_argument("--allow-empty", action="store_true", help="accept a missing or empty stream")
        else:
            s.add_argument("--out", default="-", help="JSON Lines file (default stdout)")
            s.add_argument("--since", default=None, help="stream id, epoch ms or ISO time (inclusive)")
            s.add_argument("--until", default=None, help="stream id, epoch ms or ISO time (inclusive)")
            s.add_argument(
                "--follow",
                action="store_true",
                help="keep appending new records as they arrive (run it beside the proxies so records reach the "
                "file before the stream cap trims them); with --out, resumes after the last stream id in the file",
            )
            s.add_argument("--poll-seconds", type=float, default=1.0, help=argparse.SUPPRESS)
    return p


def _secret_hint(args: argparse.Namespace, path: str) -> str:
    secret = f"{args.gateway}-kubegate-audit-key"
    return f"kubectl -n {args.namespace} get secret {secret} -o jsonpath='{{.data.audit-key}}' | base64 -d > {path}"


def _key(args: argparse.Namespace) -> bytes:
    if args.key_file:
        source = f"--key-file {args.key_file}"
        try:
            with open(args.key_file, encoding="ascii") as f:
                text = f.read()
        except FileNotFoundError:
            raise SystemExit(
                f"error: {source}: no such file; write the Gateway's audit key there: {_secret_hint(args, args.key_file)}"
            ) from None
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not a base64 text file"
            raise SystemExit(f"error: {source}: {reason}") from None
    else:
        source = "$KUBEGATE_AUDIT_KEY"
        text = os.environ.get("KUBEGATE_AUDIT_KEY", "")
        if not text:
            raise SystemExit(
                "error: verify needs the audit key: pass --key-file FILE or set KUBEGATE_AUDIT_KEY "
                f"(FILE from: {_secret_hint(args, 'FILE')})"
            )
    try:
        return decode_key(text)
    except ValueError as exc:
        raise SystemExit(f"error: {source}: {exc}") from None


def _checkpoints(args: argparse.Namespace) -> dict:
    path = args.checkpoints
    if not path:
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            return parse_checkpoints(f.read())
    except FileNotFoundError:
        configmap = f"{args.gateway}-audit-checkpoints"
        raise SystemExit(
            f"error: --checkpoints {path}: no such file; write the Gateway's checkpoints there: kubectl -n "
            f"{args.namespace} get configmap {configmap} -o jsonpath='{{.data.checkpoints\\.json}}' > {path}"
        ) from None
    except OSError as exc:
        raise SystemExit(f"error: --checkpoints {path}: {exc.strerror}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise SystemExit(f"error: --checkpoints {path}: not a checkpoints.json: {exc}") from None


def _verify(client, stream: str, args: argparse.Namespace) -> int:
    key = _key(args)
    checkpoints = _checkpoints(args)
    if not client.exists(stream) and not args.allow_empty:
        print(f"TAMPERED: stream {stream} does not exist (deleted, or no such gateway)", file=sys.stderr)
        return 1
    # Heads and trim marks first: a writer racing us can only make the stream longer than its head, never shorter.
    heads = client.hgetall(audit_heads(stream))
    trims = client.hgetall(audit_trims(stream))
    report = verify_entries(
        stream_entries(client, stream),
        heads,
        key,
        trims=trims,
        checkpoints=checkpoints,
        allow_trimmed=args.allow_trimmed,
        allow_empty=args.allow_empty,
    )
    print(report.message(), file=sys.stdout if report.ok else sys.stderr)
    return 0 if report.ok else 1


def _last_exported_id(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 65536))
            lines = [line for line in f.read().splitlines() if line.strip()]
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise SystemExit(f"error: --out {path}: {exc.strerror}") from None
    try:
        return str(json.loads(lines[-1])["stream_id"]) if lines else None
    except (ValueError, KeyError, TypeError):
        raise SystemExit(
            f"error: --out {path}: its last line is not an exported record, so --follow cannot resume after it; "
            "give another --out file"
        ) from None


def _export(client, stream: str, args: argparse.Namespace) -> int:
    start = _time_to_id(args.since, False) if args.since else "-"
    end = _time_to_id(args.until, True) if args.until else "+"
    resume = _last_exported_id(args.out) if args.follow and args.out != "-" else None
    if resume:
        start = f"({resume}"
    mode = "a" if resume else "w"
    try:
        out = sys.stdout if args.out == "-" else open(args.out, mode, encoding="utf-8")  # noqa: SIM115 (stdout or file)
    except OSError as exc:
        raise SystemExit(f"error: --out {args.out}: {exc.strerror}") from None
    n = 0
    try:
        while True:
            for sid, fields in stream_entries(client, stream, start, end):
                rec = json.loads(fields[b"r"])
                rec["stream_id"] = sid.decode()
                out.write(json.dumps(rec, sort_keys=True, ensure_ascii=False) + "\n")
                start = f"({sid.decode()}"
                n += 1
            if not args.follow:
                break
            out.flush()
            if out is not sys.stdout:
                os.fsync(out.fileno())
            time.sleep(args.poll_seconds)
    except KeyboardInterrupt:
        pass
    finally:
        if out is not sys.stdout:
            out.close()
    print(f"exported {n} records", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None, *, redis_source: str = "--redis-url", prefix: str = "") -> int:
    """``redis_source`` names where the URL came from in messages (the URL itself may hold a password); ``prefix``
    starts the error line (``kubegate: `` from the kubegate CLI)."""
    from gateway_operator import audit_tlog_cli

    if argv is not None and audit_tlog_cli.handles(argv):  # prove, verify --public-key: the transparency log
        return audit_tlog_cli.main(argv, redis_source=redis_source, prefix=prefix)
    args = _parser().parse_args(argv)
    import redis

    from gateway_plugins.policy.redis_client import RedisAddressError, connect_sync

    stream = args.stream or GatewayKeys(args.namespace, args.gateway).audit_stream
    try:
        # A Cluster client connects here already (it reads the slot map).
        client = connect_sync(args.redis_url, socket_timeout=10, socket_connect_timeout=5)
    except (RedisAddressError, redis.RedisError) as exc:
        print(f"{prefix}error: Redis at {redis_source}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    try:
        if args.cmd == "verify":
            return _verify(client, stream, args)
        return _export(client, stream, args)
    except redis.RedisError as exc:
        print(f"{prefix}error: Redis at {redis_source}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    finally:
        client.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
