"""A real Kubernetes control plane (etcd + kube-apiserver [+ kube-controller-manager]) for tests.

envtest-style: the upstream binaries run as local processes on loopback ports, with no
kubelet and nothing faked. Authentication is a static admin token plus real
ServiceAccount tokens (TokenRequest), authorization is RBAC, so a test can run code
with exactly the permissions a ServiceAccount's Roles grant.

Binaries come from ``scripts/controlplane/build.sh`` (built from Go modules, cached).
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as dt
import ipaddress
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from kubernetes import client, config
from kubernetes.client.rest import ApiException

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO_ROOT / "scripts" / "controlplane" / "build.sh"

# Set to a directory holding the three binaries to skip build.sh (e.g. a prebuilt set).
BIN_DIR_ENV = "KUBEGATE_CONTROLPLANE_BIN"
# Set to 1 to keep the temp dir (certs, kubeconfigs, process logs) after stop() for debugging.
KEEP_ENV = "KUBEGATE_KEEP_CONTROLPLANE"

SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
# Only an allocation range for Service ClusterIPs; nothing ever routes to it (no kube-proxy).
SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/24"
KCM_CONTROLLERS = ("garbagecollector", "namespace", "serviceaccount", "serviceaccount-token")


class ControlPlaneError(RuntimeError):
    """The control plane could not be built, started or queried."""


def ensure_binaries() -> Path:
    """Build (first run only, cached) and return the directory holding the binaries."""
    override = os.environ.get(BIN_DIR_ENV)
    if override:
        return Path(override)
    proc = subprocess.run(
        ["bash", str(BUILD_SCRIPT)], capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL
    )
    if proc.returncode != 0:
        raise ControlPlaneError(f"{BUILD_SCRIPT} failed with exit code {proc.returncode}:\n{proc.stderr[-6000:]}")
    lines = proc.stdout.strip().splitlines()
    if not lines:
        raise ControlPlaneError(f"{BUILD_SCRIPT} printed no bin dir; stderr:\n{proc.stderr[-2000:]}")
    return Path(lines[-1])


def free_port() -> int:
    """A currently free loopback TCP port (the kernel picks it, so collisions are unlikely)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:
    # Runs in the child before exec: if the test runner is killed outright, the kernel
    # terminates the control plane too instead of leaving it to eat the machine's CPU.
    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"
    return "\n".join(text.splitlines()[-lines:])


def _write_private(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    path.chmod(0o600)
    return path


def _new_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _key_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )


class _Pki:
    """Self-signed CA, an apiserver serving cert for loopback, and the ServiceAccount signing key."""

    def __init__(self, directory: Path) -> None:
        now = dt.datetime.now(dt.UTC)
        not_before, not_after = now - dt.timedelta(hours=1), now + dt.timedelta(days=2)

        ca_key = _new_rsa_key()
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kubegate-test-ca")])
        ca_cert = (
            x509.CertificateBuilder()
            .subject_name(ca_name)
            .issuer_name(ca_name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(ca_key, hashes.SHA256())
        )

        serving_key = _new_rsa_key()
        serving_cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
            .issuer_name(ca_name)
            .public_key(serving_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.DNSName("localhost"),
                        x509.DNSName("kubernetes.default.svc"),
                        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    ]
                ),
                critical=False,
            )
            .sign(ca_key, hashes.SHA256())
        )

        self.ca_cert = directory / "ca.crt"
        self.ca_cert.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
        self.serving_cert = directory / "apiserver.crt"
        self.serving_cert.write_bytes(serving_cert.public_bytes(serialization.Encoding.PEM))
        self.serving_key = _write_private(directory / "apiserver.key", _key_pem(serving_key))
        # The apiserver derives the verification key from the private key file.
        self.service_account_key = _write_private(directory / "sa.key", _key_pem(_new_rsa_key()))


class _Process:
    """One control-plane process with its output in a log file."""

    def __init__(self, name: str, argv: Sequence[str], log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        self._log: IO[bytes] = log_path.open("ab")
        self.popen = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, grace: float = 10.0) -> None:
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=grace)
        self._log.close()

    def describe_failure(self) -> str:
        status = "running" if self.alive() else f"exited with code {self.popen.returncode}"
        return f"{self.name} ({status}); last lines of {self.log_path}:\n{_tail(self.log_path)}"


class ControlPlane:
    """etcd + kube-apiserver (+ optional kube-controller-manager) on loopback, RBAC on.

    Usage::

        cp = ControlPlane(ensure_binaries())
        cp.start()
        try:
            api = cp.admin_api_client()
            ...
        finally:
            cp.stop()
    """

    def __init__(
        self,
        bin_dir: Path | None = None,
        *,
        controller_manager: bool = True,
        startup_timeout: float = 120.0,
        extra_apiserver_args: Sequence[str] = (),
    ) -> None:
        self.bin_dir = Path(bin_dir) if bin_dir is not None else ensure_binaries()
        self.with_controller_manager = controller_manager
        self.startup_timeout = startup_timeout
        self.extra_apiserver_args = tuple(extra_apiserver_args)
        self.admin_token = secrets.token_urlsafe(32)
        self._workdir: Path | None = None
        self._processes: list[_Process] = []
        self._pki: _Pki | None = None
        self._kubeconfig_count = 0
        self.apiserver_port = 0
        self.etcd_port = 0

    # -- public API ------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.apiserver_port}"

    @property
    def workdir(self) -> Path:
        if self._workdir is None:
            raise ControlPlaneError("control plane not started")
        return self._workdir

    @property
    def ca_cert_path(self) -> Path:
        return self._require_pki().ca_cert

    @property
    def kubeconfig_path(self) -> Path:
        """Admin kubeconfig (user in system:masters)."""
        return self.workdir / "admin.kubeconfig"

    def start(self) -> None:
        if self._processes:
            raise ControlPlaneError("control plane already started")
        for name in ("etcd", "kube-apiserver") + (("kube-controller-manager",) if self.with_controller_manager else ()):
            if not (self.bin_dir / name).is_file():
                raise ControlPlaneError(f"{self.bin_dir / name} missing; run {BUILD_SCRIPT}")
        self._workdir = Path(tempfile.mkdtemp(prefix="kubegate-controlplane-"))
        try:
            self._pki = _Pki(self.workdir)
            self._start_etcd()
            self._start_apiserver()
            self._write_kubeconfig(self.kubeconfig_path, "admin", self.admin_token)
            if self.with_controller_manager:
                self._start_controller_manager()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop processes in reverse start order (SIGTERM, then SIGKILL) and drop the temp dir."""
        for proc in reversed(self._processes):
            proc.stop()
        self._processes.clear()
        if self._workdir is not None and os.environ.get(KEEP_ENV) != "1":
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def __enter__(self) -> ControlPlane:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def ssl_context(self) -> ssl.SSLContext:
        """Trusts the apiserver's self-signed CA (for httpx and other raw HTTPS clients)."""
        return ssl.create_default_context(cafile=str(self.ca_cert_path))

    def admin_api_client(self) -> client.ApiClient:
        return config.new_client_from_config(config_file=str(self.kubeconfig_path))

    def api_client_for_token(self, token: str) -> client.ApiClient:
        return config.new_client_from_config(config_file=str(self.kubeconfig_for_token(token)))

    def kubeconfig_for_token(self, token: str, user: str = "token-user") -> Path:
        """Write a kubeconfig that authenticates with ``token``; returns its path."""
        self._kubeconfig_count += 1
        path = self.workdir / f"token-{self._kubeconfig_count}.kubeconfig"
        self._write_kubeconfig(path, user, token)
        return path

    def token_for_service_account(
        self,
        namespace: str,
        name: str,
        *,
        expiration_seconds: int = 3600,
        audiences: Sequence[str] = (),
        create: bool = True,
    ) -> str:
        """A real bound token for the ServiceAccount via TokenRequest (created first if ``create``)."""
        with self.admin_api_client() as api_client:
            core = client.CoreV1Api(api_client)
            if create:
                body = client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=name))
                try:
                    core.create_namespaced_service_account(namespace, body)
                except ApiException as exc:
                    if exc.status != 409:
                        raise
            request = client.AuthenticationV1TokenRequest(
                spec=client.V1TokenRequestSpec(audiences=list(audiences), expiration_seconds=expiration_seconds)
            )
            response = core.create_namespaced_service_account_token(name, namespace, request)
        return str(response.status.token)

    def process_logs(self) -> dict[str, Path]:
        """Log file of each running process, for debugging a failing test."""
        return {proc.name: proc.log_path for proc in self._processes}

    # -- internals -------------------------------------------------------------------

    def _require_pki(self) -> _Pki:
        if self._pki is None:
            raise ControlPlaneError("control plane not started")
        return self._pki

    def _spawn(self, name: str, argv: Sequence[str]) -> _Process:
        proc = _Process(name, argv, self.workdir / f"{name}.log")
        self._processes.append(proc)
        return proc

    def _wait_until(self, what: str, proc: _Process, check: Callable[[], bool]) -> None:
        deadline = time.monotonic() + self.startup_timeout
        last_error = ""
        while time.monotonic() < deadline:
            if not proc.alive():
                raise ControlPlaneError(f"{what}: process died.\n{proc.describe_failure()}")
            try:
                if check():
                    return
            except (httpx.HTTPError, ApiException, OSError) as exc:
                last_error = f"{type(exc).__name__}: {exc}"
            time.sleep(0.25)
        raise ControlPlaneError(
            f"{what}: not ready after {self.startup_timeout:.0f}s (last error: {last_error or 'none'}).\n"
            f"{proc.describe_failure()}"
        )

    def _start_etcd(self) -> None:
        self.etcd_port, peer_port = free_port(), free_port()
        client_url, peer_url = f"http://127.0.0.1:{self.etcd_port}", f"http://127.0.0.1:{peer_port}"
        proc = self._spawn(
            "etcd",
            [
                str(self.bin_dir / "etcd"),
                "--name=default",
                f"--data-dir={self.workdir / 'etcd-data'}",
                f"--listen-client-urls={client_url}",
                f"--advertise-client-urls={client_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=default={peer_url}",
                # Throwaway data: skipping fsync makes every write much cheaper on a shared CI disk.
                "--unsafe-no-fsync=true",
                "--log-level=warn",
            ],
        )

        def healthy() -> bool:
            response = httpx.get(f"{client_url}/health", timeout=2.0)
            return response.status_code == 200 and response.json().get("health") == "true"

        self._wait_until("etcd", proc, healthy)

    def _start_apiserver(self) -> None:
        pki = self._require_pki()
        self.apiserver_port = free_port()
        tokens = self.workdir / "tokens.csv"
        _write_private(tokens, f'{self.admin_token},kubegate-admin,kubegate-admin,"system:masters"\n'.encode())
        proc = self._spawn(
            "kube-apiserver",
            [
                str(self.bin_dir / "kube-apiserver"),
                f"--etcd-servers=http://127.0.0.1:{self.etcd_port}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={self.apiserver_port}",
                f"--tls-cert-file={pki.serving_cert}",
                f"--tls-private-key-file={pki.serving_key}",
                f"--client-ca-file={pki.ca_cert}",
                f"--token-auth-file={tokens}",
                "--authorization-mode=RBAC",
                f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
                f"--service-account-key-file={pki.service_account_key}",
                f"--service-account-signing-key-file={pki.service_account_key}",
                f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
                # No kubelet: nothing mounts SA tokens into pods, and the plugin would reject pods
                # created before the serviceaccount controller made the namespace's "default" SA.
                "--disable-admission-plugins=ServiceAccount",
                # The "kubernetes" Service endpoints cannot hold a loopback IP; skip reconciling them.
                "--endpoint-reconciler-type=none",
                "--allow-privileged=true",
                "--profiling=false",
                *self.extra_apiserver_args,
            ],
        )

        def ready() -> bool:
            response = httpx.get(
                f"{self.url}/readyz",
                headers={"Authorization": f"Bearer {self.admin_token}"},
                verify=self.ssl_context(),
                timeout=5.0,
            )
            return response.status_code == 200

        self._wait_until("kube-apiserver /readyz", proc, ready)

    def _start_controller_manager(self) -> None:
        pki = self._require_pki()
        proc = self._spawn(
            "kube-controller-manager",
            [
                str(self.bin_dir / "kube-controller-manager"),
                f"--kubeconfig={self.kubeconfig_path}",
                f"--controllers={','.join(KCM_CONTROLLERS)}",
                f"--service-account-private-key-file={pki.service_account_key}",
                f"--root-ca-file={pki.ca_cert}",
                "--leader-elect=false",
                # Nothing scrapes it; not serving saves a port and the delegated-auth setup.
                "--secure-port=0",
            ],
        )

        def serviceaccount_controller_ran() -> bool:
            # The "default" ServiceAccount appears only once the controllers are syncing.
            with self.admin_api_client() as api_client:
                try:
                    client.CoreV1Api(api_client).read_namespaced_service_account("default", "default")
                except ApiException as exc:
                    if exc.status == 404:
                        return False
                    raise
            return True

        self._wait_until("kube-controller-manager", proc, serviceaccount_controller_ran)

    def _write_kubeconfig(self, path: Path, user: str, token: str) -> None:
        cluster = {"server": self.url, "certificate-authority": str(self._require_pki().ca_cert)}
        kubeconfig = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "kubegate-test", "cluster": cluster}],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [{"name": user, "context": {"cluster": "kubegate-test", "user": user}}],
            "current-context": user,
        }
        # JSON is valid YAML, so kubectl, helm and the Python client all read it.
        _write_private(path, json.dumps(kubeconfig, indent=2).encode())
