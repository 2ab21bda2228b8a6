"""Multiprocess metrics housekeeping: dead workers stop reporting live gauges."""

from __future__ import annotations

import os
import subprocess
import sys

from gateway_plugins import metrics


def test_dead_workers_live_gauge_files_are_reaped(tmp_path, monkeypatch):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    for pid in (gone.pid, os.getpid()):
        for kind in ("gauge_livesum", "gauge_livemax", "counter"):
            (tmp_path / f"{kind}_{pid}.db").write_bytes(b"")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))

    assert metrics.reap_dead_workers() == 1
    left = sorted(p.name for p in tmp_path.iterdir())
    # The dead worker's live gauges go; its counters stay (they are totals of the pod); ours are untouched.
    me = os.getpid()
    assert left == sorted(
        [f"counter_{gone.pid}.db", f"counter_{me}.db", f"gauge_livesum_{me}.db", f"gauge_livemax_{me}.db"]
    )
    assert metrics.reap_dead_workers() == 0


def test_reaping_without_multiprocess_mode_is_a_no_op(monkeypatch):
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    assert metrics.reap_dead_workers() == 0
