"""The managed Redis container's spec, run with the local redis-server: read-only root, only its volume writable,
a password required, and nothing lost across a restart (audit records and budget spend).

Same method as test_proxy_read_only_root.py (a private mount namespace with a read-only root; needs root or CAP_SYS_ADMIN, as CI has).
The image's entrypoint, run as non-root, only execs redis-server with these args, so the server itself is what
must cope with the read-only root. ``$(REDIS_PASSWORD)`` is expanded here as the kubelet does from the Secret.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import shlex
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis
from gateway_operator.builders.redis import build_redis

from gateway_plugins.audit import AuditWriter
from gateway_plugins.policy.budget_state import read_budget_state
from gateway_plugins.policy.keys import GatewayKeys
from gateway_plugins.policy.periods import period_bounds, period_key
from gateway_plugins.policy.schema import Budget
from tests.harness.procs import free_port, stop_process, tail, wait_until

ROOT = Path(__file__).resolve().parents[2]
GATEWAY = {
    "apiVersion": "kubegate.dev/v1alpha1",
    "kind": "LLMGateway",
    "metadata": {"name": "main", "namespace": "ns", "uid": "u"},
    "spec": {},
}


class RenderedRedis:
    """redis-server with exactly the rendered args, in a mount namespace whose root is read-only but /data."""

    def __init__(self, container: dict, data: Path, log: Path, password: str) -> None:
        server = shutil.which("redis-server")
        assert server, "redis-server is missing: run `bash scripts/ensure-redis.sh`"
        self.port = free_port()
        args = [a.replace("$(REDIS_PASSWORD)", password) for a in container["args"]]
        command = [server, *args, "--port", str(self.port), "--bind", "127.0.0.1"]
        # The claim: the same directory at every start (bound over itself, so it stays writable when / turns
        # read-only), unlike the emptyDir stand-in of test_proxy_read_only_root's _mount_script.
        q = shlex.quote(str(data))
        mounts = ["set -eu", "mount --make-rprivate /", f"mount --bind {q} {q}", "mount -o remount,bind,ro /"]
        self.script = "\n".join(mounts) + f"\ncd {q}\nexec " + shlex.join(command)
        self.log, self.password, self.proc = log, password, None

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    def start(self) -> RenderedRedis:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                ["unshare", "--mount", "sh", "-c", self.script],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        client = redis.Redis.from_url(self.url, socket_timeout=5)
        wait_until(client.ping, timeout=20, what="redis-server on a read-only root", proc=self.proc, log=self.log)
        client.close()
        return self

    def stop(self) -> None:
        stop_process(self.proc)  # SIGTERM, as the kubelet stops the pod on a restart


@pytest.fixture
def data_dir():
    # /data does not exist on this machine and a scratch tmpfs cannot go over /: the volume is mounted at a
    # stand-in directory instead, which redis-server, like in the pod, uses only as its working directory.
    data = Path(tempfile.mkdtemp(prefix="kg-redis-rofs-", dir="/var/tmp"))
    yield data
    shutil.rmtree(data, ignore_errors=True)


def _container(spec: dict | None = None) -> tuple[dict, dict]:
    statefulset, _service = build_redis({**GATEWAY, "spec": spec or {}})
    assert statefulset["kind"] == "StatefulSet"
    pod = statefulset["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    return statefulset, container


def test_managed_redis_requires_its_password_on_a_read_only_root(tmp_path, data_dir):
    statefulset, container = _container()
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert [m["mountPath"] for m in container["volumeMounts"]] == ["/data"]  # the image's WORKDIR, on the claim
    (claim,) = statefulset["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data" and claim["spec"]["resources"]["requests"]["storage"] == "5Gi"
    (env,) = container["env"]
    assert env["valueFrom"]["secretKeyRef"] == {"name": "main-kubegate-redis", "key": "password"}
    password = secrets.token_urlsafe(24)
    server = RenderedRedis(container, data_dir, tmp_path / "redis.log", password).start()
    try:
        anonymous = redis.Redis(port=server.port, socket_timeout=5)
        with pytest.raises(redis.AuthenticationError):
            anonymous.set("k", "v")
        wrong = redis.Redis(port=server.port, password="guess", socket_timeout=5)
        with pytest.raises(redis.AuthenticationError):
            wrong.ping()
        client = redis.Redis.from_url(server.url, socket_timeout=5)
        client.set("k", "v")
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert client.config_get("appendfsync") == {"appendfsync": "everysec"}
        client.close()
        assert "Read-only file system" not in server.log.read_text(errors="replace"), tail(server.log)
    finally:
        server.stop()


def test_restart_of_the_rendered_redis_loses_no_audit_record_and_no_spend(tmp_path, data_dir):
    _, container = _container()
    server = RenderedRedis(container, data_dir, tmp_path / "redis.log", secrets.token_urlsafe(24)).start()
    keys = GatewayKeys("ns", "main")
    budget = Budget(name="b", tenant="t", limit_usd="100")
    audit_key = secrets.token_bytes(32)

    async def write() -> None:
        client = aioredis.from_url(server.url)
        writer = AuditWriter(client, keys.audit_stream, key=audit_key, batch=10)
        await writer.start()
        for i in range(137):
            writer.submit({"v": 1, "request_id": f"r{i}"})
        assert await writer.flush(timeout=30)
        await writer.close()
        await client.hincrby(period_key(keys, budget, period_bounds(budget)[0]), "spent", 4_250_000)
        await client.aclose()

    asyncio.run(write())
    server.stop()
    server.start()
    try:

        async def read() -> float:
            client = aioredis.from_url(server.url)
            try:
                return (await read_budget_state(client, keys, budget, datetime.now(UTC))).spent_usd
            finally:
                await client.aclose()

        assert asyncio.run(read()) == 4.25
        env = {"KUBEGATE_AUDIT_KEY": base64.b64encode(audit_key).decode(), "PATH": "/usr/bin:/bin"}
        cmd = [sys.executable, "-m", "gateway_operator.audit_cli", "verify", "--redis-url", server.url]
        cmd += ["--namespace", "ns", "--gateway", "main"]
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60, env=env)
        assert done.returncode == 0 and "OK: 137 records in 1 chains" in done.stdout, done.stdout + done.stderr
    finally:
        server.stop()


def test_persistence_opt_out_runs_on_an_empty_dir():
    statefulset, container = _container({"redis": {"persistence": {"enabled": False}}})
    assert "volumeClaimTemplates" not in statefulset["spec"]
    assert statefulset["spec"]["template"]["spec"]["volumes"] == [{"name": "data", "emptyDir": {}}]
    assert container["args"][container["args"].index("--appendonly") + 1] == "no"
    assert "--requirepass" in container["args"]  # a password even in dev mode
