"""``kubegate audit verify|export`` (also ``python -m gateway_plugins.audit``); sync redis-py, no kopf."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from datetime import UTC, datetime

from gateway_plugins.audit.verify import verify_entries
from gateway_plugins.audit.writer import heads_key
from gateway_plugins.policy.keys import GatewayKeys

PAGE = 1000


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


def _entries(client, stream: str, start: str = "-", end: str = "+") -> Iterator[tuple[bytes, dict]]:
    cursor = start
    first = True
    while True:
        page = client.xrange(stream, min=cursor if first else f"({cursor}", max=end, count=PAGE)
        first = False
        if not page:
            return
        yield from page
        cursor = page[-1][0].decode()
        if len(page) < PAGE:
            return


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kubegate audit", description="Verify or export the hash-chained audit stream.")
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("verify", "export"):
        s = sub.add_parser(name)
        s.add_argument("--redis-url", required=True, help="redis:// URL of the gateway's Redis")
        s.add_argument("--gateway", default="main", help="gateway name")
        s.add_argument(
            "--namespace", default="default", help="gateway namespace (stream kubegate:{ns}:{gateway}:audit)"
        )
        s.add_argument("--stream", default=None, help="stream key; overrides --gateway")
        if name == "verify":
            s.add_argument(
                "--allow-trimmed", action="store_true", help="accept chains whose start was trimmed by MAXLEN"
            )
        else:
            s.add_argument("--out", default="-", help="JSON Lines file (default stdout)")
            s.add_argument("--since", default=None, help="stream id, epoch ms or ISO time (inclusive)")
            s.add_argument("--until", default=None, help="stream id, epoch ms or ISO time (inclusive)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    import redis

    stream = args.stream or GatewayKeys(args.namespace, args.gateway).audit_stream
    client = redis.Redis.from_url(args.redis_url, socket_timeout=10, socket_connect_timeout=5)
    try:
        if args.cmd == "verify":
            # Heads first: a writer racing us can only make the stream longer than its head, never shorter.
            heads = client.hgetall(heads_key(stream))
            report = verify_entries(_entries(client, stream), heads, allow_trimmed=args.allow_trimmed)
            print(report.message(), file=sys.stdout if report.ok else sys.stderr)
            return 0 if report.ok else 1
        start = _time_to_id(args.since, False) if args.since else "-"
        end = _time_to_id(args.until, True) if args.until else "+"
        out = sys.stdout if args.out == "-" else open(args.out, "w", encoding="utf-8")  # noqa: SIM115 (stdout or file)
        n = 0
        try:
            for sid, fields in _entries(client, stream, start, end):
                rec = json.loads(fields[b"r"])
                rec["stream_id"] = sid.decode()
                out.write(json.dumps(rec, sort_keys=True, ensure_ascii=False) + "\n")
                n += 1
        finally:
            if out is not sys.stdout:
                out.close()
        print(f"exported {n} records", file=sys.stderr)
        return 0
    except redis.RedisError as exc:
        print(f"error: Redis at --redis-url: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    finally:
        client.close()
