"""The proxy Deployment's pod spec, run for real: root filesystem read-only, only its emptyDirs writable.

There is no kubelet here, so this is what one would do with the container: a private mount namespace where ``/``
is remounted read-only and every emptyDir of the operator-built Deployment is a fresh tmpfs at its mountPath; the
proxy then runs with the container's env and args (config and policy from local files instead of the ConfigMaps,
Redis and the upstream on loopback). Several workers, so Prometheus multiprocess mode writes its files too. A
LiteLLM or kubegate change that writes anywhere else fails here instead of crash-looping pods. Mount namespaces
need root or CAP_SYS_ADMIN, as the CI machine has.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import yaml
from gateway_operator.builders.proxy import build_proxy_deployment
from gateway_operator.dev import load_objects, point_at_echo
from gateway_operator.render import render_gateway
from openai import OpenAI

from gateway_plugins.policy.schema import hash_key
from gateway_plugins.policy.store import sign_document
from tests.harness.procs import free_port, stop_process, tail, wait_until
from tests.harness.proxy import AUDIT_KEY_B64, SIGNER

ROOT = Path(__file__).resolve().parents[2]
KEY = "sk-kg-read-only-root-test-key-000001"
WORKERS = 2


def _under(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def _mount_script(writable: list[str], keep: dict[str, Path] | None = None) -> str:
    """Shell lines giving each path a fresh writable tmpfs, then making everything else read-only.

    ``keep`` maps paths that must stay visible (the checkout and its venv, e.g. under /tmp in a CI clone) to
    empty holder directories outside every writable path: they are bind-mounted back, read-only, over the tmpfs.
    """
    lines = ["set -eu", "mount --make-rprivate /"]
    writable_real = [os.path.realpath(p) for p in writable]
    kept = {
        os.path.realpath(path): holder
        for path, holder in (keep or {}).items()
        if any(_under(os.path.realpath(path), w) for w in writable_real)
    }
    lines += [f"mount --bind {shlex.quote(path)} {shlex.quote(str(holder))}" for path, holder in kept.items()]
    for path in writable:
        real = os.path.realpath(path)
        existing = real
        while not os.path.isdir(existing):
            existing = os.path.dirname(existing)
        assert existing != "/", f"{path}: cannot lay a scratch tmpfs over / (pass a stand-in path)"
        if existing != real:
            # The path does not exist in this filesystem (in the pod the kubelet creates it): make it on a scratch
            # tmpfs over its nearest existing parent, which is then made read-only again.
            lines += [f"mount -t tmpfs scratch {shlex.quote(existing)}", f"mkdir -p {shlex.quote(real)}"]
        lines.append(f"mount -t tmpfs -o mode=1777 emptydir {shlex.quote(real)}")
        if existing != real:
            lines.append(f"mount -o remount,ro {shlex.quote(existing)}")
    for path, holder in kept.items():
        q = shlex.quote(path)
        lines += [f"mkdir -p {q}", f"mount --bind {shlex.quote(str(holder))} {q}", f"mount -o remount,bind,ro {q}"]
    lines.append("mount -o remount,bind,ro /")
    return "\n".join(lines)


@pytest.fixture
def staging() -> Iterator[Path]:
    # Not under /tmp, which the namespace covers with its own tmpfs; readable by the proxy's UID.
    path = Path(tempfile.mkdtemp(prefix="kg-rofs-", dir="/var/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_proxy_serves_with_read_only_root_and_only_its_emptydirs_writable(
    staging, redis_server, echo_upstream, tmp_path
):
    objects = load_objects(ROOT / "examples" / "quickstart")
    (gateway,) = objects["LLMGateway"]
    gateway = gateway.model_copy(update={"spec": gateway.spec.model_copy(update={"workers": WORKERS})})
    tenant = next(t for t in objects["Tenant"] if t.spec.pii is not None and t.spec.pii.entities)
    rendered = render_gateway(
        gateway,
        objects["ModelRoute"],
        [tenant],
        [],
        tenant_key_hashes={tenant.metadata.name: [hash_key(KEY)]},
        revision=1,
    )
    body = gateway.model_dump(by_alias=True, mode="json")
    body["metadata"]["uid"] = "00000000-0000-4000-8000-000000000000"
    deployment = build_proxy_deployment(
        body, rendered.api_key_env, rendered.model_list_checksum, policy_public_key=SIGNER.public_key_b64
    )
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True

    empty_dirs = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
    writable = sorted(m["mountPath"] for m in container["volumeMounts"] if m["name"] in empty_dirs)
    assert "/tmp" in writable and len(writable) == 2, writable  # /tmp and the multiprocess metrics directory

    config = staging / "config.yaml"
    config.write_text(yaml.safe_dump(point_at_echo(rendered.litellm_config, echo_upstream.base_url)))
    policy = staging / "policy.json"
    policy.write_bytes(sign_document(rendered.policy, SIGNER))
    config.chmod(0o644)
    policy.chmod(0o644)

    port = free_port()
    args = list(container["args"])
    args[args.index("--config") + 1] = str(config)
    args[args.index("--port") + 1] = str(port)
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    assert env["KUBEGATE_METRICS_PORT"] == "9464"  # the Deployment's metrics port; a free one here
    metrics_port = free_port()
    env.update(
        KUBEGATE_POLICY_FILE=str(policy),
        KUBEGATE_REDIS_URL=redis_server.url,
        # Secret-sourced values as the kubelet would resolve them.
        KUBEGATE_AUDIT_KEY=AUDIT_KEY_B64,
        KUBEGATE_METRICS_PORT=str(metrics_port),
        KUBEGATE_METRICS_ADDR="127.0.0.1",
    )
    # The image's ENV, and a HOME that does not exist, as for the image's user (created with --no-create-home).
    env.update(
        PATH=f"{Path(shutil.which('litellm') or ROOT / '.venv/bin/litellm').parent}:/usr/bin:/bin",
        HOME="/home/kubegate",
        PYTHONDONTWRITEBYTECODE="1",
        PYTHONUNBUFFERED="1",
        PYTHONSAFEPATH="1",
    )
    litellm = str(ROOT / ".venv" / "bin" / "litellm")
    # As root in the namespace (the venv's interpreter lives under /root here): a read-only mount refuses root's
    # writes too (EROFS), so this is the stricter check.
    command = ["env", "-i", *(f"{k}={v}" for k, v in sorted(env.items())), litellm, *args, "--host", "127.0.0.1"]
    holder = staging / "checkout"
    holder.mkdir()
    script = _mount_script(writable, keep={str(ROOT): holder}) + "\nexec " + " ".join(shlex.quote(a) for a in command)
    log = tmp_path / "proxy.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["unshare", "--mount", "sh", "-c", script],
            cwd=staging,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: httpx.get(f"{base}/health/readiness", timeout=2).status_code == 200,
            timeout=240,
            what="proxy on a read-only root",
            proc=proc,
            log=log,
            interval=0.5,
        )
        model = next(m for m in tenant.spec.allowed_models if m != "*")
        entity = next(iter(tenant.spec.pii.entities))
        text = {"EMAIL_ADDRESS": "jane.doe@example.com", "PHONE_NUMBER": "+1 415 555 0100"}.get(entity, "x")
        sent = 24

        def call(i: int) -> None:  # a new connection each, concurrent, so both workers take some
            client = OpenAI(base_url=f"{base}/v1", api_key=KEY, max_retries=0)
            client.chat.completions.create(model=model, messages=[{"role": "user", "content": f"{text} #{i}"}])

        with ThreadPoolExecutor(6) as pool:
            list(pool.map(call, range(sent)))
        for _ in range(4):  # any worker may answer the scrape; each must see every worker's counts
            metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
            served = sum(
                float(line.rsplit(" ", 1)[1])
                for line in metrics.splitlines()
                if line.startswith("kubegate_requests_total{") and 'outcome="success"' in line
            )
            assert served == sent, metrics[-3000:]
            assert "kubegate_pii_entities_total{" in metrics
        output = log.read_text(errors="replace")
        for bad in ("Read-only file system", "Permission denied", "Traceback"):
            assert bad not in output, tail(log, 120)
        assert proc.poll() is None, tail(log)
    finally:
        stop_process(proc)
