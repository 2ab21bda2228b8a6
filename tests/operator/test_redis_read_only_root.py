"""The managed Redis container's spec, run with the local redis-server: read-only root, only its emptyDirs writable.

Same method as test_proxy_read_only_root.py (a private mount namespace; needs root or CAP_SYS_ADMIN, as CI has). The image's entrypoint, run as non-root,
only execs redis-server with these args, so the server itself is what must cope with the read-only root.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

import redis
from gateway_operator.builders.redis import build_redis

from tests.harness.procs import free_port, stop_process, tail, wait_until
from tests.operator.test_proxy_read_only_root import _mount_script


def test_managed_redis_serves_and_saves_with_read_only_root(tmp_path):
    gateway = {
        "apiVersion": "kubegate.dev/v1alpha1",
        "kind": "LLMGateway",
        "metadata": {"name": "main", "namespace": "ns", "uid": "u"},
        "spec": {},
    }
    deployment, _service = build_redis(gateway)
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    empty_dirs = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
    writable = sorted(m["mountPath"] for m in container["volumeMounts"] if m["name"] in empty_dirs)
    assert writable == ["/data"]  # the image's WORKDIR

    # /data does not exist on this machine and a scratch tmpfs cannot go over /: the emptyDir is mounted at a
    # stand-in directory instead, which redis-server, like in the pod, uses only as its working directory.
    data = Path(tempfile.mkdtemp(prefix="kg-redis-rofs-", dir="/var/tmp"))
    server = shutil.which("redis-server")
    assert server, "redis-server is missing: run `bash scripts/ensure-redis.sh`"
    port = free_port()
    command = [server, *container["args"], "--port", str(port), "--bind", "127.0.0.1"]
    script = _mount_script([str(data)]) + f"\ncd {shlex.quote(str(data))}\nexec " + shlex.join(command)
    log = tmp_path / "redis.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["unshare", "--mount", "sh", "-c", script],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        client = redis.Redis(port=port, socket_timeout=5)
        wait_until(client.ping, timeout=20, what="redis-server on a read-only root", proc=proc, log=log)
        client.set("k", "v")
        assert client.get("k") == b"v"
        assert client.config_get("save") == {"save": ""} and client.config_get("appendonly") == {"appendonly": "no"}
        # A manual SAVE (an operator debugging) lands in the writable working directory instead of failing.
        assert client.save()
        client.close()
        assert "Read-only file system" not in log.read_text(errors="replace"), tail(log)
        assert proc.poll() is None, tail(log)
    finally:
        stop_process(proc)
        shutil.rmtree(data, ignore_errors=True)
