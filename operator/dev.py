"""``kubegate dev``: a local gateway from CR files, rendered by the operator's own renderer.

Starts (or reuses) a Redis, an echo upstream when no provider key is set, and the LiteLLM proxy
with kubegate's plugins; prints tenant keys and ready-to-paste snippets; Ctrl-C stops every
process it started.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import yaml
from gateway_operator.crd import models as crd
from gateway_operator.render import render_gateway

from gateway_plugins import proxy_defaults
from gateway_plugins.policy.schema import hash_key

DEFAULT_DIR = Path("examples/quickstart")
STATE_DIR = Path(".kubegate")


class DevError(RuntimeError):
    """A problem the user can fix; printed without a traceback."""


def load_objects(directory: Path) -> dict[str, list[crd._Resource]]:
    """Every kubegate object in the YAML files of ``directory``, by kind."""
    found: dict[str, list[crd._Resource]] = {kind: [] for kind in crd.KINDS}
    files = sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")])
    if not files:
        raise DevError(f"no YAML files in {directory}")
    for path in files:
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc.get("apiVersion") != crd.API_VERSION:
                continue
            kind = doc.get("kind")
            if kind not in crd.KINDS:
                renamed = " (renamed LLMGateway in v1alpha1)" if kind == "Gateway" else ""
                raise DevError(f"{path}: unknown kind {kind!r}{renamed}")
            try:
                found[kind].append(crd.KINDS[kind].model_validate(doc))
            except ValueError as exc:
                raise DevError(f"{path}: invalid {kind}: {exc}") from None
    return found


def load_or_create_keys(path: Path, tenants: list[str]) -> dict[str, str]:
    """One key per tenant, generated once and kept in ``path`` (mode 0600)."""
    keys: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    changed = False
    for tenant in tenants:
        if tenant not in keys:
            keys[tenant] = "sk-kg-" + secrets.token_urlsafe(24)
            changed = True
    if changed or not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(keys, out, indent=2)
    return keys


def point_at_echo(config: dict, echo_base: str) -> dict:
    """Every deployment answered by the echo upstream (used when no provider key is set)."""
    for entry in config.get("model_list", []):
        params = entry["litellm_params"]
        params["api_base"] = echo_base
        params["model"] = "openai/" + params["model"].split("/", 1)[-1]
        params["api_key"] = "echo-needs-no-key"
    return config


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.3)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _wait(what: str, check, proc: subprocess.Popen | None, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if proc is not None and proc.poll() is not None:
            raise DevError(f"{what} exited with {proc.returncode}; log: {log}\n{log.read_text()[-3000:]}")
        time.sleep(0.3)
    raise DevError(f"{what} did not become ready in {timeout:.0f}s; log: {log}")


class Processes:
    """Children started by this command, stopped in reverse order."""

    def __init__(self) -> None:
        self.items: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, cmd: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
        with log.open("ab") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self.items.append((name, proc))
        return proc

    def stop(self) -> None:
        for _, proc in reversed(self.items):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for _, proc in reversed(self.items):
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def snippets(port: int, model: str, tenant: str, key: str) -> str:
    base = f"http://127.0.0.1:{port}/v1"
    return f"""
  curl {base}/chat/completions \\
    -H "Authorization: Bearer {key}" -H "Content-Type: application/json" \\
    -d '{{"model": "{model}", "messages": [{{"role": "user", "content": "Hello from {tenant}"}}]}}'

  python - <<'EOF'
  from openai import OpenAI
  client = OpenAI(base_url="{base}", api_key="{key}")
  r = client.chat.completions.create(model="{model}", messages=[{{"role": "user", "content": "Hello"}}])
  print(r.choices[0].message.content)
  EOF"""


def run(args: argparse.Namespace) -> int:
    objects = load_objects(Path(args.dir))
    gateways = objects["LLMGateway"]
    if not gateways:
        raise DevError(f"no LLMGateway in {args.dir}")
    gateway = next((g for g in gateways if g.metadata.name == args.gateway), None) if args.gateway else gateways[0]
    if gateway is None:
        raise DevError(f"no LLMGateway named {args.gateway!r} in {args.dir}")
    state = Path(args.state_dir)
    state.mkdir(parents=True, exist_ok=True)
    tenants = [t for t in objects["Tenant"] if t.spec.gateway == gateway.metadata.name]
    keys = load_or_create_keys(state / "dev-keys.json", [t.metadata.name for t in tenants])
    rendered = render_gateway(
        gateway,
        objects["ModelRoute"],
        tenants,
        objects["Budget"],
        tenant_key_hashes={t: [hash_key(k)] for t, k in keys.items()},
        revision=int(time.time()),
    )
    for name, reason in rendered.skipped.items():
        print(f"warning: {name} skipped: {reason}", file=sys.stderr)

    procs = Processes()
    env = {**os.environ, **proxy_defaults.ENV}
    provider_key = os.environ.get("OPENAI_API_KEY")
    config = rendered.litellm_config
    try:
        if provider_key:
            for var in rendered.api_key_env:
                env[var] = provider_key
            upstream = "the configured providers (OPENAI_API_KEY is set)"
        else:
            echo_port = args.echo_port
            echo_log = state / "echo.log"
            echo = procs.start(
                "echo",
                [sys.executable, "-m", "gateway_plugins.echo_upstream", "--port", str(echo_port)],
                echo_log,
                env=env,
            )
            _wait("echo upstream", lambda: _port_open(echo_port), echo, echo_log)
            config = point_at_echo(config, f"http://127.0.0.1:{echo_port}/v1")
            upstream = f"the built-in echo upstream on 127.0.0.1:{echo_port} (no OPENAI_API_KEY set)"

        redis_url = args.redis_url
        if not redis_url:
            redis_url = f"redis://127.0.0.1:{args.redis_port}/0"
            if not _port_open(args.redis_port):
                server = shutil.which("redis-server")
                if not server:
                    raise DevError("redis-server not found: run scripts/dev.sh, or apt-get install redis-server")
                data = state / "redis"
                data.mkdir(exist_ok=True)
                log = state / "redis.log"
                cmd = [server, "--port", str(args.redis_port), "--bind", "127.0.0.1", "--dir", str(data.resolve())]
                cmd += ["--appendonly", "yes", "--save", ""]
                proc = procs.start("redis", cmd, log)
                _wait("redis-server", lambda: _port_open(args.redis_port), proc, log)
            else:
                print(f"reusing the Redis already listening on 127.0.0.1:{args.redis_port}")

        config_path = state / "litellm-config.yaml"
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        policy_path = state / "policy.json"
        policy_path.write_text(rendered.policy.model_dump_json(by_alias=True))
        env.update(
            KUBEGATE_GATEWAY=gateway.metadata.name,
            KUBEGATE_POLICY_FILE=str(policy_path.resolve()),
            KUBEGATE_REDIS_URL=redis_url,
            # Metrics on their own port, as in a cluster; loopback only, like the API.
            KUBEGATE_METRICS_ADDR="127.0.0.1",
        )
        proxy_log = state / "proxy.log"
        cmd = [sys.executable, "-m", "litellm.proxy.proxy_cli", "--config", str(config_path.resolve())]
        cmd += ["--host", "127.0.0.1", "--port", str(args.port)]
        proxy = procs.start("proxy", cmd, proxy_log, env=env)
        print(f"starting the LiteLLM proxy with kubegate on 127.0.0.1:{args.port} (log: {proxy_log}) ...")
        _wait("litellm proxy", lambda: _port_open(args.port), proxy, proxy_log, timeout=180)

        models = sorted({m.name for m in rendered.policy.models})
        print(f"\nkubegate dev: gateway {gateway.metadata.name!r} on http://127.0.0.1:{args.port}/v1")
        print(f"models: {', '.join(models)}; upstream: {upstream}\n")
        print("tenant keys (kept in .kubegate/dev-keys.json):")
        for tenant in tenants:
            print(f"  {tenant.metadata.name}: {keys[tenant.metadata.name]}")
        first = tenants[0] if tenants else None
        if first is not None:
            allowed = [m for m in models if first.spec.allowed_models in (["*"],) or m in first.spec.allowed_models]
            print(
                snippets(
                    args.port, (allowed or models or ["gpt-4o"])[0], first.metadata.name, keys[first.metadata.name]
                )
            )
        print("\nready. Ctrl-C stops every process started here.", flush=True)

        stop = {"flag": False}

        def _stop(*_: object) -> None:
            stop["flag"] = True

        signal.signal(signal.SIGINT, _stop)
        signal.signal(signal.SIGTERM, _stop)
        while not stop["flag"]:
            for name, proc in procs.items:
                if proc.poll() is not None:
                    raise DevError(f"{name} exited with {proc.returncode}; see the logs in {state}")
            time.sleep(0.5)
        print("stopping ...")
        return 0
    finally:
        procs.stop()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="kubegate dev", description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default=str(DEFAULT_DIR), help="folder of CR YAML files (default: %(default)s)")
    parser.add_argument("--gateway", help="LLMGateway to run when the folder has several (default: the first)")
    parser.add_argument("--port", type=int, default=4000, help="proxy port on 127.0.0.1 (default: %(default)s)")
    parser.add_argument("--echo-port", type=int, default=4099, help="echo upstream port (default: %(default)s)")
    parser.add_argument("--redis-port", type=int, default=6380, help="local Redis port (default: %(default)s)")
    parser.add_argument("--redis-url", help="use this Redis instead of starting one")
    parser.add_argument("--state-dir", default=str(STATE_DIR), help="keys, logs and Redis data (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        return run(args)
    except DevError as exc:
        print(f"kubegate dev: {exc}", file=sys.stderr)
        return 1


def render_main(argv: list[str]) -> int:
    """``kubegate render``: the LiteLLM config and policy that the operator would ship, as YAML."""
    parser = argparse.ArgumentParser(prog="kubegate render", description=render_main.__doc__)
    parser.add_argument("--dir", default=str(DEFAULT_DIR), help="folder of CR YAML files (default: %(default)s)")
    parser.add_argument("--gateway", help="LLMGateway to render (default: the first)")
    args = parser.parse_args(argv)
    try:
        objects = load_objects(Path(args.dir))
        gateways = [g for g in objects["LLMGateway"] if not args.gateway or g.metadata.name == args.gateway]
        if not gateways:
            raise DevError(f"no LLMGateway {args.gateway or ''} in {args.dir}".replace("  ", " "))
        # Placeholder hashes: rendering never needs, and must never print, a real key.
        hashes = {t.metadata.name: [hash_key(f"placeholder-{t.metadata.name}")] for t in objects["Tenant"]}
        rendered = render_gateway(
            gateways[0],
            objects["ModelRoute"],
            objects["Tenant"],
            objects["Budget"],
            tenant_key_hashes=hashes,
            revision=0,
        )
    except DevError as exc:
        print(f"kubegate render: {exc}", file=sys.stderr)
        return 1
    out = {
        "litellm_config": rendered.litellm_config,
        "policy": json.loads(rendered.policy.model_dump_json(by_alias=True)),
        "api_key_env": {k: v.model_dump() for k, v in rendered.api_key_env.items()},
        "model_list_checksum": rendered.model_list_checksum,
        "skipped": rendered.skipped,
    }
    yaml.safe_dump(out, sys.stdout, sort_keys=False)
    return 0
