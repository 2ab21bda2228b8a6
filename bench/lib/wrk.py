"""One wrk run against a proxy: throughput, p50/p99 and the proxy's CPU per request (from /proc)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.lib.cpu import group_cpu_seconds


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True, stdout=subprocess.DEVNULL)
    return shutil.which("wrk") or sys.exit("wrk could not be installed")


def post_script(body: str, headers: dict[str, str]) -> Path:
    """A wrk Lua script that POSTs ``body`` (JSON, no single quotes) with ``headers``."""
    if "'" in body:
        raise ValueError("body: must not contain single quotes (it is embedded in a Lua string)")
    lines = ['wrk.method = "POST"', f"wrk.body = '{body}'", 'wrk.headers["Content-Type"] = "application/json"']
    lines += [f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items()]
    script = Path(tempfile.mkdtemp(prefix="kg-wrk-")) / "post.lua"
    script.write_text("\n".join(lines) + "\n")
    return script


def _ms(out: str, label: str) -> float:
    value, unit = re.search(rf"{label}\s+([\d.]+)(us|ms|s)", out).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def run(
    wrk: str,
    proxy: Any,
    script: Path,
    *,
    seconds: int,
    connections: int,
    warmup: int = 3,
    path: str = "/v1/chat/completions",
) -> dict[str, float]:
    """Warm up, then measure. ``proxy`` is a started ``tests.harness.proxy.ProxyServer`` (its own
    process group). Any non-2xx answer aborts: a refused request would flatter the numbers."""
    base = [wrk, "-t1", f"-c{connections}", "-s", str(script), "--latency", proxy.base_url + path]
    if warmup:
        subprocess.run([*base[:3], f"-d{warmup}s", *base[3:]], check=True, capture_output=True)
    cpu_before = group_cpu_seconds(proxy.proc.pid)
    out = subprocess.run([*base[:3], f"-d{seconds}s", *base[3:]], check=True, capture_output=True, text=True).stdout
    cpu = group_cpu_seconds(proxy.proc.pid) - cpu_before
    if "Non-2xx" in out:
        raise SystemExit(f"non-2xx answers during the run:\n{out}")
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50": _ms(out, "50%"),
        "p99": _ms(out, "99%"),
        "cpu_ms": 1000 * cpu / requests,
        "requests": requests,
    }
