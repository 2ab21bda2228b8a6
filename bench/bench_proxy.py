"""Vanilla LiteLLM vs LiteLLM + kubegate, same echo upstream, same run, fixed concurrency.

Not a test: prints throughput and p50/p99 of each variant and the ratios against vanilla.
Variants:
  vanilla        LiteLLM with its defaults, no auth, no callbacks
  vanilla-fixed  vanilla plus only ``gateway_plugins.litellm_fixes`` (LiteLLM defects that cost every request)
  plugins        vanilla plus kubegate's auth and hooks, which apply those fixes (tenant with rate limit and
                 budget; no PII): its ratio to vanilla-fixed is the cost of the plugins themselves
  shipped        plugins plus the proxy settings kubegate ships (``gateway_plugins.proxy_defaults``)
  shipped-Nw     shipped with N uvicorn workers (default: one per core)

Besides wrk's throughput and latency it reads the CPU seconds of the proxy's process group from /proc, so
"requests per proxy CPU-second" stays meaningful on a machine that also runs wrk, the upstream and Redis.

Usage: .venv/bin/python bench/bench_proxy.py [--seconds 15] [--connections 8]
Needs ``wrk`` (installed from Debian's packages when missing).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.lib.cpu import group_cpu_seconds  # noqa: E402
from gateway_plugins import proxy_defaults  # noqa: E402
from gateway_plugins.policy.schema import (  # noqa: E402
    Budget,
    DeploymentMeta,
    KeyRef,
    ModelMeta,
    Policy,
    RateLimits,
    Tenant,
    hash_key,
)
from tests.harness.echo import EchoServer  # noqa: E402
from tests.harness.proxy import ProxyServer  # noqa: E402
from tests.harness.redis import RedisServer  # noqa: E402

# The vanilla-fixed variant's sitecustomize (gateway_plugins itself is installed in the venv; the repo root
# must never be on the path: its operator/ folder would shadow the standard library's operator module).
FIXED_ENV = {"PYTHONPATH": str(REPO / "bench" / "lib" / "vanilla_fixed")}
KEY = "sk-bench-tenant-0123456789abcdef"
BODY = '{"model":"bench-model","messages":[{"role":"user","content":"Hello, how are you today? Tell me a story."}]}'


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True, stdout=subprocess.DEVNULL)
    return shutil.which("wrk") or sys.exit("wrk could not be installed")


def config(echo: EchoServer) -> dict:
    return {
        "model_list": [
            {
                "model_name": "bench-model",
                "litellm_params": {"model": "openai/echo", "api_base": echo.base_url, "api_key": "k"},
                "model_info": {"id": "bench-eu"},
            }
        ]
    }


def policy() -> Policy:
    return Policy(
        gateway="bench",
        revision=1,
        tenants=[
            Tenant(
                id="bench",
                keys=[KeyRef(sha256=hash_key(KEY))],
                allowed_models=["bench-model"],
                rate_limits=RateLimits(rpm=10_000_000, tpm=10_000_000_000),
            )
        ],
        budgets=[Budget(name="bench", tenant="bench", limit_usd="1000000")],
        models=[ModelMeta(name="bench-model")],
        deployments=[DeploymentMeta(id="bench-eu", model="bench-model", region="eu-west-1")],
    )


def run_wrk(wrk: str, proxy: ProxyServer, seconds: int, connections: int, auth: bool) -> dict[str, float]:
    url = proxy.base_url
    script = Path(tempfile.mkdtemp()) / "post.lua"
    headers = 'wrk.headers["Content-Type"] = "application/json"\n'
    if auth:
        headers += f'wrk.headers["Authorization"] = "Bearer {KEY}"\n'
    script.write_text(f"wrk.method = \"POST\"\nwrk.body = '{BODY}'\n{headers}")
    base = [wrk, "-t1", f"-c{connections}", "-s", str(script), "--latency", url + "/v1/chat/completions"]
    subprocess.run([*base[:3], "-d3s", *base[3:]], check=True, capture_output=True)  # warm-up
    cpu_before = group_cpu_seconds(proxy.proc.pid)
    out = subprocess.run([*base[:3], f"-d{seconds}s", *base[3:]], check=True, capture_output=True, text=True).stdout
    cpu = group_cpu_seconds(proxy.proc.pid) - cpu_before
    if "Non-2xx" in out:
        raise SystemExit(f"non-2xx answers during the run:\n{out}")

    def ms(label: str) -> float:
        value, unit = re.search(rf"{label}\s+([\d.]+)(us|ms|s)", out).groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    requests = int(re.search(r"(\d+) requests in", out).group(1))
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50": ms("50%"),
        "p99": ms("99%"),
        "cpu_ms": 1000 * cpu / requests,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="workers of the shipped-Nw variant")
    args = parser.parse_args()
    wrk = ensure_wrk()
    redis = RedisServer().start()
    echo = EchoServer().start()
    shipped_config = proxy_defaults.apply_defaults(config(echo))
    variants = {
        "vanilla": (ProxyServer(config(echo), None, plugins=False), False),
        "vanilla-fixed": (ProxyServer(config(echo), None, plugins=False, env=FIXED_ENV), False),
        "plugins": (ProxyServer(config(echo), policy(), redis_url=redis.url), True),
        "shipped": (ProxyServer(shipped_config, policy(), redis_url=redis.url, env=proxy_defaults.ENV), True),
        f"shipped-{args.workers}w": (
            ProxyServer(shipped_config, policy(), redis_url=redis.url, env=proxy_defaults.ENV, workers=args.workers),
            True,
        ),
    }
    results: dict[str, dict[str, float]] = {}
    try:
        for name, (proxy, auth) in variants.items():
            proxy.start()
            try:
                results[name] = r = run_wrk(wrk, proxy, args.seconds, args.connections, auth)
            finally:
                proxy.stop()
            print(
                f"{name:11s} {r['rps']:8.1f} req/s  p50 {r['p50']:7.2f} ms  p99 {r['p99']:7.2f} ms  "
                f"proxy CPU {r['cpu_ms']:6.2f} ms/request",
                flush=True,
            )
    finally:
        echo.stop()
        redis.stop()
    print(
        f"\nconnections={args.connections} seconds={args.seconds}, same echo upstream, {os.cpu_count()} cores "
        "shared with wrk, the echo upstream and Redis"
    )

    def compare(name: str, base_name: str) -> None:
        r, base = results[name], results[base_name]
        print(
            f"{name} / {base_name}: throughput x{r['rps'] / base['rps']:.3f}, p50 {r['p50'] - base['p50']:+.2f} ms, "
            f"p99 {r['p99'] - base['p99']:+.2f} ms, requests per proxy CPU-second x{base['cpu_ms'] / r['cpu_ms']:.3f}"
        )

    print("cost of the plugins alone (both with kubegate's LiteLLM work-around):")
    compare("plugins", "vanilla-fixed")
    print("what a kubegate gateway serves per core against vanilla LiteLLM with its defaults:")
    for name in results:
        if name.startswith("shipped"):
            compare(name, "vanilla")
    return 0


if __name__ == "__main__":
    sys.exit(main())
