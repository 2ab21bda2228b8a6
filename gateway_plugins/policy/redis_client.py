"""One Redis address string for three topologies, and the redis-py client each needs (sync and asyncio).

Every component (proxy, operator, CLI) is handed one string, as before, so a Sentinel group or a Cluster passes
through the same settings, Secrets and ``--redis-url`` flags as a single server:

- ``redis://[user:pass@]host:port/db`` or ``rediss://…``: one server (redis-py's own URL, unchanged);
- ``redis+sentinel://[user:pass@]host:port[,host:port…]/<master-name>[/db]`` (``rediss+sentinel`` for TLS): the
  current primary of a Sentinel group, asked of the sentinels again after every connection failure, so a
  promotion is followed without a restart;
- ``redis+cluster://[user:pass@]host:port[,host:port…]`` (``rediss+cluster`` for TLS): a Redis Cluster reached
  through any of the seed nodes (the client learns the rest from ``CLUSTER SHARDS``).

Query parameters: ``ca=<path>`` or ``ca_data=<PEM>`` (a CA bundle for TLS; default: the system's), ``cert=<path>``
and ``key=<path>`` (a client certificate and its key, for a Redis with ``tls-auth-clients yes``), and for Sentinel
``sentinel_auth=1`` (the sentinels require the same credentials as the data nodes). The credentials in the
string (or ``username``/``password`` given apart, which win) are an ACL user or the default user's password.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, parse_qsl, unquote, urlencode

SENTINEL_SCHEMES = {"redis+sentinel": False, "rediss+sentinel": True}
CLUSTER_SCHEMES = {"redis+cluster": False, "rediss+cluster": True}
STANDALONE_SCHEMES = {"redis": False, "rediss": True, "unix": False}

# What a failing store raises: anything. Besides RedisError and OSError, redis-py's asyncio connections raise
# AttributeError ("'NoneType' object has no attribute 'writelines'") or RuntimeError ("unable to perform operation on
# <TCPTransport closed=True>; the handler is closed") when another task closes the connection mid-command, as in a
# Redis Cluster failover. A store call that fails is the store failing, not the request: it fails closed like any
# outage (503), never reaching LiteLLM, which answers such exceptions with 400 or 500 and the exception's text.
STORE_ERRORS: tuple[type[BaseException], ...] = (Exception,)


class RedisAddressError(ValueError):
    """The address string cannot be used; the message names what is wrong (never the credentials)."""


@dataclass(frozen=True)
class RedisTarget:
    mode: str  # standalone | sentinel | cluster
    url: str  # standalone: the redis-py URL as given
    nodes: tuple[tuple[str, int], ...] = ()
    master_name: str = ""
    db: int = 0
    tls: bool = False
    ca_file: str | None = None
    ca_data: str | None = None  # a PEM bundle itself (the operator's, read from spec.redis.caSecretRef)
    cert_file: str | None = None  # a client certificate (PEM) and its key, presented in the TLS handshake
    key_file: str | None = None
    sentinel_auth: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)


def _nodes(netloc: str, scheme: str) -> tuple[tuple[str, int], ...]:
    hosts = netloc.rpartition("@")[2]
    out = []
    for part in hosts.split(","):
        host, _, port = part.strip().rpartition(":")
        if not host or not port.isdigit():
            raise RedisAddressError(f"{scheme}:// address {part!r} is not host:port (e.g. redis-0.redis:26379)")
        out.append((host.strip("[]"), int(port)))
    return tuple(out)


OUR_PARAMETERS = ("ca", "ca_data", "cert", "key")


def _without_ours(url: str) -> tuple[str, dict[str, str]]:
    """A standalone URL without kubegate's parameters (redis-py's URL parser does not know them), and those
    parameters."""
    base, sep, query = url.partition("?")
    if not sep:
        return url, {}
    pairs = parse_qsl(query, keep_blank_values=True)
    ours = {k: v for k, v in pairs if k in OUR_PARAMETERS}
    rest = urlencode([(k, v) for k, v in pairs if k not in ours])
    return (f"{base}?{rest}" if rest else base), ours


def parse(
    url: str,
    *,
    username: str | None = None,
    password: str | None = None,
    ca_file: str | None = None,
    ca_data: str | None = None,
    cert_file: str | None = None,
    key_file: str | None = None,
) -> RedisTarget:
    """``ca_file``/``ca_data`` (a PEM path or bundle) and ``cert_file``/``key_file`` win over the address's
    parameters. A client certificate needs TLS, and a certificate its key."""
    scheme = url.partition("://")[0].lower()
    if scheme in STANDALONE_SCHEMES:
        plain, params = _without_ours(url)
        return _checked(
            RedisTarget(
                "standalone",
                plain,
                tls=STANDALONE_SCHEMES[scheme],
                ca_file=ca_file or params.get("ca") or None,
                ca_data=ca_data or params.get("ca_data") or None,
                cert_file=cert_file or params.get("cert") or None,
                key_file=key_file or params.get("key") or None,
                username=username,
                password=password,
            )
        )
    if scheme not in SENTINEL_SCHEMES and scheme not in CLUSTER_SCHEMES:
        raise RedisAddressError(
            f"unknown Redis address scheme {scheme!r}: use redis://, rediss://, redis+sentinel://, "
            "rediss+sentinel://, redis+cluster:// or rediss+cluster://"
        )
    # urlsplit refuses "host:port,host:port" as a port, so credentials and hosts are split by hand.
    # The query first: its values (a CA file's path) may hold slashes.
    rest, _, query = url.partition("://")[2].partition("?")
    netloc, _, path = rest.partition("/")
    creds = netloc.rpartition("@")[0] if "@" in netloc else ""
    user, _, secret = creds.partition(":")
    params = {k: v[-1] for k, v in parse_qs(query).items()}
    common = {
        "nodes": _nodes(netloc, scheme),
        "ca_file": ca_file or params.get("ca") or None,
        "ca_data": ca_data or params.get("ca_data") or None,
        "cert_file": cert_file or params.get("cert") or None,
        "key_file": key_file or params.get("key") or None,
        "username": username if username is not None else (unquote(user) or None),
        "password": password if password is not None else (unquote(secret) or None),
    }
    if scheme in CLUSTER_SCHEMES:
        if path.strip("/") not in ("", "0"):
            raise RedisAddressError("redis+cluster:// has no database number: Redis Cluster only has db 0")
        return _checked(RedisTarget("cluster", url, tls=CLUSTER_SCHEMES[scheme], **common))
    segments = [s for s in path.split("/") if s]
    if not segments:
        raise RedisAddressError(
            "redis+sentinel:// needs the master name after the sentinels, e.g. "
            "redis+sentinel://sentinel-0:26379,sentinel-1:26379/mymaster"
        )
    db = segments[1] if len(segments) > 1 else "0"
    if not db.isdigit():
        raise RedisAddressError(f"redis+sentinel:// database {db!r} is not a number")
    return _checked(
        RedisTarget(
            "sentinel",
            url,
            master_name=unquote(segments[0]),
            db=int(db),
            tls=SENTINEL_SCHEMES[scheme],
            sentinel_auth=params.get("sentinel_auth", "") in ("1", "true", "yes"),
            **common,
        )
    )


def _checked(target: RedisTarget) -> RedisTarget:
    if (target.cert_file or target.key_file) and not target.tls:
        raise RedisAddressError(
            "a client certificate needs TLS: use rediss://, rediss+sentinel:// or rediss+cluster:// "
            "(spec.redis.tls: true for topology sentinel or cluster)"
        )
    if bool(target.cert_file) != bool(target.key_file):
        raise RedisAddressError("a client certificate needs its key, and a key its certificate (cert= and key=)")
    return target


def _tls(target: RedisTarget) -> dict[str, Any]:
    if not target.tls:
        return {}
    return {
        "ssl": True,
        **({"ssl_ca_certs": target.ca_file} if target.ca_file else {}),
        **({"ssl_ca_data": target.ca_data} if target.ca_data else {}),
        **({"ssl_certfile": target.cert_file, "ssl_keyfile": target.key_file} if target.cert_file else {}),
    }


def _auth(target: RedisTarget) -> dict[str, Any]:
    return {k: v for k, v in (("username", target.username), ("password", target.password)) if v}


def _connect(
    target: RedisTarget,
    url: str,
    kwargs: dict[str, Any],
    *,
    redis_cls: Any,
    cluster_cls: Any,
    node_cls: Any,
    sentinel_cls: Any,
    cluster_drops: tuple[str, ...],
) -> Any:
    """The client of ``target``'s topology from one redis-py flavour's classes (asyncio or not)."""
    if target.mode == "standalone":
        # from_url makes the TLS connection of rediss:// itself; only the CA is added.
        tls = {k: v for k, v in _tls(target).items() if k != "ssl"}
        return redis_cls.from_url(target.url, **_auth(target), **tls, **kwargs)
    if target.mode == "cluster":
        # The cluster client retries MOVED/ASK and reconnects itself; its retry options have another shape.
        for key in cluster_drops:
            kwargs.pop(key, None)
        return cluster_cls(
            startup_nodes=[node_cls(h, p) for h, p in target.nodes], **_auth(target), **_tls(target), **kwargs
        )
    sentinel_kwargs = {**_tls(target), **(_auth(target) if target.sentinel_auth else {})}
    for key in ("socket_timeout", "socket_connect_timeout"):
        if key in kwargs:
            sentinel_kwargs[key] = kwargs[key]
    sentinel = sentinel_cls(list(target.nodes), sentinel_kwargs=sentinel_kwargs)
    return sentinel.master_for(target.master_name, db=target.db, **_auth(target), **_tls(target), **kwargs)


def connect_async(
    url: str,
    *,
    username: str | None = None,
    password: str | None = None,
    ca_file: str | None = None,
    cert_file: str | None = None,
    key_file: str | None = None,
    **kwargs: Any,
) -> Any:
    """A ``redis.asyncio`` client for ``url``; ``kwargs`` are connection options (timeouts, retry)."""
    import redis.asyncio as aioredis
    from redis.asyncio.cluster import ClusterNode, RedisCluster
    from redis.asyncio.sentinel import Sentinel

    return _connect(
        parse(url, username=username, password=password, ca_file=ca_file, cert_file=cert_file, key_file=key_file),
        url,
        kwargs,
        redis_cls=aioredis.Redis,
        cluster_cls=RedisCluster,
        node_cls=ClusterNode,
        sentinel_cls=Sentinel,
        cluster_drops=("retry_on_error",),
    )


def connect_sync(
    url: str,
    *,
    username: str | None = None,
    password: str | None = None,
    ca_file: str | None = None,
    cert_file: str | None = None,
    key_file: str | None = None,
    **kwargs: Any,
) -> Any:
    """A synchronous ``redis`` client for ``url`` (operator, CLI, tests); same options as :func:`connect_async`."""
    import redis
    from redis.cluster import ClusterNode, RedisCluster
    from redis.sentinel import Sentinel

    return _connect(
        parse(url, username=username, password=password, ca_file=ca_file, cert_file=cert_file, key_file=key_file),
        url,
        kwargs,
        redis_cls=redis.Redis,
        cluster_cls=RedisCluster,
        node_cls=ClusterNode,
        sentinel_cls=Sentinel,
        cluster_drops=("retry_on_error", "retry_on_timeout"),
    )


def redacted(url: str) -> str:
    """``url`` without its credentials, for messages."""
    scheme, _, rest = url.partition("://")
    netloc, sep, tail = rest.partition("/")
    return f"{scheme}://{netloc.rpartition('@')[2]}{sep}{tail}"


__all__ = ["RedisAddressError", "RedisTarget", "connect_async", "connect_sync", "parse", "redacted"]
