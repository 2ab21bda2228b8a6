"""Response cache: latency and proxy CPU of a cache hit against a miss and against a tenant without a cache, one run.

Not a test: prints throughput, p50/p99 and proxy CPU per request of each variant, and ratios.
Variants (one proxy, same echo upstream, same Redis, same fixed concurrency, same temperature-0 chat body):
  no-cache  a tenant without a cache: what every request costs without the feature
  miss      a tenant with a cache whose entries are never stored (maxEntryBytes below the answer's size): every
            request pays the lookup (one GET), goes upstream and has its answer copied, like any miss
  hit       a tenant with a cache holding the answer: served by the front door, no LiteLLM, no upstream

Variants run in interleaved rounds (medians), proxy CPU read from /proc, as in bench_limits.py.

Usage: .venv/bin/python bench/bench_cache.py [--seconds 5] [--connections 8] [--rounds 3]
Needs ``wrk`` (installed from Debian's packages when missing).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402

from bench.lib import rounds  # noqa: E402
from bench.lib import wrk as wrklib  # noqa: E402
from gateway_plugins.policy.schema import Policy, hash_key  # noqa: E402
from tests.harness.echo import EchoServer  # noqa: E402
from tests.harness.proxy import ProxyServer  # noqa: E402
from tests.harness.redis import RedisServer  # noqa: E402

KEYS = {t: f"sk-bench-{t}-0123456789abcdef" for t in ("no-cache", "miss", "hit")}
BODY = (
    '{"model":"bench-model","temperature":0,'
    '"messages":[{"role":"user","content":"Hello, how are you today? Tell me a story."}]}'
)


def config(echo: EchoServer) -> dict:
    dep = {"model": "openai/echo", "api_base": echo.base_url, "api_key": "k"}
    return {"model_list": [{"model_name": "bench-model", "litellm_params": dep, "model_info": {"id": "bench-1"}}]}


def policy() -> Policy:
    caches = {"no-cache": None, "miss": {"max_entry_bytes": 256}, "hit": {"ttl_seconds": 3600}}
    return Policy.model_validate(
        {
            "gateway": "bench-cache",
            "revision": 1,
            "tenants": [
                {"id": t, "keys": [{"sha256": hash_key(KEYS[t])}], "allowed_models": ["bench-model"], "cache": c}
                for t, c in caches.items()
            ],
            "models": [{"name": "bench-model"}],
            "deployments": [
                {
                    "id": "bench-1",
                    "model": "bench-model",
                    "region": "eu-west-1",
                    "input_cost_per_token": "0.000001",
                    "output_cost_per_token": "0.000002",
                }
            ],
        }
    )


def served_as(proxy: ProxyServer, tenant: str) -> str:
    r = httpx.post(
        proxy.base_url + "/v1/chat/completions",
        content=BODY,
        headers={"authorization": f"Bearer {KEYS[tenant]}", "content-type": "application/json"},
        timeout=30,
    )
    r.raise_for_status()
    return r.headers.get("x-kubegate-cache", "none")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    wrk = wrklib.ensure_wrk()
    redis = RedisServer().start()
    echo = EchoServer().start()
    proxy = ProxyServer(config(echo), policy(), redis_url=redis.url)
    shape = {"rounds": args.rounds, "seconds": args.seconds, "connections": args.connections}
    try:
        proxy.start()
        # Fill the hit tenant's entry, and prove each variant takes the path it is named after.
        served_as(proxy, "hit")
        for _ in range(100):
            if served_as(proxy, "hit") == "hit":
                break
        seen = {t: served_as(proxy, t) for t in KEYS}
        if seen != {"no-cache": "none", "miss": "miss", "hit": "hit"}:
            raise SystemExit(f"variants do not take their paths: {seen}")
        variants = {t: (proxy, wrklib.post_script(BODY, {"Authorization": f"Bearer {key}"})) for t, key in KEYS.items()}
        runs = rounds.measure(wrk, variants, **shape)
    finally:
        proxy.stop()
        echo.stop()
        redis.stop()

    med = rounds.medians(runs, **shape)
    print("\nhit against miss and against no cache:")
    rounds.compare(med, "hit", "miss")
    rounds.compare(med, "hit", "no-cache")
    print("cost of a miss (lookup + copy of the answer) against no cache:")
    rounds.compare(med, "miss", "no-cache")
    return 0


if __name__ == "__main__":
    sys.exit(main())
