"""Private Redis Cluster and Sentinel groups of real ``redis-server`` processes on free loopback ports.

``RedisClusterGroup``: three masters sharing the 16384 slots (formed with CLUSTER ADDSLOTSRANGE and MEET, as
``redis-cli --cluster create`` does), with an ACL user the clients log in as. ``SentinelGroup``: a primary, a
replica and three sentinels (quorum 2) monitoring it under ``MASTER``; ``kill_primary`` is the outage.
"""

from __future__ import annotations

import secrets
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import redis

from tests.harness.procs import free_port, stop_process, wait_until

SLOTS = 16384
MASTER = "kgmaster"


def _binary() -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is missing: run `bash scripts/ensure-redis.sh`")
    return binary


def _start(args: list[str], workdir: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [_binary(), *args, "--bind", "127.0.0.1", "--dir", str(workdir), "--logfile", str(workdir / "redis.log")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


class _Pki:
    """A CA and one certificate for 127.0.0.1 that serves and, on the cluster bus, authenticates as a client."""

    def __init__(self, directory: Path) -> None:
        import datetime as dt
        import ipaddress

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        now = dt.datetime.now(dt.UTC)
        ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kubegate-redis-test-ca")])

        def cert(subject, public_key, extensions):
            builder = (
                x509.CertificateBuilder()
                .subject_name(subject)
                .issuer_name(ca_name)
                .public_key(public_key)
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(hours=1))
                .not_valid_after(now + dt.timedelta(days=1))
            )
            for ext, critical in extensions:
                builder = builder.add_extension(ext, critical=critical)
            return builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)

        self.ca_cert, self.serving_cert, self.serving_key = (
            directory / "ca.crt",
            directory / "redis.crt",
            directory / "redis.key",
        )
        self.ca_cert.write_bytes(
            cert(ca_name, ca_key.public_key(), [(x509.BasicConstraints(ca=True, path_length=None), True)])
        )
        node = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "redis")])
        usages = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH])
        san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
        self.serving_cert.write_bytes(cert(node, key.public_key(), [(usages, False), (san, False)]))
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        self.serving_key.write_bytes(pem)
        self.serving_key.chmod(0o600)
        # A client's own certificate (what a kubernetes.io/tls Secret would hold), for tls-auth-clients yes.
        self.client_cert, self.client_key = directory / "client.crt", directory / "client.key"
        client_key = ec.generate_private_key(ec.SECP256R1())
        client = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kubegate-proxy")])
        client_usage = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH])
        self.client_cert.write_bytes(cert(client, client_key.public_key(), [(client_usage, False)]))
        self.client_key.write_bytes(
            client_key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        self.client_key.chmod(0o600)


class RedisClusterGroup:
    """Three masters, ``replicas`` replicas each (none by default); clients authenticate as ACL user ``kubegate``
    (the default user is off). ``node_timeout_ms``: how long a silent master takes to be failed over (Redis's
    default, 15 s, unless a test waits for a failover)."""

    USER = "kubegate"
    SECRET = "redis-acl"  # the Secret a Gateway spec names for USER and its password

    def __init__(
        self,
        masters: int = 3,
        tls: bool = False,
        replicas: int = 0,
        node_timeout_ms: int = 15000,
        client_certs: bool = False,
    ) -> None:
        self.masters = masters
        # With TLS: every client must present a certificate of the test CA (tls-auth-clients yes).
        self.client_certs = tls and client_certs
        self.node_timeout_ms = node_timeout_ms
        self.ports = [free_port() for _ in range(masters * (1 + replicas))]
        # Explicit bus ports: the default (port + 10000) may be taken or above 65535 for a free port.
        self.bus_ports = [free_port() for _ in self.ports]
        self.dir = Path(tempfile.mkdtemp(prefix="kg-rcluster-"))
        self.password = secrets.token_urlsafe(16)
        self.procs: list[subprocess.Popen] = []
        self.killed: set[int] = set()
        # TLS only (no plain port), the cluster bus too; a CA of the test's own (tests.harness.controlplane's).
        self.pki = _Pki(self.dir) if tls else None

    @property
    def scheme(self) -> str:
        return "rediss+cluster" if self.pki else "redis+cluster"

    @property
    def url(self) -> str:
        """The address the proxies get (credentials apart, in KUBEGATE_REDIS_USERNAME/PASSWORD)."""
        return f"{self.scheme}://" + ",".join(f"127.0.0.1:{p}" for p in self.ports[: self.masters])

    def gateway_spec(self, **extra) -> dict:
        """A Gateway's spec.redis on this cluster: its masters as seed nodes, TLS when it speaks only TLS, the ACL
        user and password from the Secret ``SECRET`` (``secrets`` holds their values)."""
        spec = {
            "mode": "external",
            "topology": "cluster",
            "cluster": {"nodes": [f"127.0.0.1:{p}" for p in self.ports[: self.masters]]},
            **({"tls": True} if self.pki else {}),
            "usernameSecretRef": {"name": self.SECRET, "key": "username"},
            "passwordSecretRef": {"name": self.SECRET, "key": "password"},
        }
        return {**spec, **extra}

    @property
    def secrets(self) -> dict[tuple[str, str], str]:
        return {(self.SECRET, "username"): self.USER, (self.SECRET, "password"): self.password}

    @property
    def url_with_credentials(self) -> str:
        hosts = ",".join(f"127.0.0.1:{p}" for p in self.ports[: self.masters])
        ca = f"?ca={self.pki.ca_cert}" if self.pki else ""
        cert = f"&cert={self.pki.client_cert}&key={self.pki.client_key}" if self.client_certs else ""
        return f"{self.scheme}://{self.USER}:{self.password}@{hosts}{ca}{cert}"

    def _tls_args(self, port: int) -> list[str]:
        if self.pki is None:
            return ["--port", str(port)]
        return [
            "--port", "0", "--tls-port", str(port), "--tls-cluster", "yes",
            "--tls-cert-file", str(self.pki.serving_cert), "--tls-key-file", str(self.pki.serving_key),
            "--tls-ca-cert-file", str(self.pki.ca_cert), "--tls-auth-clients", "yes" if self.client_certs else "no",
        ]  # fmt: skip

    def _node(self, port: int) -> redis.Redis:
        tls = {"ssl": True, "ssl_ca_certs": str(self.pki.ca_cert)} if self.pki else {}
        if self.client_certs:
            tls.update(ssl_certfile=str(self.pki.client_cert), ssl_keyfile=str(self.pki.client_key))
        return redis.Redis(
            host="127.0.0.1", port=port, username=self.USER, password=self.password, socket_timeout=5, **tls
        )

    def start(self) -> RedisClusterGroup:
        try:
            return self._start()
        except BaseException:
            self.stop()  # never leave half a cluster running
            raise

    def _start(self) -> RedisClusterGroup:
        for port, bus in zip(self.ports, self.bus_ports, strict=True):
            workdir = self.dir / str(port)
            workdir.mkdir()
            self.procs.append(
                _start(
                    [
                        *self._tls_args(port),
                        "--cluster-enabled", "yes", "--cluster-port", str(bus),
                        "--cluster-config-file", str(workdir / "nodes.conf"),
                        "--save", "", "--appendonly", "no",
                        "--cluster-node-timeout", str(self.node_timeout_ms),
                        "--masteruser", self.USER, "--masterauth", self.password,
                        # redis-server joins the words after an option into its line: one word each.
                        "--user", "default", "off",
                        "--user", self.USER, "on", f">{self.password}", "~*", "&*", "+@all",
                    ],
                    workdir,
                )
            )  # fmt: skip
        nodes = [self._node(p) for p in self.ports]
        for proc, node in zip(self.procs, nodes, strict=True):
            wait_until(node.ping, timeout=10, what="cluster redis-server", proc=proc)
        masters = nodes[: self.masters]
        share = SLOTS // len(masters)
        for i, node in enumerate(masters):
            last = SLOTS - 1 if i == len(masters) - 1 else (i + 1) * share - 1
            node.execute_command("CLUSTER ADDSLOTSRANGE", i * share, last)
        for port, bus in zip(self.ports[1:], self.bus_ports[1:], strict=True):
            nodes[0].execute_command("CLUSTER MEET", "127.0.0.1", port, bus)

        def formed() -> bool:
            # redis-py parses both replies (CLUSTER INFO: a dict of fields; CLUSTER NODES: a dict by address).
            return all(n.execute_command("CLUSTER INFO")["cluster_state"] == "ok" for n in nodes) and all(
                len(n.execute_command("CLUSTER NODES")) == len(nodes) for n in nodes
            )

        wait_until(formed, timeout=30, what="redis cluster formation")
        for i, replica in enumerate(nodes[self.masters :]):
            master_id = masters[i % self.masters].execute_command("CLUSTER MYID")
            replica.execute_command("CLUSTER REPLICATE", master_id)
        for replica in nodes[self.masters :]:
            wait_until(
                lambda r=replica: r.info("replication").get("master_link_status") == "up",
                timeout=30,
                what="cluster replica sync",
            )
        for n in nodes:
            n.close()
        return self

    def master_port_of(self, key: str) -> int:
        """The port of the master that serves ``key``'s slot now."""
        from redis.crc import key_slot

        slot = key_slot(key.encode())
        for port in self.ports:
            if port not in self.killed:
                node = self._node(port)
                try:
                    for start, end, master, *_ in node.execute_command("CLUSTER SLOTS"):
                        if start <= slot <= end:
                            return int(master[1])
                finally:
                    node.close()
        raise RuntimeError("no node answers CLUSTER SLOTS")

    def kill(self, port: int) -> None:
        """SIGKILL one node (no goodbye to its replicas)."""
        proc = self.procs[self.ports.index(port)]
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        self.killed.add(port)

    def client(self):  # -> redis.cluster.RedisCluster
        from gateway_plugins.policy.redis_client import connect_sync

        return connect_sync(self.url_with_credentials, socket_timeout=5)

    def stop(self) -> None:
        for proc in self.procs:
            stop_process(proc)
        self.procs = []


class SentinelGroup:
    """A primary, ``replicas`` replicas, three sentinels; the data nodes require ``password`` (default user)."""

    def __init__(self, sentinels: int = 3, replicas: int = 1) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="kg-rsentinel-"))
        self.password = secrets.token_urlsafe(16)
        self.data_ports = [free_port() for _ in range(1 + replicas)]
        self.sentinel_ports = [free_port() for _ in range(sentinels)]
        self.data: dict[int, subprocess.Popen] = {}
        self.sentinels: list[subprocess.Popen] = []

    @property
    def url(self) -> str:
        return "redis+sentinel://" + ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports) + f"/{MASTER}"

    @property
    def url_with_credentials(self) -> str:
        hosts = ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports)
        return f"redis+sentinel://:{self.password}@{hosts}/{MASTER}"

    def _data_args(self, port: int) -> list[str]:
        return [
            "--port", str(port),
            "--requirepass", self.password, "--masterauth", self.password,
            "--save", "", "--appendonly", "yes", "--appendfsync", "always",
        ]  # fmt: skip

    def start(self, data_args: list[str] | None = None) -> SentinelGroup:
        try:
            return self._start(data_args)
        except BaseException:
            self.stop()  # never leave half a group running
            raise

    def _start(self, data_args: list[str] | None) -> SentinelGroup:
        primary, replicas = self.data_ports[0], self.data_ports[1:]
        for port in self.data_ports:
            workdir = self.dir / str(port)
            workdir.mkdir()
            extra = ["--replicaof", "127.0.0.1", str(primary)] if port in replicas else []
            self.data[port] = _start([*self._data_args(port), *extra, *(data_args or [])], workdir)
        for port, proc in self.data.items():
            node = redis.Redis(port=port, password=self.password, socket_timeout=5)
            wait_until(node.ping, timeout=10, what="sentinel group redis-server", proc=proc)
        for replica in replicas:
            replica_node = redis.Redis(port=replica, password=self.password, socket_timeout=5)
            wait_until(
                lambda n=replica_node: n.info("replication")["master_link_status"] == "up",
                timeout=30,
                what="replication",
            )
        for port in self.sentinel_ports:
            workdir = self.dir / f"s{port}"
            workdir.mkdir()
            conf = workdir / "sentinel.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {workdir}\nlogfile {workdir / 'sentinel.log'}\n"
                f"sentinel monitor {MASTER} 127.0.0.1 {primary} 2\n"
                f"sentinel auth-pass {MASTER} {self.password}\n"
                # Seconds, not the 30 s default: how long the primary must be silent before a failover starts.
                f"sentinel down-after-milliseconds {MASTER} 2000\n"
                f"sentinel failover-timeout {MASTER} 10000\n"
            )
            proc = subprocess.Popen(
                [_binary(), str(conf), "--sentinel"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            self.sentinels.append(proc)
        for port, proc in zip(self.sentinel_ports, self.sentinels, strict=True):
            s = redis.Redis(port=port, socket_timeout=5)
            # Each sentinel has found the replica and the other sentinels (through the primary's hello channel).
            wait_until(
                lambda s=s: (
                    s.sentinel_master(MASTER)["num-slaves"] == len(replicas)
                    and s.sentinel_master(MASTER)["num-other-sentinels"] == len(self.sentinel_ports) - 1
                ),
                timeout=30,
                what="sentinel discovery",
                proc=proc,
            )
        return self

    def primary_port(self) -> int:
        s = redis.Redis(port=self.sentinel_ports[0], socket_timeout=5)
        _host, port = s.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER)
        return int(port)

    def kill_primary(self) -> int:
        """SIGKILL the current primary (no shutdown save, no goodbye to the replica); returns its port."""
        port = self.primary_port()
        self.data[port].send_signal(signal.SIGKILL)
        self.data[port].wait()
        return port

    def client(self):  # -> redis.Redis on the current primary
        from gateway_plugins.policy.redis_client import connect_sync

        return connect_sync(self.url_with_credentials, socket_timeout=5)

    def stop(self) -> None:
        for proc in [*self.sentinels, *self.data.values()]:
            stop_process(proc)
        self.sentinels, self.data = [], {}
