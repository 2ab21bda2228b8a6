"""Environment-driven settings of the data plane (read once per process).

=============================  ==========================================================  ===========
Variable                       Meaning                                                     Default
=============================  ==========================================================  ===========
KUBEGATE_GATEWAY               Gateway name (Redis keys: ``kubegate:{ns:gw…}:``)            ``main``
KUBEGATE_NAMESPACE             Gateway namespace (in every Redis key and the policy)       ``default``
KUBEGATE_REDIS_URL             ``redis[s]://``, ``redis[s]+sentinel://`` or                unset
                               ``redis[s]+cluster://`` address (unset: no Redis)
KUBEGATE_REDIS_PASSWORD        Redis password (from a Secret; kept out of the URL)         unset
KUBEGATE_REDIS_USERNAME        Redis ACL user (with the password; unset: the default user) unset
KUBEGATE_REDIS_REPLICA_ACKS    replicas that must confirm audit and settle writes (WAIT)   0
KUBEGATE_REDIS_CA_FILE         PEM CA bundle verifying the Redis TLS certificate           the system's
KUBEGATE_REDIS_CERT_FILE       PEM client certificate presented to a Redis that asks for   unset
                               one (``tls-auth-clients``), with KUBEGATE_REDIS_KEY_FILE
KUBEGATE_REDIS_KEY_FILE        PEM private key of that certificate                         unset
KUBEGATE_POLICY_PUBLIC_KEY     base64 Ed25519 public key policy documents must verify with unset
KUBEGATE_POLICY_PUBLIC_KEY_FILE  the same, read from a file (mounted)                      unset
KUBEGATE_AUDIT_KEY             base64 HMAC key of the audit chain (from a Secret)          unset
KUBEGATE_POLICY_FILE           Policy document mounted from the ConfigMap (JSON or gzip)   unset
KUBEGATE_POLICY_POLL_SECONDS   Interval of the revision poll that backs up pub/sub         ``1.0``
KUBEGATE_AUDIT_STREAM          Redis stream of audit records                               ``kubegate:{ns}:{gw}:audit``
KUBEGATE_AUDIT_SPOOL_DIR       Local spool used while Redis is down                        ``/tmp/kubegate-spool``
KUBEGATE_AUDIT_STREAM_MAXLEN   Approximate cap of the audit stream (XADD MAXLEN ~)         ``1000000``
KUBEGATE_AUDIT_SPOOL_MAX       Records kept locally while Redis is down                    ``100000``
KUBEGATE_REDIS_MEMORY_POLL_SECONDS  Interval of the ``INFO memory`` read behind the Redis     ``30``
                               memory metrics (gateway_plugins.redis_memory)
KUBEGATE_MASTER_KEY_SHA256     SHA-256 of the admin key; unset means admin routes refused  unset
KUBEGATE_METRICS               ``0`` disables the metrics port                              ``1``
KUBEGATE_METRICS_PORT          Port of ``/metrics`` (never the tenant port)                ``9464``
KUBEGATE_METRICS_ADDR          Address the metrics port binds                              ``0.0.0.0``
KUBEGATE_REAP_AFTER_SECONDS    Wait for LiteLLM's report of a served answer before the     ``30``
                               front door ends the request itself (client gone)
KUBEGATE_FAST_PATH             ``1``: the front door serves chat, Responses and Messages   ``1``
                               (and completions JSON) itself (``gateway_plugins.fast_path``:
                               kubegate's hooks and the proxy's Router called directly);
                               ``0``: LiteLLM's handlers
PROMETHEUS_MULTIPROC_DIR       Set with several workers: prometheus multiprocess mode     unset
=============================  ==========================================================  ===========

``KUBEGATE_AUDIT_UNAUTHENTICATED_WINDOW_SECONDS`` (default ``60``, at most 3600): refusals without a valid key
write one sample record per reason and source class and one summary record per window of this length.

Without a policy public key no policy document is ever taken (every request is refused as unauthenticated).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from gateway_plugins.policy.keys import GatewayKeys


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


@dataclass(frozen=True, slots=True)
class Settings:
    gateway: str = "main"
    namespace: str = "default"
    redis_url: str | None = None
    redis_password: str | None = field(default=None, repr=False)
    redis_username: str | None = None
    redis_ca_file: str | None = None
    redis_cert_file: str | None = None
    redis_key_file: str | None = None
    redis_replica_acks: int = 0
    policy_public_key: str | None = None
    audit_key: str | None = field(default=None, repr=False)
    policy_file: str | None = None
    policy_poll_seconds: float = 1.0
    audit_stream: str = ""
    audit_spool_dir: str = "/tmp/kubegate-spool"
    audit_stream_maxlen: int = 1_000_000
    audit_spool_max: int = 100_000
    redis_memory_poll_seconds: float = 30.0
    audit_unauthenticated_window: float = 60.0
    master_key_sha256: str | None = None
    metrics_enabled: bool = True
    multiproc_dir: str | None = field(default=None)
    fast_path: bool = False

    @property
    def keys(self) -> GatewayKeys:
        return GatewayKeys(self.namespace, self.gateway)


def _public_key() -> str | None:
    inline = _env("KUBEGATE_POLICY_PUBLIC_KEY")
    if inline is not None:
        return inline
    path = _env("KUBEGATE_POLICY_PUBLIC_KEY_FILE")
    if path is None:
        return None
    try:
        return Path(path).read_text().strip()
    except OSError as exc:
        raise ValueError(f"KUBEGATE_POLICY_PUBLIC_KEY_FILE: cannot read {path}: {exc.strerror}") from None


def _positive_int(name: str, default: int) -> int:
    raw = _env(name, str(default)) or str(default)
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name}: not an integer: {raw!r}") from None
    if value < 1:
        raise ValueError(f"{name}: must be >= 1")
    return value


def load_settings() -> Settings:
    gateway = _env("KUBEGATE_GATEWAY", "main") or "main"
    namespace = _env("KUBEGATE_NAMESPACE", "default") or "default"
    poll = _env("KUBEGATE_POLICY_POLL_SECONDS", "1.0") or "1.0"
    try:
        poll_seconds = float(poll)
    except ValueError:
        raise ValueError(f"KUBEGATE_POLICY_POLL_SECONDS: not a number: {poll!r}") from None
    if poll_seconds <= 0:
        raise ValueError("KUBEGATE_POLICY_POLL_SECONDS: must be > 0")
    memory_poll = _env("KUBEGATE_REDIS_MEMORY_POLL_SECONDS", "30") or "30"
    try:
        memory_poll_seconds = float(memory_poll)
    except ValueError:
        raise ValueError(f"KUBEGATE_REDIS_MEMORY_POLL_SECONDS: not a number: {memory_poll!r}") from None
    if memory_poll_seconds <= 0:
        raise ValueError("KUBEGATE_REDIS_MEMORY_POLL_SECONDS: must be > 0")
    maxlen = _positive_int("KUBEGATE_AUDIT_STREAM_MAXLEN", 1_000_000)
    window = _env("KUBEGATE_AUDIT_UNAUTHENTICATED_WINDOW_SECONDS", "60") or "60"
    try:
        unauthenticated_window = float(window)
    except ValueError:
        raise ValueError(f"KUBEGATE_AUDIT_UNAUTHENTICATED_WINDOW_SECONDS: not a number: {window!r}") from None
    if not 0 < unauthenticated_window <= 3600:
        raise ValueError("KUBEGATE_AUDIT_UNAUTHENTICATED_WINDOW_SECONDS: must be > 0 and <= 3600")
    spool_max = _positive_int("KUBEGATE_AUDIT_SPOOL_MAX", 100_000)
    master = _env("KUBEGATE_MASTER_KEY_SHA256")
    if master is not None and (len(master) != 64 or any(c not in "0123456789abcdef" for c in master)):
        raise ValueError("KUBEGATE_MASTER_KEY_SHA256: must be a lower-case SHA-256 hex digest")
    return Settings(
        gateway=gateway,
        namespace=namespace,
        redis_url=_env("KUBEGATE_REDIS_URL"),
        redis_password=_env("KUBEGATE_REDIS_PASSWORD"),
        redis_username=_env("KUBEGATE_REDIS_USERNAME"),
        redis_ca_file=_env("KUBEGATE_REDIS_CA_FILE"),
        redis_cert_file=_env("KUBEGATE_REDIS_CERT_FILE"),
        redis_key_file=_env("KUBEGATE_REDIS_KEY_FILE"),
        redis_replica_acks=int(_env("KUBEGATE_REDIS_REPLICA_ACKS", "0") or 0),
        policy_public_key=_public_key(),
        audit_key=_env("KUBEGATE_AUDIT_KEY"),
        policy_file=_env("KUBEGATE_POLICY_FILE"),
        policy_poll_seconds=poll_seconds,
        audit_stream=_env("KUBEGATE_AUDIT_STREAM", GatewayKeys(namespace, gateway).audit_stream) or "",
        audit_spool_dir=_env("KUBEGATE_AUDIT_SPOOL_DIR", "/tmp/kubegate-spool") or "/tmp/kubegate-spool",
        audit_stream_maxlen=maxlen,
        audit_spool_max=spool_max,
        redis_memory_poll_seconds=memory_poll_seconds,
        audit_unauthenticated_window=unauthenticated_window,
        master_key_sha256=master,
        metrics_enabled=_env("KUBEGATE_METRICS", "1") != "0",
        multiproc_dir=_env("PROMETHEUS_MULTIPROC_DIR"),
        fast_path=_env("KUBEGATE_FAST_PATH", "1") == "1",
    )
