"""``kubegate dev``: a local gateway from CR files, rendered by the operator's own renderer.

Starts (or reuses) a Redis, an echo upstream when no provider key is set, and the LiteLLM proxy
with kubegate's plugins; prints tenant keys and ready-to-paste snippets; Ctrl-C stops every
process it started.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml
from gateway_operator import devstate
from gateway_operator.crd import models as crd
from gateway_operator.render import render_gateway
from gateway_operator.render.plans import apply_plans
from pydantic import ValidationError

from gateway_plugins.policy import proxy_defaults
from gateway_plugins.policy.schema import hash_key
from gateway_plugins.policy.signing import PolicySigner
from gateway_plugins.policy.store import publish_policy_sync, sign_document

DEFAULT_DIR = Path("examples/quickstart")
STATE_DIR = Path(".kubegate")


class DevError(RuntimeError):
    """A problem the user can fix; printed without a traceback."""


def _line_of(node: yaml.Node, loc: tuple[str | int, ...]) -> int:
    """1-based line of the deepest YAML node along a pydantic error location (aliases are the YAML keys)."""
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            child = next((v for k, v in node.value if k.value == part), None)
            if child is None:
                break
            node = child
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        else:
            break
    return node.start_mark.line + 1


def _validation_message(path: Path, kind: str, node: yaml.Node, exc: ValidationError) -> str:
    lines = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        field = ".".join(str(p) for p in loc) or "(document)"
        lines.append(f"{path}:{_line_of(node, loc)}: invalid {kind}: {field}: {err['msg']}")
    return "\n".join(lines)


def load_objects(directory: Path) -> dict[str, list[crd._Resource]]:
    """Every kubegate object in the YAML files of ``directory``, by kind.

    Errors name the file and line (``file:line: ...``), never a traceback: this is user input.
    """
    found: dict[str, list[crd._Resource]] = {kind: [] for kind in crd.KINDS}
    if not directory.is_dir():
        raise DevError(f"{directory}: not a directory")
    files = sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")])
    if not files:
        raise DevError(f"no YAML files in {directory}")
    for path in files:
        try:
            # Nodes keep line numbers, so a validation error can point at the offending field.
            text = path.read_text()
            docs = list(zip(yaml.compose_all(text, Loader=yaml.SafeLoader), yaml.safe_load_all(text), strict=True))
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = f":{mark.line + 1}" if mark is not None else ""
            raise DevError(f"{path}{line}: invalid YAML: {exc.problem or exc.context}") from None
        except yaml.YAMLError as exc:
            raise DevError(f"{path}: invalid YAML: {exc}") from None
        for node, doc in docs:
            if not doc or not isinstance(doc, dict) or doc.get("apiVersion") != crd.API_VERSION:
                continue
            kind = doc.get("kind")
            if kind not in crd.KINDS:
                renamed = " (renamed LLMGateway in v1alpha1)" if kind == "Gateway" else ""
                raise DevError(f"{path}:{_line_of(node, ('kind',))}: unknown kind {kind!r}{renamed}")
            try:
                found[kind].append(crd.KINDS[kind].model_validate(doc))
            except ValidationError as exc:
                raise DevError(_validation_message(path, kind, node, exc)) from None
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


def load_or_create_secret(path: Path, *, url_safe: bool = False) -> str:
    """32 random bytes as base64 (``url_safe``: the URL-safe alphabet, for a password in a ``redis://`` URL),
    generated once and kept in ``path`` (created 0600, never readable by others)."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        secret = secrets.token_urlsafe(32) if url_safe else base64.b64encode(secrets.token_bytes(32)).decode()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secret)
    return path.read_text().strip()


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


def snippets(port: int, model: str, tenant: str, key: str, python: str = sys.executable) -> str:
    """A curl command and a Python heredoc that work pasted into a POSIX shell as printed.

    Nothing is indented (an indented heredoc body is an IndentationError in Python), and the Python is the one
    running kubegate, which has the ``openai`` SDK; a bare ``python`` may be missing or lack it.
    """
    base = f"http://127.0.0.1:{port}/v1"
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": f"Hello from {tenant}"}]})
    return f"""
curl -sS -w '\\n' {base}/chat/completions \\
  -H "Authorization: Bearer {key}" -H "Content-Type: application/json" \\
  -d {shlex.quote(body)}

{shlex.quote(python)} - <<'EOF'
from openai import OpenAI
client = OpenAI(base_url="{base}", api_key="{key}")
r = client.chat.completions.create(model="{model}", messages=[{{"role": "user", "content": "Hello"}}])
print(r.choices[0].message.content)
EOF
"""


def _port_free(port: int) -> bool:
    """Whether this process could listen on 127.0.0.1:``port`` (as uvicorn would, with SO_REUSEADDR)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _is_redis(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            answer = sock.recv(64)
    except OSError:
        return False
    return answer.startswith((b"+PONG", b"-NOAUTH"))


def _with_password(url: str, password: str | None) -> str:
    return url.replace("redis://", f"redis://:{password}@", 1) if password else url


def _reusable_password(port: int, password: str) -> str | None:
    """The password that opens the Redis already on ``port``: none, or this state directory's."""
    import redis

    for candidate in (None, password):
        client = redis.Redis(host="127.0.0.1", port=port, password=candidate, socket_timeout=5)
        try:
            client.ping()
            return candidate
        except redis.AuthenticationError:
            continue
        except redis.RedisError as exc:
            raise DevError(f"the Redis on 127.0.0.1:{port} (--redis-port) does not answer: {exc}") from None
        finally:
            client.close()
    raise DevError(
        f"the Redis on 127.0.0.1:{port} (--redis-port) needs a password this state directory does not hold: "
        "stop it, pass another --redis-port, or --redis-url redis://:PASSWORD@127.0.0.1:PORT/0"
    )


def _publish(url: str, password: str | None, policy, signer: PolicySigner) -> None:
    import redis

    client = redis.Redis.from_url(url, password=password, socket_timeout=10, socket_connect_timeout=5)
    try:
        published = publish_policy_sync(client, policy, signer)
    except redis.RedisError as exc:  # the URL is not repeated: it may hold a password
        raise DevError(f"cannot publish the policy to Redis: {type(exc).__name__}: {exc}") from None
    finally:
        client.close()
    if not published:
        raise DevError(
            f"Redis already holds a newer policy for gateway {policy.namespace}/{policy.gateway} "
            "(another `kubegate dev` on this Redis?): stop it, or pass another --redis-port"
        )


@dataclass
class DevOptions:
    dir: Path = DEFAULT_DIR
    gateway: str | None = None
    port: int = 4000
    echo_port: int = 4099
    redis_port: int = 6380
    redis_url: str | None = None
    state_dir: Path = STATE_DIR


def check_ports(opts: DevOptions, need_echo: bool) -> None:
    """Refuse before starting anything: a port already taken would otherwise look like a ready gateway."""
    wanted = {"--port": opts.port}
    if need_echo:
        wanted["--echo-port"] = opts.echo_port
    if not opts.redis_url:
        wanted["--redis-port"] = opts.redis_port
    seen: dict[int, str] = {}
    for flag, port in wanted.items():
        if not 0 < port < 65536:
            raise DevError(f"{flag} {port}: not a TCP port")
        if port in seen:
            raise DevError(f"{flag} and {seen[port]} are both {port}: each needs its own port")
        seen[port] = flag
    for flag, port in wanted.items():
        if _port_free(port):
            continue
        if flag == "--redis-port" and _is_redis(port):
            continue  # reused, as announced later
        what = "something that is not Redis" if flag == "--redis-port" else "another process"
        raise DevError(f"127.0.0.1:{port} ({flag}) is already in use by {what}; stop it or pass another {flag}")


def run(args: DevOptions) -> int:
    provider_key = os.environ.get("OPENAI_API_KEY")
    check_ports(args, need_echo=not provider_key)
    objects = load_objects(Path(args.dir))
    gateways = objects["LLMGateway"]
    if not gateways:
        raise DevError(f"no LLMGateway in {args.dir}")
    gateway = next((g for g in gateways if g.metadata.name == args.gateway), None) if args.gateway else gateways[0]
    if gateway is None:
        raise DevError(f"no LLMGateway named {args.gateway!r} in {args.dir}")
    state = Path(args.state_dir).expanduser().resolve()
    state.mkdir(parents=True, exist_ok=True)
    tenants = [t for t in objects["Tenant"] if t.spec.gateway == gateway.metadata.name]
    tenants, plan_budgets, plan_problems = apply_plans(tenants, objects["TenantPlan"])
    for name, problem in plan_problems.items():
        print(f"warning: {name} skipped: {problem.message}", file=sys.stderr)
    keys = load_or_create_keys(state / "dev-keys.json", [t.metadata.name for t in tenants])
    rendered = render_gateway(
        gateway,
        objects["ModelRoute"],
        tenants,
        [*objects["Budget"], *plan_budgets],
        tenant_key_hashes={t: [hash_key(k)] for t, k in keys.items()},
        revision=time.time_ns() // 1_000_000,  # ms: a restart within the second still publishes a newer one
    )
    for name, reason in rendered.skipped.items():
        print(f"warning: {name} skipped: {reason}", file=sys.stderr)

    procs = Processes()
    env = {**os.environ, **proxy_defaults.ENV}
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

        redis_url, redis_password = args.redis_url, None
        if not redis_url:
            # Password-protected like the managed Redis in a cluster: generated once per state directory (so a Redis
            # left running by an earlier run is reused), kept 0600, given to the proxy apart from the URL.
            redis_password = load_or_create_secret(state / "redis-password", url_safe=True)
            if not _port_open(args.redis_port):
                server = shutil.which("redis-server")
                if not server:
                    raise DevError("redis-server not found: run scripts/dev.sh, or apt-get install redis-server")
                data = state / "redis"
                data.mkdir(exist_ok=True)
                log = state / "redis.log"
                # The password in a 0600 config file, not on the command line where `ps` shows it to every user.
                conf = state / "redis.conf"
                fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "w") as out:
                    out.write(f"requirepass {redis_password}\n")
                cmd = [server, str(conf), "--port", str(args.redis_port), "--bind", "127.0.0.1"]
                cmd += ["--dir", str(data.resolve()), "--appendonly", "yes", "--save", ""]
                proc = procs.start("redis", cmd, log)
                _wait("redis-server", lambda: _port_open(args.redis_port), proc, log)
            else:
                redis_password = _reusable_password(args.redis_port, redis_password)
                print(f"reusing the Redis already listening on 127.0.0.1:{args.redis_port}")
                if redis_password is None:
                    print(f"warning: the Redis on 127.0.0.1:{args.redis_port} has no password", file=sys.stderr)
            redis_url = f"redis://127.0.0.1:{args.redis_port}/0"

        config_path = state / "litellm-config.yaml"
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        policy_path = state / "policy.json"
        # A fresh signing key per run, as the operator keeps one per Gateway: the proxy verifies what it loads.
        signer = PolicySigner.generate()
        policy_path.write_bytes(sign_document(rendered.policy, signer))
        # The same signed document in Redis, as the operator publishes it: what `kubegate usage` reads there.
        _publish(redis_url, redis_password, rendered.policy, signer)
        # The audit key outlives a run, like the local Redis's data: `kubegate audit verify` finds it.
        audit_key = state / "audit.key"
        env.update(
            KUBEGATE_GATEWAY=gateway.metadata.name,
            KUBEGATE_NAMESPACE=rendered.policy.namespace,
            KUBEGATE_AUDIT_KEY=load_or_create_secret(audit_key),
            KUBEGATE_POLICY_PUBLIC_KEY=signer.public_key_b64,
            KUBEGATE_POLICY_FILE=str(policy_path.resolve()),
            KUBEGATE_REDIS_URL=redis_url,
            # Metrics on their own port, as in a cluster; loopback only, like the API.
            KUBEGATE_METRICS_ADDR="127.0.0.1",
        )
        env.pop("KUBEGATE_REDIS_PASSWORD", None)
        if redis_password:
            env["KUBEGATE_REDIS_PASSWORD"] = redis_password
        proxy_log = state / "proxy.log"
        cmd = [sys.executable, "-m", "litellm.proxy.proxy_cli", "--config", str(config_path.resolve())]
        cmd += ["--host", "127.0.0.1", "--port", str(args.port)]
        proxy = procs.start("proxy", cmd, proxy_log, env=env)
        print(f"starting the LiteLLM proxy with kubegate on 127.0.0.1:{args.port} (log: {proxy_log}) ...")
        _wait("litellm proxy", lambda: _port_open(args.port), proxy, proxy_log, timeout=180)

        models = sorted({m.name for m in rendered.policy.models})
        print(f"\nkubegate dev: gateway {gateway.metadata.name!r} on http://127.0.0.1:{args.port}/v1")
        print(f"models: {', '.join(models)}; upstream: {upstream}\n")
        print(f"state directory (keys, logs, Redis data): {state}")
        # What `kubegate usage`, `report` and `audit verify` read when no --redis-url is given.
        state_file = devstate.write(
            devstate.DevState(
                pid=os.getpid(),
                gateway=gateway.metadata.name,
                namespace=rendered.policy.namespace,
                redis_url=_with_password(redis_url, redis_password),
                proxy_url=f"http://127.0.0.1:{args.port}/v1",
                audit_key_file=str(audit_key.resolve()),
                policy_file=str(policy_path.resolve()),
                policy_public_key=signer.public_key_b64,
                state_dir=str(state),
            )
        )
        print(
            f"`kubegate usage`, `kubegate report` and `kubegate audit verify` find this gateway with no flags "
            f"(Redis URL, password and audit key in {state_file})"
        )
        print(f"tenant keys (kept in {state / 'dev-keys.json'}):")
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
        devstate.remove(os.getpid())
        procs.stop()


def render(directory: Path, gateway: str | None = None) -> str:
    """``kubegate render``: the LiteLLM config and policy that the operator would ship, as YAML."""
    objects = load_objects(directory)
    gateways = [g for g in objects["LLMGateway"] if not gateway or g.metadata.name == gateway]
    if not gateways:
        raise DevError(f"no LLMGateway {gateway or ''} in {directory}".replace("  ", " "))
    # Placeholder hashes: rendering never needs, and must never print, a real key.
    hashes = {t.metadata.name: [hash_key(f"placeholder-{t.metadata.name}")] for t in objects["Tenant"]}
    tenants, plan_budgets, _ = apply_plans(objects["Tenant"], objects["TenantPlan"])
    rendered = render_gateway(
        gateways[0],
        objects["ModelRoute"],
        tenants,
        [*objects["Budget"], *plan_budgets],
        tenant_key_hashes=hashes,
        revision=0,
    )
    out = {
        "litellm_config": rendered.litellm_config,
        "policy": json.loads(rendered.policy.model_dump_json(by_alias=True)),
        "api_key_env": {k: v.model_dump() for k, v in rendered.api_key_env.items()},
        "model_list_checksum": rendered.model_list_checksum,
        "skipped": rendered.skipped,
    }
    return yaml.safe_dump(out, sort_keys=False)
