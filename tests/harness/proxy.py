"""A real LiteLLM proxy subprocess with kubegate's plugins, for end-to-end tests.

``ProxyServer(config, policy, redis_url=..., env=...)`` writes the LiteLLM config (our auth and
callback are added unless already set) and the policy file, starts
``python -m litellm.proxy.proxy_cli`` on a free port and waits for ``/health/liveliness``.

The policy file is signed with ``SIGNER`` (a fresh Ed25519 key per test run) and the proxy gets its public
key, so every data-plane test runs with policy verification on, as a cluster does.
"""

from __future__ import annotations

import base64
import copy
import os
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx
import yaml

from gateway_plugins.policy import proxy_defaults
from gateway_plugins.policy.schema import Policy
from gateway_plugins.policy.signing import PolicySigner
from gateway_plugins.policy.store import sign_document
from tests.harness.procs import free_port, stop_process, tail, wait_until

BASE_ENV = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "LITELLM_TELEMETRY": "False",
    "LITELLM_DONT_SHOW_FEEDBACK_BOX": "True",
    "NO_PROXY": "*",
}
# One key per test run: what the operator's per-Gateway signing key is in a cluster.
SIGNER = PolicySigner.generate()
# Likewise the Gateway's audit HMAC key (base64), as the operator's Secret holds it.
AUDIT_KEY_B64 = base64.b64encode(secrets.token_bytes(32)).decode()


def with_plugins(config: dict) -> dict:
    cfg = copy.deepcopy(config)
    general = cfg.setdefault("general_settings", {})
    general.setdefault("custom_auth", "gateway_plugins.auth.user_api_key_auth")
    settings = cfg.setdefault("litellm_settings", {})
    # LiteLLM's own /metrics serves the default prometheus registry (ours included) but wants a key.
    settings.setdefault("require_auth_for_metrics_endpoint", False)
    callbacks = settings.setdefault("callbacks", [])
    if "gateway_plugins.hooks.proxy_handler_instance" not in callbacks:
        callbacks.append("gateway_plugins.hooks.proxy_handler_instance")
    return cfg


class ProxyServer:
    def __init__(
        self,
        config: dict,
        policy: Policy | None,
        *,
        redis_url: str | None = None,
        env: dict[str, str] | None = None,
        plugins: bool = True,
        shipped_env: bool | None = None,
        workers: int = 1,
        signer: PolicySigner = SIGNER,
    ) -> None:
        self.port = free_port()
        # /metrics is served on a port of its own, never on the tenant port.
        self.metrics_port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="kg-proxy-"))
        self.log = self.dir / "proxy.log"
        self.config = with_plugins(config) if plugins else copy.deepcopy(config)
        self.policy = policy
        self.redis_url = redis_url
        self.extra_env = env or {}
        # A proxy with kubegate runs the environment kubegate ships (the Deployment's and `kubegate dev`'s), but
        # LiteLLM's own log level: tests read its logs.
        self.shipped_env = plugins if shipped_env is None else shipped_env
        self.workers = workers
        self.signer = signer
        self.policy_path = self.dir / "policy.json"
        self.proc: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120) -> ProxyServer:
        config_path = self.dir / "config.yaml"
        config_path.write_text(yaml.safe_dump(self.config))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KUBEGATE_", "OPENAI_"))}
        env.update(BASE_ENV)
        if self.shipped_env:
            env.update({k: v for k, v in proxy_defaults.ENV.items() if k != "LITELLM_LOG"})
        env["KUBEGATE_AUDIT_SPOOL_DIR"] = str(self.dir / "spool")
        env["KUBEGATE_POLICY_PUBLIC_KEY"] = self.signer.public_key_b64
        env["KUBEGATE_AUDIT_KEY"] = AUDIT_KEY_B64
        env["KUBEGATE_METRICS_PORT"] = str(self.metrics_port)
        env["KUBEGATE_METRICS_ADDR"] = "127.0.0.1"
        if self.policy is not None:
            self.write_policy(self.policy)
            env["KUBEGATE_POLICY_FILE"] = str(self.policy_path)
            env["KUBEGATE_GATEWAY"] = self.policy.gateway
            env["KUBEGATE_NAMESPACE"] = self.policy.namespace
        if self.redis_url:
            env["KUBEGATE_REDIS_URL"] = self.redis_url
        env.update(self.extra_env)
        cmd = [
            sys.executable,
            "-m",
            "litellm.proxy.proxy_cli",
            "--config",
            str(config_path),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--num_workers",
            str(self.workers),
        ]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=self.dir, start_new_session=True
            )
        url = f"{self.base_url}/health/liveliness"
        wait_until(
            lambda: httpx.get(url, timeout=2).status_code == 200,
            timeout=timeout,
            what="litellm proxy",
            proc=self.proc,
            log=self.log,
            interval=0.3,
        )
        return self

    def write_policy(self, policy: Policy) -> None:
        """Replace the policy file the way the kubelet updates a ConfigMap volume: write aside, rename over."""
        tmp = self.policy_path.with_suffix(".tmp")
        tmp.write_bytes(sign_document(policy, self.signer))
        tmp.replace(self.policy_path)

    def stop(self) -> None:
        stop_process(self.proc)
        self.proc = None

    def logs(self) -> str:
        return tail(self.log, 200)

    def metrics(self) -> str:
        """The exposition text served on the metrics port (all workers added up)."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        wait_until(lambda: httpx.get(url, timeout=2).status_code == 200, timeout=30, what="metrics port", interval=0.2)
        return httpx.get(url, timeout=10).text

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.get(self.base_url + path, timeout=10, **kwargs)
