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
    # Named, not detected: typer detects the shell from the process tree, which a CI runner may not have.
    script = run("--show-completion", "bash", env={"_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"})
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


def _commands(command, path: tuple[str, ...] = ()):
    """Every command of the CLI's click tree, groups included, as (path, click command)."""
    yield path, command
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        yield from _commands(sub, (*path, name))


def test_every_option_of_every_command_has_help_and_shows_in_help_output():
    import typer
    from gateway_operator.cli import app

    checked = 0
    for path, command in _commands(typer.main.get_command(app)):
        params = [p for p in command.params if p.name != "help"]
        if path == ("operator",):
            assert not params  # everything goes to `kopf run`, whose --help is kopf's
            continue
        # Options passed through unparsed are options --help cannot list (audit verify's --key-file was one);
        # a group's extra arguments are its subcommand's.
        if not hasattr(command, "commands"):
            settings = command.context_settings
            assert not settings.get("ignore_unknown_options") and not settings.get("allow_extra_args"), path
        res = run(*path, "--help", env={"COLUMNS": "250"})
        assert res.returncode == 0, (path, res.stderr)
        for param in params:
            where = f"kubegate {' '.join(path)} {param.name}"
            if param.param_type_name == "argument":  # audit prove's request id: listed with its help
                assert (getattr(param, "help", None) or "").strip() and param.name in res.stdout, where
                checked += 1
                continue
            assert param.param_type_name == "option", f"{where}: an argument, not an option with help"
            assert (param.help or "").strip(), f"{where}: no help text"
            assert not param.hidden, f"{where}: hidden from --help"
            for opt in (*param.opts, *param.secondary_opts):
                assert opt in res.stdout, f"{where}: {opt} not in `--help`:\n{res.stdout}"
            checked += 1
    assert checked > 30  # the tree was walked: dev, render, report, usage, audit verify/export, the root's


def test_audit_verify_lists_its_options():
    out = run("audit", "verify", "--help", env={"COLUMNS": "250"}).stdout
    for opt in ("--key-file", "--checkpoints", "--allow-empty", "--allow-trimmed", "--redis-url"):
        assert opt in out, opt


def _error_line(res: subprocess.CompletedProcess) -> str:
    assert res.returncode != 0
    assert "Traceback" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("kubegate: error: "), lines[0]
    return lines[0]


def test_audit_verify_without_a_key_says_which_key_and_how(redis_server):
    env = {"KUBEGATE_AUDIT_KEY": ""}
    line = _error_line(run("audit", "verify", "--redis-url", redis_server.url, "--gateway", "gw", env=env))
    assert "verify needs the audit key: pass --key-file FILE or set KUBEGATE_AUDIT_KEY" in line
    assert "get secret gw-kubegate-audit-key" in line
    assert redis_server.password not in line


def test_audit_verify_with_a_missing_key_file_names_it(redis_server, tmp_path):
    missing = tmp_path / "audit.key"
    line = _error_line(run("audit", "verify", "--redis-url", redis_server.url, "--key-file", str(missing)))
    assert f"--key-file {missing}: no such file" in line and "base64 -d >" in line
    missing.write_text("not base64 !!")
    line = _error_line(run("audit", "verify", "--redis-url", redis_server.url, "--key-file", str(missing)))
    assert f"--key-file {missing}: " in line


def test_audit_verify_with_unreadable_checkpoints_names_them(redis_server, tmp_path):
    import base64

    key = tmp_path / "audit.key"
    key.write_text(base64.b64encode(b"k" * 32).decode())
    base = ("audit", "verify", "--redis-url", redis_server.url, "--key-file", str(key), "--checkpoints")
    line = _error_line(run(*base, str(tmp_path / "nope.json")))
    assert f"--checkpoints {tmp_path / 'nope.json'}: no such file" in line and "audit-checkpoints" in line
    line = _error_line(run(*base, str(tmp_path)))  # a folder: cannot be read as a file
    assert f"--checkpoints {tmp_path}: Is a directory" in line
    (tmp_path / "bad.json").write_text("{not json")
    line = _error_line(run(*base, str(tmp_path / "bad.json")))
    assert f"--checkpoints {tmp_path / 'bad.json'}: not a checkpoints.json" in line


def test_commands_without_redis_url_and_no_dev_say_what_to_do(tmp_path):
    env = {"XDG_STATE_HOME": str(tmp_path), "HOME": str(tmp_path)}
    for args in (("usage",), ("report",), ("audit", "verify"), ("audit", "export")):
        line = _error_line(run(*args, env=env))
        assert "no running `kubegate dev`" in line and "pass --redis-url" in line, (args, line)


def test_audit_export_to_an_unwritable_file_is_one_line(audit_stream, tmp_path):
    url, stream = audit_stream
    line = _error_line(run("audit", "export", "--redis-url", url, "--stream", stream, "--out", str(tmp_path)))
    assert f"--out {tmp_path}: Is a directory" in line


def test_redis_that_is_down_is_one_line_without_the_password(tmp_path):
    import base64

    key = tmp_path / "audit.key"
    key.write_text(base64.b64encode(b"k" * 32).decode())
    url = f"redis://:s3cret-pw@127.0.0.1:{free_port()}/0"
    for args in (("usage",), ("report",), ("audit", "verify", "--key-file", str(key)), ("audit", "export")):
        res = run(*args, "--redis-url", url)
        assert "s3cret-pw" not in res.stderr + res.stdout, args
        line = _error_line(res)
        assert "Redis at --redis-url: ConnectionError" in line, (args, line)


def test_report_outputs_and_inputs_that_cannot_be_used_are_one_line(audit_stream, tmp_path):
    url, stream = audit_stream
    base = ("report", "--redis-url", url, "--stream", stream, "-q")
    missing = tmp_path / "no-such-dir"
    line = _error_line(run(*base, "--csv", str(missing / "r.csv")))
    assert f"--csv {missing / 'r.csv'}: No such file or directory" in line
    line = _error_line(run(*base, "--html", str(tmp_path)))
    assert f"--html {tmp_path}: Is a directory" in line
    line = _error_line(run("report", "--input", str(missing / "audit.jsonl")))
    assert f"--input {missing / 'audit.jsonl'}: No such file or directory" in line
    line = _error_line(run(*base, "--input", str(missing)))
    assert "not both" in line
