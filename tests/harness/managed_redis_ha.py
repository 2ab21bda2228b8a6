"""The managed Redis's high-availability pods (gateway_operator.builders.redis_ha) run as local processes, from the
StatefulSet the operator renders: each pod's two containers are its own command and environment, with the pods'
DNS names mapped to loopback ports, the claim and the config emptyDir to directories, and the password Secret to
``password``. A pod is lost with SIGKILL to both its processes, and comes back with the same data directory (its
claim) and a fresh config directory (emptyDir), as a rescheduled pod does.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import redis
from gateway_operator.builders.redis import build_redis
from gateway_operator.builders.redis_ha import MASTER_NAME, REDIS_PORT, SENTINEL_PORT, node_host

from tests.harness.procs import free_port, stop_process, tail, wait_until


class RenderedRedisGroup:
    def __init__(self, gateway: dict[str, Any], password: str) -> None:
        (self.statefulset,) = [o for o in build_redis(gateway) if o["kind"] == "StatefulSet"]
        self.gateway, self.namespace = gateway["metadata"]["name"], gateway["metadata"]["namespace"]
        self.replicas = int(self.statefulset["spec"]["replicas"])
        self.password = password
        self.dir = Path(tempfile.mkdtemp(prefix="kg-redis-ha-"))
        self.redis_ports = [free_port() for _ in range(self.replicas)]
        self.sentinel_ports = [free_port() for _ in range(self.replicas)]
        self.procs: dict[int, list[subprocess.Popen]] = {}
        self.restarts = dict.fromkeys(range(self.replicas), 0)

    # Addresses ------------------------------------------------------------------------------------------------
    def localize(self, text: str) -> str:
        """Rendered pod addresses (``<pod>.<gateway>-redis-nodes.<ns>.svc:<port>``) as their loopback ports."""
        for i in range(self.replicas):
            host = node_host(self.gateway, self.namespace, i)
            text = text.replace(f"{host}:{REDIS_PORT}", f"127.0.0.1:{self.redis_ports[i]}")
            text = text.replace(f"{host}:{SENTINEL_PORT}", f"127.0.0.1:{self.sentinel_ports[i]}")
        return text

    def ordinal_of(self, port: int) -> int:
        return self.redis_ports.index(port)

    @property
    def url_with_credentials(self) -> str:
        hosts = ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports)
        return f"redis+sentinel://:{self.password}@{hosts}/{MASTER_NAME}?sentinel_auth=1"

    # Pods -----------------------------------------------------------------------------------------------------
    def _env(self, container: dict[str, Any], ordinal: int) -> dict[str, str]:
        pod = f"{self.statefulset['metadata']['name']}-{ordinal}"
        env = {"PATH": os.environ["PATH"], "LANG": "C"}
        for var in container["env"]:
            if "value" in var:
                value = var["value"].replace("$(POD_NAME)", pod)
            elif "fieldRef" in var["valueFrom"]:
                assert var["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
                value = pod
            else:
                assert var["valueFrom"]["secretKeyRef"]["key"] == "password", var
                value = self.password
            env[var["name"]] = self.localize(value)
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        # KG_DATA and KG_CONF name mounts: a claim outlives the pod, an emptyDir is new with each pod.
        claims = {t["metadata"]["name"] for t in self.statefulset["spec"].get("volumeClaimTemplates", [])}
        for var in ("KG_DATA", "KG_CONF"):
            volume = mounts[env[var]]
            name = volume if volume in claims else f"{volume}-{self.restarts[ordinal]}"
            env[var] = str(self.dir / f"pod-{ordinal}" / name)
            Path(env[var]).mkdir(parents=True, exist_ok=True)
        env["KG_BIND"] = "127.0.0.1"
        return env

    def start_pod(self, ordinal: int) -> None:
        assert shutil.which("redis-server") and shutil.which("redis-cli"), "run `bash scripts/ensure-redis.sh`"
        procs = []
        for container in self.statefulset["spec"]["template"]["spec"]["containers"]:
            log = self.dir / f"pod-{ordinal}-{container['name']}-{self.restarts[ordinal]}.log"
            env = self._env(container, ordinal)
            with log.open("ab") as out:
                procs.append(
                    subprocess.Popen(
                        container["command"], env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
                    )
                )
        self.procs[ordinal] = procs

    def kill_pod(self, ordinal: int) -> None:
        for proc in self.procs.pop(ordinal, []):
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        self.restarts[ordinal] += 1

    def kill_primary(self) -> int:
        """SIGKILL the pod of the current primary (its data node and its sentinel: a lost node); returns its port."""
        port = self.primary_port()
        self.kill_pod(self.ordinal_of(port))
        return port

    def start(self) -> RenderedRedisGroup:
        try:
            for i in range(self.replicas):  # podManagementPolicy Parallel: all at once
                self.start_pod(i)
            self.wait_formed()
            return self
        except BaseException:
            self.stop()
            raise

    # State ----------------------------------------------------------------------------------------------------
    def node(self, ordinal: int) -> redis.Redis:
        return redis.Redis(port=self.redis_ports[ordinal], password=self.password, socket_timeout=3)

    def sentinel(self, ordinal: int) -> redis.Redis:
        return redis.Redis(port=self.sentinel_ports[ordinal], password=self.password, socket_timeout=3)

    def primary_port(self, via: int | None = None) -> int:
        ordinals = [via] if via is not None else sorted(self.procs)
        for i in ordinals:
            try:
                _host, port = self.sentinel(i).execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME)
                return int(port)
            except (redis.RedisError, TypeError):
                continue
        raise RuntimeError("no sentinel answers")

    def formed(self) -> bool:
        """Every running pod's sentinel names the same primary, sees every other running replica and sentinel."""
        running = sorted(self.procs)
        primaries = {self.primary_port(via=i) for i in running}
        if len(primaries) != 1:
            return False
        primary = self.ordinal_of(primaries.pop())
        for i in running:
            master = self.sentinel(i).sentinel_master(MASTER_NAME)
            if master["num-other-sentinels"] != len(running) - 1 or master["num-slaves"] < len(running) - 1:
                return False
        for i in running:
            info = self.node(i).info("replication")
            if i == primary:
                if info["role"] != "master" or info["connected_slaves"] != len(running) - 1:
                    return False
            elif info["role"] != "slave" or info["master_link_status"] != "up":
                return False
        return True

    def wait_formed(self, timeout: float = 60) -> None:
        try:
            wait_until(self.formed, timeout=timeout, what="the rendered Redis group forming", interval=0.3)
        except TimeoutError:
            logs = "\n".join(f"--- {p.name}\n{tail(p)}" for p in sorted(self.dir.glob("*.log")))
            raise TimeoutError(f"the rendered Redis group did not form\n{logs}") from None

    def client(self):  # -> redis.Redis on the current primary
        from gateway_plugins.policy.redis_client import connect_sync

        return connect_sync(self.url_with_credentials, socket_timeout=5)

    def stop(self) -> None:
        for procs in self.procs.values():
            for proc in procs:
                stop_process(proc)
        self.procs = {}
