"""The S3 destination of the audit export (``spec.audit.export.s3``): each sealed segment becomes one object, written
with object-lock retention (``ObjectLockMode`` + ``ObjectLockRetainUntilDate``) into a bucket created with object
lock; the retention the server then reports is checked, so a server that ignores the headers is an export failure,
not a silent unlocked copy.

It runs in the operator (botocore, already in the operator image), never in the proxies: they only trim up to the
stream's exported mark. The credentials come from the Gateway's Secrets, are held in memory for one round and never
appear in a log line, an error or the status (``describe`` keeps an error's S3 code or class only).
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import os
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from gateway_operator.reconcile.auditexport import ExportProblem
from kubernetes import client

FIELD = "spec.audit.export.s3"
_session: Any = None
_session_lock = threading.Lock()
CONNECT_TIMEOUT = 5
READ_TIMEOUT = 30


class TargetError(ExportProblem):
    """The S3 destination cannot be set up (a Secret or key missing); names the field and the fix."""


@dataclass(frozen=True, repr=False)
class Target:
    endpoint: str | None
    bucket: str
    region: str
    prefix: str  # the Gateway's key prefix: <spec prefix><namespace>/<gateway>/
    access_key_id: str
    secret_access_key: str
    ca_pem: str | None
    path_style: bool
    mode: str
    retention_days: int

    def __repr__(self) -> str:  # never the credentials
        return f"Target(s3://{self.bucket}/{self.prefix} at {self.endpoint or 'AWS'})"


def _secret_value(core: client.CoreV1Api, ns: str, ref: dict[str, str], field: str) -> str:
    try:
        secret = core.read_namespaced_secret(ref["name"], ns)
    except client.ApiException as exc:
        if exc.status == 404:
            raise TargetError(f"{FIELD}.{field}: Secret {ref['name']!r} not found; create it in {ns}") from None
        raise
    raw = (secret.data or {}).get(ref["key"])
    if raw is None:
        raise TargetError(f"{FIELD}.{field}: Secret {ref['name']!r} has no key {ref['key']!r}")
    return base64.b64decode(raw).decode().strip()


def target_of(core: client.CoreV1Api, gw: dict[str, Any], spec: dict[str, Any]) -> Target:
    """The Gateway's bucket (``spec``: its ``spec.audit.export.s3``, as stored), credentials read from its Secrets."""
    ns, name = gw["metadata"]["namespace"], gw["metadata"]["name"]
    lock = spec.get("objectLock") or {}
    ca = spec.get("caSecretRef")
    return Target(
        endpoint=spec.get("endpoint"),
        bucket=spec["bucket"],
        region=spec.get("region") or "us-east-1",
        prefix=f"{spec.get('prefix') or ''}{ns}/{name}/",
        access_key_id=_secret_value(core, ns, spec["accessKeyIdSecretRef"], "accessKeyIdSecretRef"),
        secret_access_key=_secret_value(core, ns, spec["secretAccessKeySecretRef"], "secretAccessKeySecretRef"),
        ca_pem=_secret_value(core, ns, ca, "caSecretRef") if ca else None,
        path_style=bool(spec.get("pathStyle")),
        mode=lock.get("mode") or "COMPLIANCE",
        retention_days=int(lock.get("retentionDays") or 180),
    )


@contextlib.contextmanager
def s3_client(target: Target) -> Iterator[Any]:
    """A botocore S3 client for one round (a private CA goes to a temporary file: botocore takes a path)."""
    import botocore.config
    import botocore.session

    config = botocore.config.Config(
        region_name=target.region,
        connect_timeout=CONNECT_TIMEOUT,
        read_timeout=READ_TIMEOUT,
        # A few quick retries: the next checkpoint round retries anyway, and a round must stay short.
        retries={"mode": "standard", "max_attempts": 2},
        s3={"addressing_style": "path" if target.path_style else "virtual"},
    )
    with tempfile.TemporaryDirectory(prefix="kg-s3-") as tmp:
        verify: bool | str = True
        if target.ca_pem:
            verify = os.path.join(tmp, "ca.pem")
            with open(verify, "w", encoding="utf-8") as f:
                f.write(target.ca_pem)
        global _session
        # One session for the process: a new one loads botocore's service models again (about 0.2 s of CPU per
        # round and Gateway); creating clients from it is not thread-safe, hence the lock.
        with _session_lock:
            if _session is None:
                _session = botocore.session.get_session()
            s3 = _session.create_client(
                "s3",
                endpoint_url=target.endpoint,
                aws_access_key_id=target.access_key_id,
                aws_secret_access_key=target.secret_access_key,
                config=config,
                verify=verify,
            )
        try:
            yield s3
        finally:
            s3.close()


@contextlib.contextmanager
def bucket(core: client.CoreV1Api, gw: dict[str, Any], spec: dict[str, Any]) -> Iterator[S3Destination]:
    """The Gateway's bucket as an export destination, for one round."""
    with destination(target_of(core, gw, spec)) as dest:
        yield dest


@contextlib.contextmanager
def destination(target: Target) -> Iterator[S3Destination]:
    with s3_client(target) as s3:
        yield S3Destination(s3, target)


class S3Destination:
    """``reconcile.auditexport.Destination`` over one bucket and prefix."""

    def __init__(self, s3: Any, target: Target) -> None:
        self.s3, self.target = s3, target

    def find(self, first_leaf: int) -> tuple[str, str] | None:
        """The segment stored at ``first_leaf``: the first version of its key, the one an earlier round wrote (a
        later version or a delete marker is someone else's, and changes nothing); adopted only if it is locked."""
        t = self.target
        found = self.s3.list_object_versions(Bucket=t.bucket, Prefix=f"{t.prefix}seg-{first_leaf:012d}-")
        for key, version in _first_versions(found.get("Versions") or []).items():
            self._check_locked(key, version)
            body = self.s3.get_object(Bucket=t.bucket, Key=key, VersionId=version)["Body"].read()
            return key.rpartition("/")[2], body.decode("utf-8")
        return None

    def put(self, name: str, body: bytes) -> str:
        t = self.target
        key = t.prefix + name
        until = dt.datetime.now(dt.UTC) + dt.timedelta(days=t.retention_days)
        stored = self.s3.put_object(
            Bucket=t.bucket,
            Key=key,
            Body=body,
            ContentType="application/jsonl",
            ObjectLockMode=t.mode,
            ObjectLockRetainUntilDate=until,
            # Object lock requires an integrity checksum on the upload (Content-MD5 or x-amz-checksum-*).
            ChecksumAlgorithm="SHA256",
        )
        self._check_locked(key, stored.get("VersionId"))  # the version just written, not a newer one
        return f"s3://{t.bucket}/{key}"

    def _check_locked(self, key: str, version: str | None) -> None:
        """The retention the server holds for the object: a server or bucket that ignored the lock fails the export
        (the stream keeps the records) instead of leaving an unlocked copy counted as exported."""
        t = self.target
        extra = {"VersionId": version} if version and version != "null" else {}
        try:
            held = self.s3.get_object_retention(Bucket=t.bucket, Key=key, **extra).get("Retention") or {}
        except Exception as exc:
            if (getattr(exc, "response", None) or {}).get("Error", {}).get("Code") is None:
                raise
            held = {}  # no retention configuration on it (or on the bucket)
        if held.get("Mode") not in ("GOVERNANCE", "COMPLIANCE") or not held.get("RetainUntilDate"):
            raise TargetError(
                f"{FIELD}.bucket: s3://{t.bucket}/{key} is not under object-lock retention; use a bucket created "
                "with object lock (e.g. aws s3api create-bucket --object-lock-enabled-for-bucket)"
            )


def reader(endpoint: str | None, region: str, path_style: bool, ca_file: str | None) -> Any:
    """A client for ``kubegate audit fetch-s3``: credentials from the usual AWS chain (environment, profile), which
    need only s3:ListBucketVersions and s3:GetObjectVersion."""
    import botocore.config
    import botocore.session

    config = botocore.config.Config(
        region_name=region, s3={"addressing_style": "path" if path_style else "virtual"}, retries={"mode": "standard"}
    )
    return botocore.session.get_session().create_client(
        "s3", endpoint_url=endpoint, config=config, verify=ca_file if ca_file else True
    )


def _first_versions(versions: list[dict[str, Any]]) -> dict[str, str]:
    """{key: id of its oldest version}, keys in order (a listing gives each key's versions newest first)."""
    first: dict[str, tuple[Any, str]] = {}
    for v in versions:
        when = v.get("LastModified")
        if v["Key"] not in first or (when is not None and when <= first[v["Key"]][0]):
            first[v["Key"]] = (when, v.get("VersionId") or "null")
    return {k: first[k][1] for k in sorted(first)}


def fetch_segments(s3: Any, bucket: str, prefix: str, directory: str | os.PathLike) -> tuple[int, list[str]]:
    """Download every segment under ``prefix`` (``<spec prefix><namespace>/<gateway>/``) into ``directory``, each
    key's first version (the one written and locked by the export), for ``kubegate audit verify --segments``.
    Returns (segments fetched, notes): keys that also have later versions or delete markers, i.e. attempts to
    overwrite or delete a segment; the locked first version is what is checked."""
    from gateway_plugins.policy.audit.segments import write_bytes

    versions: list[dict[str, Any]] = []
    markers: set[str] = set()
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
        versions += [v for v in page.get("Versions") or [] if v["Key"].rpartition("/")[2].startswith("seg-")]
        markers |= {m["Key"] for m in page.get("DeleteMarkers") or []}
    first = _first_versions(versions)
    counts: dict[str, int] = {}
    for v in versions:
        counts[v["Key"]] = counts.get(v["Key"], 0) + 1
    notes = [f"{k}: {counts[k] - 1} later version(s) ignored" for k in first if counts[k] > 1]
    notes += [f"{k}: a delete marker hides it; its locked version was fetched" for k in sorted(markers) if k in first]
    for key, version in first.items():
        body = s3.get_object(Bucket=bucket, Key=key, VersionId=version)["Body"].read()
        write_bytes(directory, key.rpartition("/")[2], body)
    return len(first), notes
