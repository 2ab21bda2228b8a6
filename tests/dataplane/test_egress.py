"""The gateway makes no outbound connection except to its configured upstream and Redis.

The proxy runs with a test-only ``sitecustomize`` (``tests/harness/egress_sitecustomize``) that records
every host/port it resolves or connects to, through plain sockets (audit hook) and through uvloop
(which connects in libuv, invisible to audit hooks). Start-up, chat, streaming and a PII-masked
request (Presidio loaded) must touch only loopback: the echo upstream, Redis, the proxy itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from tests.harness.procs import free_port
from tests.harness.proxy import ProxyServer
from tests.harness.rendered import cr, echo_route, render_proxy

SITE = str(Path(__file__).resolve().parents[1] / "harness" / "egress_sitecustomize")
KEY = "sk-egress-plain-0123456789"
PII_KEY = "sk-egress-pii-0123456789"
LOOPBACK = {"127.0.0.1", "::1", "localhost"}


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def foreign(events: list[dict], allowed_ports: set[int]) -> list[dict]:
    """Events naming anything but an allowed loopback port (port-less lookups of loopback names pass)."""
    bad = []
    for e in events:
        host, port = e["host"], e["port"]
        if host in (None, "") and e["event"].endswith("getaddrinfo"):
            continue  # wildcard bind lookup, no remote host
        if host not in LOOPBACK or (port is not None and int(port) not in allowed_ports):
            bad.append(e)
    return bad


def _env(log: Path) -> dict[str, str]:
    path = os.pathsep.join(p for p in (SITE, os.environ.get("PYTHONPATH")) if p)
    return {"PYTHONPATH": path, "KG_EGRESS_LOG": str(log)}


def test_recorder_catches_connections_outside_the_allowed_set(tmp_path):
    # Control: the same recorder and checker flag a plain-socket connect to a foreign address, a uvloop
    # connect to a loopback port that is not allowed, and a name lookup.
    log = tmp_path / "egress.jsonl"
    closed = free_port()
    code = f"""
import asyncio, socket, uvloop
s = socket.socket(); s.setblocking(False)
try: s.connect(("192.0.2.1", 9))
except OSError: pass
s.close()
async def main():
    try: await asyncio.get_running_loop().create_connection(asyncio.Protocol, "127.0.0.1", {closed})
    except OSError: pass
uvloop.run(main())
try: socket.getaddrinfo("egress-probe.invalid", 443)
except OSError: pass
"""
    subprocess.run([sys.executable, "-c", code], env={**os.environ, **_env(log)}, check=True, timeout=60)
    bad = foreign(_read(log), allowed_ports={free_port()})
    seen = {(e["host"], e["port"]) for e in bad}
    assert ("192.0.2.1", 9) in seen
    assert ("127.0.0.1", closed) in seen
    assert ("egress-probe.invalid", 443) in seen


def test_proxy_connects_only_to_upstream_and_redis(tmp_path, echo_upstream, redis_server, openai_client):
    log = tmp_path / "egress.jsonl"
    rendered = render_proxy(
        [
            cr("LLMGateway", "egress", {}),
            echo_route("egress", "echo-model", echo_upstream.base_url),
            cr("Tenant", "plain", {"gateway": "egress", "allowedModels": ["echo-model"]}),
            cr("Tenant", "pii", {"gateway": "egress", "allowedModels": ["echo-model"], "pii": {}}),
        ],
        keys={"plain": KEY, "pii": PII_KEY},
    )
    proxy = ProxyServer(rendered.config, rendered.policy, redis_url=redis_server.url, env={**rendered.env, **_env(log)})
    try:
        proxy.start()
        plain, pii = openai_client(proxy, KEY), openai_client(proxy, PII_KEY)
        assert (
            plain.chat.completions.create(model="echo-model", messages=[{"role": "user", "content": "hello"}])
            .choices[0]
            .message.content
            == "hello"
        )
        chunks = plain.chat.completions.create(
            model="echo-model", messages=[{"role": "user", "content": "streamed"}], stream=True
        )
        assert "".join((c.choices[0].delta.content or "") for c in chunks if c.choices) == "streamed"
        masked = (
            pii.chat.completions.create(
                model="echo-model", messages=[{"role": "user", "content": "mail jane.roe@example.org"}]
            )
            .choices[0]
            .message.content
        )
        assert "jane.roe@example.org" not in masked  # Presidio really ran
        assert "kubegate_requests_total" in proxy.metrics()
        time.sleep(1.5)  # one policy poll and the audit flush after the last request
    except BaseException:
        print(proxy.logs())
        raise
    finally:
        proxy.stop()
    events = _read(log)
    targets = {(e["host"], e["port"]) for e in events}
    # The recorder saw the traffic that must happen, through uvloop: otherwise this test proves nothing.
    assert ("127.0.0.1", echo_upstream.port) in targets, sorted(map(str, targets))
    assert ("127.0.0.1", redis_server.port) in targets, sorted(map(str, targets))
    bad = foreign(events, allowed_ports={echo_upstream.port, redis_server.port, proxy.port})
    assert not bad, bad
