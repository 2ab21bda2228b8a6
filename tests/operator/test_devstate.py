"""The `kubegate dev` state file: private, found only while its dev runs, removed only by the dev that wrote it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from gateway_operator import devstate


def _state(pid: int) -> devstate.DevState:
    return devstate.DevState(
        pid=pid,
        gateway="main",
        namespace="ai-gateway",
        redis_url="redis://:pw@127.0.0.1:6380/0",
        proxy_url="http://127.0.0.1:4000/v1",
        audit_key_file="/x/audit.key",
        policy_file="/x/policy.json",
        policy_public_key="pk",
        state_dir="/x",
    )


def test_written_private_under_xdg_state_home_and_read_back(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    path = devstate.write(_state(os.getpid()))
    assert path == tmp_path / "xdg" / "kubegate" / "dev.json" == devstate.state_path()
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert devstate.read() == _state(os.getpid())
    monkeypatch.delenv("XDG_STATE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert devstate.state_path() == tmp_path / ".local" / "state" / "kubegate" / "dev.json"


def test_a_dev_that_is_gone_is_not_found_and_only_its_writer_removes_the_file(tmp_path):
    path = tmp_path / "dev.json"
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    devstate.write(_state(int(gone.stdout)), path)
    with pytest.raises(
        devstate.DevStateError, match=r"is no longer running: start `kubegate dev`, or pass --redis-url"
    ):
        devstate.read(path)
    devstate.remove(os.getpid(), path)  # another dev's file: kept
    assert path.exists()
    devstate.remove(int(gone.stdout), path)
    assert not path.exists()
    with pytest.raises(devstate.DevStateError, match="does not exist"):
        devstate.read(path)
    path.write_text("{}")
    with pytest.raises(devstate.DevStateError, match="is not a `kubegate dev` state file"):
        devstate.read(path)
