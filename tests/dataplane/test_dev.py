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
from gateway_operator.dev import DevError, load_objects

from tests.harness.procs import free_port

REPO = Path(__file__).resolve().parents[2]


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.3)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_kubegate_dev_serves_example_tenants_and_stops_cleanly(tmp_path):
    port, echo_port, redis_port = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "KUBEGATE_"))}
    cmd = [sys.executable, "-m", "gateway_operator.cli", "dev", "--port", str(port), "--echo-port", str(echo_port)]
    cmd += ["--redis-port", str(redis_port), "--state-dir", str(tmp_path), "--dir", str(REPO / "examples/quickstart")]
    out_path = tmp_path / "dev.out"
    with out_path.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 180
        while "ready." not in out_path.read_text():
            assert proc.poll() is None, out_path.read_text()
            assert time.monotonic() < deadline, out_path.read_text()
            time.sleep(0.5)
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
