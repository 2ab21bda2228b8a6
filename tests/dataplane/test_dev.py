"""`kubegate dev` end to end: example CRs -> Redis + echo upstream + proxy; Ctrl-C stops them all."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest
import redis
from gateway_operator.dev import DevError, load_objects

from tests.dataplane.test_report_e2e import usage_rows
from tests.harness.procs import free_port

REPO = Path(__file__).resolve().parents[2]
KUBEGATE = str(Path(sys.executable).parent / "kubegate")


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.3)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _env(home: Path) -> dict[str, str]:
    """No provider or kubegate settings from the caller; HOME and the XDG state folder (dev's state file) in ``home``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "KUBEGATE_", "XDG_"))}
    return {**env, "HOME": str(home), "XDG_STATE_HOME": str(home / "xdg-state"), "PYTHONSAFEPATH": "1"}


def _start_dev(tmp_path: Path, env: dict[str, str], *ports: int) -> tuple[subprocess.Popen, Path]:
    port, echo_port, redis_port = ports
    cmd = [sys.executable, "-m", "gateway_operator.cli", "dev", "--port", str(port), "--echo-port", str(echo_port)]
    cmd += ["--redis-port", str(redis_port), "--state-dir", str(tmp_path), "--dir", str(REPO / "examples/quickstart")]
    out_path = tmp_path / "dev.out"
    with out_path.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=tmp_path)
    deadline = time.monotonic() + 180
    while "ready." not in out_path.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=30)
            raise AssertionError(out_path.read_text())
        time.sleep(0.5)
    return proc, out_path


def test_kubegate_dev_serves_example_tenants_and_stops_cleanly(tmp_path):
    port, echo_port, redis_port = free_port(), free_port(), free_port()
    env = _env(tmp_path)
    proc, out_path = _start_dev(tmp_path, env, port, echo_port, redis_port)
    try:
        printed = out_path.read_text()
        keys = json.loads((tmp_path / "dev-keys.json").read_text())
        assert oct((tmp_path / "dev-keys.json").stat().st_mode & 0o777) == "0o600"
        assert keys["team-eu"] in printed and f"127.0.0.1:{port}/v1" in printed
        assert f"state directory (keys, logs, Redis data): {tmp_path.resolve()}" in printed
        assert f"tenant keys (kept in {tmp_path.resolve() / 'dev-keys.json'})" in printed

        # The snippets as a user pastes them: everything from the curl line to the heredoc's end, run by a shell
        # from another directory. Both reach the proxy as team-eu and get the echo upstream's answer.
        snippet = re.search(r"^curl .*?^EOF$", printed, re.S | re.M)
        assert snippet, printed
        pasted = subprocess.run(
            ["bash", "-e", "-c", snippet.group(0)], capture_output=True, text=True, cwd="/", timeout=120, env=env
        )
        assert pasted.returncode == 0, pasted.stderr
        curl_answer, python_answer = pasted.stdout.split("\n", 1)
        assert json.loads(curl_answer)["choices"][0]["message"]["content"] == "Hello from team-eu"
        assert python_answer.strip() == "Hello"

        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=keys["team-eu"], max_retries=0)
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o", messages=[{"role": "user", "content": "write to jane.doe@example.com"}]
        )
        # team-eu is restricted to eu-west-1 and has PII masked on the way out, restored on the way back.
        assert raw.headers["x-kubegate-region"] == "eu-west-1"
        assert raw.parse().choices[0].message.content == "write to jane.doe@example.com"
        received = httpx.get(f"http://127.0.0.1:{echo_port}/_received").json()
        assert "jane.doe@example.com" not in json.dumps(received)
        assert "<EMAIL_ADDRESS_1>" in json.dumps(received)

        with_wrong_key = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-nope", max_retries=0)
        try:
            with_wrong_key.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
            raise AssertionError("an unknown key was accepted")
        except openai.AuthenticationError:
            pass
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    assert proc.returncode == 0, out_path.read_text()
    for p in (port, echo_port, redis_port):
        assert not _listening(p), f"port {p} still served after Ctrl-C"


def test_kubegate_dev_reads_the_examples_by_kind_and_names_the_renamed_kind(tmp_path):
    objects = load_objects(REPO / "examples" / "quickstart")
    assert [g.metadata.name for g in objects["LLMGateway"]] == ["main"]
    old = (REPO / "examples" / "quickstart" / "gateway.yaml").read_text().replace("kind: LLMGateway", "kind: Gateway")
    (tmp_path / "gateway.yaml").write_text(old)
    with pytest.raises(DevError, match=re.escape("unknown kind 'Gateway' (renamed LLMGateway")):
        load_objects(tmp_path)


def kubegate(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([KUBEGATE, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=300)


def test_usage_report_and_audit_verify_find_the_running_dev_gateway_with_no_flags(tmp_path):
    port, echo_port, redis_port = free_port(), free_port(), free_port()
    env = _env(tmp_path)
    state_file = tmp_path / "xdg-state" / "kubegate" / "dev.json"
    proc, out_path = _start_dev(tmp_path, env, port, echo_port, redis_port)
    elsewhere = tmp_path / "elsewhere"  # not the folder dev ran in: nothing is found by cwd
    elsewhere.mkdir()
    try:
        keys = json.loads((tmp_path / "dev-keys.json").read_text())
        text = "please summarise the quarterly planning notes for the platform team in a few short lines " * 3
        for tenant, model in (("team-eu", "gpt-4o"), ("team-eu", "gpt-4o-mini"), ("team-us", "gpt-4o")):
            client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=keys[tenant], max_retries=0)
            client.chat.completions.create(model=model, messages=[{"role": "user", "content": text}])

        # The state file: private, and the Redis password it holds is needed (dev's Redis refuses anyone without it).
        assert oct(state_file.stat().st_mode & 0o777) == "0o600"
        state = json.loads(state_file.read_text())
        assert (state["namespace"], state["gateway"]) == ("ai-gateway", "main")
        password = redis.Redis.from_url(state["redis_url"]).connection_pool.connection_kwargs["password"]
        assert password and password not in out_path.read_text()
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(host="127.0.0.1", port=redis_port).ping()

        terminal = {**env, "COLUMNS": "80"}  # an 80-column terminal
        usage = kubegate("usage", env=terminal, cwd=elsewhere)
        assert usage.returncode == 0, usage.stderr
        assert "ai-gateway/main" in usage.stdout
        rows = usage_rows(usage.stdout)
        eu_spent = float(rows["team-eu"]["spent"])
        assert eu_spent > 0 and rows["team-eu"]["budget"] == "team-eu-monthly" and rows["team-eu"]["state"] == "ok"
        assert float(rows["team-eu"]["left"]) == pytest.approx(100 - eu_spent, abs=1e-4)
        assert rows["team-us"]["state"] == "no budget"

        report = kubegate("report", env=terminal, cwd=elsewhere)
        assert report.returncode == 0, report.stderr
        assert "integrity: OK: 3 records" in report.stdout, report.stdout
        today = time.strftime("%Y-%m-%d", time.gmtime())
        days = [line.split()[0] for line in report.stdout.splitlines() if "team-" in line and "gpt-4o" in line]
        assert days and set(days) == {today}, report.stdout  # the day in full, never `2026-12-…`
        eu_cost = sum(
            float(line.split()[-1]) for line in report.stdout.splitlines() if line.split()[1:2] == ["team-eu"]
        )
        assert eu_cost == pytest.approx(eu_spent, abs=1e-4)  # the report and usage agree on the tenant's spend
        for out in (usage.stdout, report.stdout):
            assert "…" not in out, out
            assert max(len(line) for line in out.splitlines()) <= 80, out

        verify = kubegate("audit", "verify", env=env, cwd=elsewhere)
        assert verify.returncode == 0, verify.stderr
        assert verify.stdout.startswith("OK: 3 records"), verify.stdout

        # Explicit flags still win over the dev state.
        other = kubegate("usage", "--gateway", "other", env=env, cwd=elsewhere)
        assert other.returncode == 1 and "no policy for gateway ai-gateway/other" in other.stderr
        for out in (usage, report, verify, other):
            assert password not in out.stdout + out.stderr
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    assert proc.returncode == 0, out_path.read_text()
    assert not state_file.exists(), "the state file outlived the dev gateway"
    gone = kubegate("usage", env=env, cwd=elsewhere)
    assert gone.returncode == 1 and "no running `kubegate dev`" in gone.stderr, gone.stderr
