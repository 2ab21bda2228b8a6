"""The ``kubegate`` CLI as a user meets it: the installed entry point in a subprocess, real Redis for audit export."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis

from tests.harness.procs import free_port

REPO = Path(__file__).resolve().parents[2]
KUBEGATE = str(Path(sys.executable).parent / "kubegate")


def run(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONSAFEPATH": "1", **(env or {})}
    return subprocess.run([KUBEGATE, *args], capture_output=True, text=True, env=full_env, cwd=cwd, timeout=120)


def test_version_matches_the_installed_package():
    from importlib import metadata

    res = run("--version")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == f"kubegate {metadata.version('kubegate')}"


def test_unknown_command_is_one_error_line_and_exit_2():
    res = run("deploy")
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == ["kubegate: error: No such command 'deploy'. (see 'kubegate --help')"]
    assert "Traceback" not in res.stderr


def test_unknown_option_names_the_subcommand():
    res = run("dev", "--bogus")
    assert res.returncode == 2
    assert res.stderr.strip() == "kubegate: error: No such option: --bogus (see 'kubegate dev --help')"


def test_shell_completion_completes_commands_and_subcommands():
    env = {"_KUBEGATE_COMPLETE": "complete_bash", "COMP_WORDS": "kubegate au", "COMP_CWORD": "1"}
    assert run(env=env).stdout.split() == ["audit"]
    env = {"_KUBEGATE_COMPLETE": "complete_bash", "COMP_WORDS": "kubegate audit ", "COMP_CWORD": "2"}
    assert set(run(env=env).stdout.split()) >= {"verify", "export"}
    script = run("--show-completion", env={"SHELL": "/bin/bash"})
    assert script.returncode == 0, script.stderr
    assert "_kubegate_completion" in script.stdout and "complete " in script.stdout


def _crs(tmp_path: Path, tenant_spec: str) -> Path:
    folder = tmp_path / "crs"
    folder.mkdir()
    (folder / "gateway.yaml").write_text(
        "apiVersion: kubegate.dev/v1alpha1\nkind: LLMGateway\nmetadata:\n  name: main\n"
    )
    (folder / "tenant.yaml").write_text(
        "# a comment first, so the line numbers are not trivially those of the document\n"
        "apiVersion: kubegate.dev/v1alpha1\nkind: Tenant\nmetadata:\n  name: t1\nspec:\n" + tenant_spec
    )
    return folder


def test_validation_error_names_file_and_line_of_the_field(tmp_path):
    folder = _crs(tmp_path, "  gateway: main\n  rateLimits:\n    rpm: -3\n")
    res = run("render", "--dir", str(folder))
    assert res.returncode == 1
    assert "Traceback" not in res.stderr
    line = res.stderr.strip()
    assert line.startswith(f"kubegate: error: {folder / 'tenant.yaml'}:9: invalid Tenant: spec.rateLimits.rpm:"), line


def test_unknown_field_and_yaml_syntax_errors_name_file_and_line(tmp_path):
    folder = _crs(tmp_path, "  gateway: main\n  allowedModelz: [gpt-4o]\n")
    res = run("render", "--dir", str(folder))
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert f"{folder / 'tenant.yaml'}:8: invalid Tenant: spec.allowedModelz:" in res.stderr

    (folder / "tenant.yaml").write_text("apiVersion: kubegate.dev/v1alpha1\nkind: Tenant\nspec: [1,\n  gateway: x\n")
    res = run("render", "--dir", str(folder))
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert res.stderr.startswith(f"kubegate: error: {folder / 'tenant.yaml'}:"), res.stderr
    assert "invalid YAML" in res.stderr


def test_render_of_the_examples_still_works():
    res = run("render", "--dir", str(REPO / "examples/quickstart"))
    assert res.returncode == 0, res.stderr
    assert "model_list" in res.stdout


def test_dev_refuses_a_taken_port_before_starting_anything(tmp_path):
    echo_port, redis_port = free_port(), free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        res = run(
            "dev",
            *("--port", str(port), "--echo-port", str(echo_port), "--redis-port", str(redis_port)),
            *("--state-dir", str(tmp_path / "state"), "--dir", str(REPO / "examples/quickstart")),
            env={"OPENAI_API_KEY": ""},
        )
    assert res.returncode == 1
    assert f"127.0.0.1:{port} (--port) is already in use" in res.stderr, res.stderr
    assert "ready" not in res.stdout and "Traceback" not in res.stderr
    assert not (tmp_path / "state").exists(), "something was started or written before the port check"
    for p in (echo_port, redis_port):
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", p)) != 0, f"port {p} was started"


def test_dev_refuses_a_redis_port_held_by_something_else(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        redis_port = taken.getsockname()[1]
        res = run(
            "dev",
            *("--port", str(free_port()), "--echo-port", str(free_port()), "--redis-port", str(redis_port)),
            *("--state-dir", str(tmp_path / "state"), "--dir", str(REPO / "examples/quickstart")),
            env={"OPENAI_API_KEY": ""},
        )
    assert res.returncode == 1
    assert f"127.0.0.1:{redis_port} (--redis-port) is already in use by something that is not Redis" in res.stderr


@pytest.fixture
def audit_stream(redis_server):
    client = redis.Redis.from_url(redis_server.url)
    stream = "kubegate:cli-test:audit"
    client.delete(stream)
    # Three records on three days; ids are the record times in ms, as the writer's XADD * gives them.
    days = [datetime(2026, 11, d, 12, 0, tzinfo=UTC) for d in (1, 2, 3)]
    for i, day in enumerate(days):
        ms = int(day.timestamp() * 1000)
        client.xadd(stream, {"r": json.dumps({"n": i, "time": day.timestamp()})}, id=f"{ms}-0")
    yield redis_server.url, stream
    client.delete(stream)
    client.close()


def test_audit_export_since_until_take_iso_times(audit_stream, tmp_path):
    url, stream = audit_stream
    out = tmp_path / "out.jsonl"
    res = run(
        *("audit", "export", "--redis-url", url, "--stream", stream, "--out", str(out)),
        *("--since", "2026-11-02", "--until", "2026-11-02T12:00:00Z"),
    )
    assert res.returncode == 0, res.stderr
    assert [json.loads(line)["n"] for line in out.read_text().splitlines()] == [1]
    # A zone offset is honoured: 13:00+01:00 is 12:00Z, so the 3 Nov record is included.
    res = run(
        "audit",
        "export",
        "--redis-url",
        url,
        "--stream",
        stream,
        "--out",
        str(out),
        "--since",
        "2026-11-03T13:00+01:00",
    )
    assert [json.loads(line)["n"] for line in out.read_text().splitlines()] == [2]


def test_audit_export_rejects_a_time_it_cannot_read(audit_stream):
    url, stream = audit_stream
    res = run("audit", "export", "--redis-url", url, "--stream", stream, "--since", "yesterday")
    assert res.returncode == 2
    assert "--since" in res.stderr and "'yesterday' is not an ISO time" in res.stderr
    assert "Traceback" not in res.stderr
