"""``kubegate operator`` as the container runs it: the process IS kopf, and SIGTERM stops it cleanly.

In a pod the entry command is PID 1. A wrapper that waits on a kopf child ignores SIGTERM there (PID 1 has no
default signal actions) and kopf never hears of it, so every pod stop waited out the grace period. Here the
wrapper would instead die of SIGTERM (exit -15) and leave kopf running without its parent: the same bug, visible.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest
from gateway_operator import cli

from tests.harness.controlplane import free_port
from tests.helm.operator_process import OperatorProcess
from tests.operator.test_operator_e2e import operator_kubeconfig  # noqa: F401


def test_kubegate_operator_is_kopf_and_exits_0_on_sigterm(operator_kubeconfig, namespace, tmp_path):  # noqa: F811
    port = free_port()
    argv = [
        str(Path(sys.executable).parent / "kubegate"),
        "operator",
        "--standalone",
        f"--namespace={namespace}",
        f"--liveness=http://127.0.0.1:{port}/healthz",
    ]
    operator = OperatorProcess(argv, {}, Path(operator_kubeconfig), tmp_path / "operator.log").start()
    try:
        operator.wait_healthy(port)
        assert operator.session() == [operator.pid], "kubegate operator left a wrapper process waiting on kopf"
        cmdline = Path(f"/proc/{operator.pid}/cmdline").read_bytes().split(b"\0")
        assert cmdline[1:5] == [b"-m", b"kopf", b"run", b"-m"], cmdline

        os.kill(operator.pid, signal.SIGTERM)  # what the kubelet sends to PID 1 on pod stop
        # A generous bound on a graceful stop, not a timing assertion: kopf finishes in a second or two.
        assert operator.wait_exit(timeout=60) == 0, operator.tail()
        assert not operator.session(), "processes of the operator outlived it"
        assert "Traceback" not in operator.output(), operator.tail()
    finally:
        operator.stop()


def test_operator_command_keeps_kopf_args_and_a_safe_path(monkeypatch):
    calls = []

    def fake_execve(path, args, env):
        calls.append((path, args, env))
        raise SystemExit(0)  # execve never returns

    monkeypatch.delenv("PYTHONSAFEPATH", raising=False)
    monkeypatch.setattr(os, "execve", fake_execve)
    with pytest.raises(SystemExit):
        cli.main(["operator", "--standalone", "--all-namespaces"])
    ((path, args, env),) = calls
    assert path == sys.executable
    assert args == [
        sys.executable,
        "-m",
        "kopf",
        "run",
        "-m",
        "gateway_operator.handlers",
        "--standalone",
        "--all-namespaces",
    ]
    # From a checkout the cwd would put ./operator before the stdlib `operator` module.
    assert env["PYTHONSAFEPATH"] == "1"
    assert env["PATH"] == os.environ["PATH"]
