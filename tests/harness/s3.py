"""A private versitygw (a real S3-compatible server with object lock, built by ``scripts/ensure-s3.sh``) over a POSIX
directory, on a free loopback port. ``stop()`` then ``start()`` is an outage that keeps every bucket and object."""

from __future__ import annotations

import os
import secrets
import ssl
import subprocess
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from tests.harness.procs import free_port, stop_process, wait_until

REPO_ROOT = Path(__file__).resolve().parents[2]
ENSURE = REPO_ROOT / "scripts" / "ensure-s3.sh"


def binary() -> Path:
    """The versitygw binary (built once, cached; the script's fast path costs nothing)."""
    proc = subprocess.run(["bash", str(ENSURE)], capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise RuntimeError(f"{ENSURE} failed with exit code {proc.returncode}:\n{proc.stderr[-4000:]}")
    return Path(proc.stdout.strip().splitlines()[-1]) / "versitygw"


def _answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=0.5, context=ssl._create_unverified_context())  # only: is it up?
    except urllib.error.HTTPError:
        return True  # an S3 error answer (403 without a signature): the server is up
    return True


class S3Server:
    def __init__(
        self, workdir: Path | None = None, region: str = "us-east-1", tls: tuple[Path, Path] | None = None
    ) -> None:
        self.binary = binary()
        self.dir = Path(workdir or tempfile.mkdtemp(prefix="kg-s3-"))
        self.root = self.dir / "data"
        self.port = free_port()
        self.region = region
        self.access_key = "kg" + secrets.token_hex(8)
        self.secret_key = secrets.token_urlsafe(24)
        self.log = self.dir / "versitygw.log"
        self.tls = tls  # (certificate chain, key) files: serve HTTPS
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def start(self) -> S3Server:
        self.root.mkdir(parents=True, exist_ok=True)
        (self.dir / "versions").mkdir(exist_ok=True)
        # Root credentials through the environment, not argv (ps would show them).
        env = {**os.environ, "ROOT_ACCESS_KEY_ID": self.access_key, "ROOT_SECRET_ACCESS_KEY": self.secret_key}
        # Versioned, as AWS requires for object lock: a locked object is a locked version.
        argv = [str(self.binary), "--port", f"127.0.0.1:{self.port}", "--region", self.region, "posix"]
        argv += ["--versioning-dir", str(self.dir / "versions"), str(self.root)]
        if self.tls:
            argv[1:1] = ["--cert", str(self.tls[0]), "--key", str(self.tls[1])]
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True
            )
        wait_until(lambda: _answers(self.url), timeout=20, what="versitygw", proc=self.proc, log=self.log)
        return self

    def stop(self) -> None:
        stop_process(self.proc)
        self.proc = None

    def client(self, ca_file: Path | None = None):  # botocore, root credentials, path-style (as the tests configure)
        import botocore.config
        import botocore.session

        return botocore.session.get_session().create_client(
            "s3",
            endpoint_url=self.url,
            region_name=self.region,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            config=botocore.config.Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
            verify=str(ca_file) if ca_file else None,
        )
