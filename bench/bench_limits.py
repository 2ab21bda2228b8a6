"""Cost of kubegate's budget, rate-limit and residency checks per request, against vanilla LiteLLM, one run.

Not a test: prints throughput, p50/p99 and proxy CPU per request of each variant, and ratios.
Variants (same echo upstream, same Redis, same fixed concurrency):
  vanilla        LiteLLM with its defaults, no auth, no callbacks
  vanilla-fixed  vanilla plus only ``gateway_plugins.litellm_fixes`` (the LiteLLM work-arounds the plugins
                 apply): the fair baseline for the plugins' own cost
  no-limits      LiteLLM + kubegate, a tenant with no budget, no rate limit, no region restriction
  limits         the same proxy, a tenant with a budget (block at 100 %), rpm, tpm and allowed_regions,
                 all set high enough never to refuse: one admit round trip (Lua) before the call, one
                 settle after it, the residency rewrite to the regional group, and the filter hook

``limits`` vs ``no-limits`` is the cost of the checks themselves. All proxies stay up for the whole run and
the variants are measured in interleaved rounds, so slow drifts of a shared machine spread over all of
them; each figure is the median over the rounds.

Usage: .venv/bin/python bench/bench_limits.py [--seconds 10] [--connections 8] [--rounds 3]
Needs ``wrk`` (installed from Debian's packages when missing).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.lib import rounds  # noqa: E402
from bench.lib import wrk as wrklib  # noqa: E402
from gateway_plugins.policy.keys import GatewayKeys  # noqa: E402
from gateway_plugins.policy.schema import Policy, hash_key  # noqa: E402
from tests.harness.echo import EchoServer  # noqa: E402
from tests.harness.proxy import ProxyServer  # noqa: E402
from tests.harness.redis import RedisServer  # noqa: E402

KEYS = {"no-limits": "sk-bench-nolimits-0123456789abcdef", "limits": "sk-bench-limits-0123456789abcdef"}
BODY = '{"model":"bench-model","messages":[{"role":"user","content":"Hello, how are you today? Tell me a story."}]}'
REGION = "eu-west-1"


def config(echo: EchoServer) -> dict:
    """The public group and its regional group, as the operator renders them (same upstream)."""

    def dep(group: str, dep_id: str) -> dict:
        return {
            "model_name": group,
            "litellm_params": {"model": "openai/echo", "api_base": echo.base_url, "api_key": "k"},
            "model_info": {"id": dep_id},
        }

    return {"model_list": [dep("bench-model", "bench-eu"), dep(f"bench-model@{REGION}", f"bench-eu@{REGION}")]}


def policy() -> Policy:
    tenant = {"allowed_models": ["bench-model"]}
    return Policy.model_validate(
        {
            "gateway": "bench",
            "revision": 1,
            "tenants": [
                {"id": "no-limits", "keys": [{"sha256": hash_key(KEYS["no-limits"])}], **tenant},
                {
                    "id": "limits",
                    "keys": [{"sha256": hash_key(KEYS["limits"])}],
                    "allowed_regions": [REGION],
                    "rate_limits": {"rpm": 10_000_000, "tpm": 10_000_000_000},
                    **tenant,
                },
            ],
            # A real price, so reservations and settles move real amounts.
            "budgets": [{"name": "bench", "tenant": "limits", "limit_usd": "1000000", "period": "monthly"}],
            "models": [{"name": "bench-model", "regional_groups": {REGION: f"bench-model@{REGION}"}}],
            "deployments": [
                {
                    "id": dep_id,
                    "model": "bench-model",
                    "region": REGION,
                    "input_cost_per_token": "0.000001",
                    "output_cost_per_token": "0.000002",
                }
                for dep_id in ("bench-eu", f"bench-eu@{REGION}")
            ],
        }
    )


def checks_ran(redis: RedisServer, requests: int) -> None:
    """Proof that the limits tenant really went through admit, settle and the residency rewrite."""
    r = redis.client()
    keys = r.keys(GatewayKeys("default", "bench").budget_pattern("limits", "bench"))
    spent = sum(int(r.hget(k, "spent") or 0) for k in keys) / 1_000_000
    if not spent:
        raise SystemExit("the limits tenant's budget shows no spend: admit/settle did not run")
    records = [json.loads(f[b"r"]) for _, f in r.xrevrange(GatewayKeys("default", "bench").audit_stream, count=500)]
    groups = {
        (rec.get("decisions") or {}).get("residency", {}).get("group") for rec in records if rec["tenant"] == "limits"
    }
    if groups != {f"bench-model@{REGION}"}:
        raise SystemExit(f"the limits tenant was not routed to its regional group only: {groups}")
    print(
        f"limits tenant: {spent:.4f} USD settled in Redis for {requests} measured requests (plus warm-ups), "
        f"routed to bench-model@{REGION}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    wrk = wrklib.ensure_wrk()
    redis = RedisServer().start()
    echo = EchoServer().start()
    plugins = ProxyServer(config(echo), policy(), redis_url=redis.url, shipped_env=False)
    proxies = {
        "vanilla": ProxyServer(config(echo), None, plugins=False),
        "vanilla-fixed": ProxyServer(config(echo), None, plugins=False, env=rounds.VANILLA_FIXED_ENV),
        "plugins": plugins,
    }
    scripts = {
        "vanilla": wrklib.post_script(BODY, {}),
        "vanilla-fixed": wrklib.post_script(BODY, {}),
        "no-limits": wrklib.post_script(BODY, {"Authorization": f"Bearer {KEYS['no-limits']}"}),
        "limits": wrklib.post_script(BODY, {"Authorization": f"Bearer {KEYS['limits']}"}),
    }
    target = {"vanilla": "vanilla", "vanilla-fixed": "vanilla-fixed", "no-limits": "plugins", "limits": "plugins"}
    variants = {name: (proxies[target[name]], script) for name, script in scripts.items()}
    shape = {"rounds": args.rounds, "seconds": args.seconds, "connections": args.connections}
    try:
        for proxy in proxies.values():
            proxy.start()
        runs = rounds.measure(wrk, variants, **shape)
        checks_ran(redis, sum(r["requests"] for r in runs["limits"]))
    finally:
        for proxy in proxies.values():
            proxy.stop()
        echo.stop()
        redis.stop()

    med = rounds.medians(runs, **shape)

    print("\nagainst vanilla LiteLLM (target: throughput >= x0.95, p50 <= +0.5 ms):")
    rounds.compare(med, "no-limits", "vanilla")
    rounds.compare(med, "limits", "vanilla")
    print("against vanilla-fixed (same LiteLLM work-arounds, so only the plugins' own cost):")
    rounds.compare(med, "no-limits", "vanilla-fixed")
    rounds.compare(med, "limits", "vanilla-fixed")
    print("cost of budget + rpm + tpm + residency checks alone:")
    rounds.compare(med, "limits", "no-limits")
    return 0


if __name__ == "__main__":
    sys.exit(main())
