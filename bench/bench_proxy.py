"""Vanilla LiteLLM vs LiteLLM + kubegate, same echo upstream, same run, fixed concurrency.

Not a test: prints throughput and p50/p99 of each variant and the ratios against vanilla.
Variants:
  router         the floor: LiteLLM's Router called from a minimal ASGI app (``bench/lib/router_floor.py``), with the
                 environment kubegate ships (``proxy_defaults.ENV``)
  vanilla        LiteLLM with its defaults, no auth, no callbacks
  vanilla-fixed  vanilla plus only ``gateway_plugins.litellm_fixes`` (LiteLLM defects that cost every request)
  plugins        vanilla plus kubegate's auth and hooks, which apply those fixes (tenant with rate limit,
                 budget and residency; no PII): its ratio to vanilla-fixed is the cost of the plugins themselves
  shipped        plugins plus the proxy settings kubegate ships (``gateway_plugins.policy.proxy_defaults``)
  fast           shipped with the front door's fast path on (``KUBEGATE_FAST_PATH=1``, ``gateway_plugins.fast_path``:
                 kubegate's hooks and the proxy's Router called directly, LiteLLM's route handlers skipped)
  fast-pii       fast, with the tenant's PII masking on (Presidio and kubegate's finders over every prompt; the
                 bench prompt has no PII, so this is the cost of looking)
  fast-sdk       fast, with OpenAI-compatible calls through the OpenAI SDK client as LiteLLM does by default
                 (``EXPERIMENTAL_OPENAI_BASE_LLM_HTTP_HANDLER=false``; kubegate ships LiteLLM's own HTTP handler)
  handlers       shipped with the fast path off (``KUBEGATE_FAST_PATH=0``): every request through LiteLLM's handlers
  shipped-Nw     shipped with N uvicorn workers (``--workers``, default 2 and one per core): requests per proxy
                 CPU-second at 1 (``shipped``), 2 and N workers
  traced         shipped plus OpenTelemetry tracing of every request (``gateway_plugins.tracing``, sample ratio 1)
                 to an OTLP/HTTP sink in another process: its ratio to shipped is the cost of tracing

Besides wrk's throughput and latency it reads the CPU seconds of the proxy's process group from /proc, so
"requests per proxy CPU-second" stays meaningful on a machine that also runs wrk, the upstream and Redis.

Routes (``--route``): ``chat`` (``/v1/chat/completions``), ``responses`` (``/v1/responses``), ``messages``
(Anthropic's ``/v1/messages``) and ``embeddings`` (``/v1/embeddings``), the same short prompt on each; ``--variants``
runs a subset.

Usage: .venv/bin/python bench/bench_proxy.py [--seconds 10] [--connections 8] [--rounds 3]
       [--route chat|responses|messages|embeddings] [--variants vanilla-fixed,plugins] [--workers 2,4]
All proxies stay up; the variants run in interleaved rounds and each figure is the median over the rounds.
Needs ``wrk`` (installed from Debian's packages when missing).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.lib import rounds  # noqa: E402
from bench.lib import wrk as wrklib  # noqa: E402
from bench.lib.otlp_sink import OtlpSink  # noqa: E402
from bench.lib.router_floor import RouterFloor  # noqa: E402
from gateway_plugins.policy import proxy_defaults  # noqa: E402
from gateway_plugins.policy.schema import (  # noqa: E402
    Budget,
    DeploymentMeta,
    KeyRef,
    ModelMeta,
    PiiPolicy,
    Policy,
    RateLimits,
    Tenant,
    hash_key,
)
from tests.harness.echo import EchoServer  # noqa: E402
from tests.harness.procs import free_port  # noqa: E402
from tests.harness.proxy import ProxyServer  # noqa: E402
from tests.harness.redis import RedisServer  # noqa: E402

KEY = "sk-bench-tenant-0123456789abcdef"
PROMPT = "Hello, how are you today? Tell me a story."
MESSAGES = [{"role": "user", "content": PROMPT}]
BODY = json.dumps({"model": "bench-model", "messages": MESSAGES}, separators=(",", ":"))
ROUTES = {
    "chat": ("/v1/chat/completions", BODY),
    "responses": ("/v1/responses", json.dumps({"model": "bench-model", "input": PROMPT}, separators=(",", ":"))),
    "messages": (
        "/v1/messages",
        json.dumps({"model": "bench-model", "max_tokens": 256, "messages": MESSAGES}, separators=(",", ":")),
    ),
    "embeddings": ("/v1/embeddings", json.dumps({"model": "bench-model", "input": PROMPT}, separators=(",", ":"))),
}


def config(echo: EchoServer) -> dict:
    """The model, and its regional group as the operator renders it (residency routes to ``model@region``)."""
    params = {"model": "openai/echo", "api_base": echo.base_url, "api_key": "k"}
    return {
        "model_list": [
            {"model_name": "bench-model", "litellm_params": params, "model_info": {"id": "bench-eu"}},
            {
                "model_name": "bench-model@eu-west-1",
                "litellm_params": dict(params),
                "model_info": {"id": "bench-eu@eu-west-1"},
            },
        ]
    }


def policy(pii: bool = False) -> Policy:
    """The bench tenant with every guarantee on: rate limits, a budget, residency; with ``pii``, PII masking of
    the default entities as well."""
    return Policy(
        gateway="bench",
        revision=1,
        tenants=[
            Tenant(
                id="bench",
                keys=[KeyRef(sha256=hash_key(KEY))],
                allowed_models=["bench-model"],
                allowed_regions=["eu-west-1"],
                rate_limits=RateLimits(rpm=10_000_000, tpm=10_000_000_000),
                pii=PiiPolicy() if pii else None,
            )
        ],
        budgets=[Budget(name="bench", tenant="bench", limit_usd="1000000")],
        models=[ModelMeta(name="bench-model", regional_groups={"eu-west-1": "bench-model@eu-west-1"})],
        deployments=[
            DeploymentMeta(id="bench-eu", model="bench-model", region="eu-west-1"),
            DeploymentMeta(id="bench-eu@eu-west-1", model="bench-model", region="eu-west-1"),
        ],
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--workers",
        default=f"2,{os.cpu_count() or 1}",
        help="comma-separated worker counts of the shipped-Nw variants (shipped itself runs one)",
    )
    parser.add_argument("--route", choices=sorted(ROUTES), default="chat")
    parser.add_argument("--variants", default="", help="comma-separated subset of the variants (default: all)")
    args = parser.parse_args()
    path, body = ROUTES[args.route]
    wrk = wrklib.ensure_wrk()
    redis = RedisServer().start()
    echo = EchoServer().start()
    shipped_config = proxy_defaults.apply_defaults(config(echo))
    shipped_env = proxy_defaults.ENV
    sink = OtlpSink(free_port())
    traced_env = {
        **shipped_env,
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": sink.traces_endpoint,
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "1.0",
    }
    proxies = {
        # The floor runs LiteLLM with the environment kubegate ships (its HTTP handler), so fast - router is
        # kubegate's own pipeline.
        "router": RouterFloor(config(echo), env=shipped_env),
        "vanilla": ProxyServer(config(echo), None, plugins=False),
        "vanilla-fixed": ProxyServer(config(echo), None, plugins=False, env=rounds.VANILLA_FIXED_ENV),
        "plugins": ProxyServer(config(echo), policy(), redis_url=redis.url, shipped_env=False),
        "shipped": ProxyServer(shipped_config, policy(), redis_url=redis.url, env=shipped_env),
        "fast": ProxyServer(
            shipped_config, policy(), redis_url=redis.url, env={**shipped_env, "KUBEGATE_FAST_PATH": "1"}
        ),
        "fast-pii": ProxyServer(
            shipped_config, policy(pii=True), redis_url=redis.url, env={**shipped_env, "KUBEGATE_FAST_PATH": "1"}
        ),
        "fast-sdk": ProxyServer(
            shipped_config,
            policy(),
            redis_url=redis.url,
            env={**shipped_env, "KUBEGATE_FAST_PATH": "1", "EXPERIMENTAL_OPENAI_BASE_LLM_HTTP_HANDLER": "false"},
        ),
        "handlers": ProxyServer(
            shipped_config, policy(), redis_url=redis.url, env={**shipped_env, "KUBEGATE_FAST_PATH": "0"}
        ),
        **{
            f"shipped-{n}w": ProxyServer(shipped_config, policy(), redis_url=redis.url, env=shipped_env, workers=n)
            for n in sorted({int(w) for w in args.workers.split(",")} - {1})
        },
        "traced": ProxyServer(shipped_config, policy(), redis_url=redis.url, env=traced_env),
    }
    if args.variants:
        wanted = set(args.variants.split(","))
        proxies = {name: p for name, p in proxies.items() if name in wanted}
    anonymous = wrklib.post_script(body, {})
    tenant = wrklib.post_script(body, {"Authorization": f"Bearer {KEY}"})
    variants = {
        name: (proxy, anonymous if name.startswith(("vanilla", "router")) else tenant)
        for name, proxy in proxies.items()
    }
    shape = {"rounds": args.rounds, "seconds": args.seconds, "connections": args.connections}
    try:
        if "traced" in proxies:
            sink.start()
        for proxy in proxies.values():
            proxy.start()
        runs = rounds.measure(wrk, variants, path=path, **shape)
    finally:
        for proxy in proxies.values():
            proxy.stop()
        sink.stop()
        echo.stop()
        redis.stop()

    med = rounds.medians(runs, **shape)
    print(f"\nroute {path}")
    if {"plugins", "vanilla-fixed"} <= med.keys():
        print("cost of the plugins alone (both with kubegate's LiteLLM work-arounds):")
        rounds.compare(med, "plugins", "vanilla-fixed")
    if {"traced", "shipped"} <= med.keys():
        print("cost of tracing every request (OTLP/HTTP, sample ratio 1):")
        rounds.compare(med, "traced", "shipped")
    if {"fast", "router"} <= med.keys():
        print("the fast path against the bare Router call (what kubegate's pipeline costs on it):")
        rounds.compare(med, "fast", "router")
    if {"fast", "handlers"} <= med.keys():
        print("the fast path against the same gateway through LiteLLM's handlers:")
        rounds.compare(med, "fast", "handlers")
    if {"router", "vanilla"} <= med.keys():
        print("vanilla LiteLLM against the bare Router call (what LiteLLM's proxy layers cost):")
        rounds.compare(med, "vanilla", "router")
    if "vanilla" in med:
        print("what a kubegate gateway serves per core against vanilla LiteLLM with its defaults:")
        for name in med:
            if name.startswith(("shipped", "fast", "handlers")):
                rounds.compare(med, name, "vanilla")
    return 0


if __name__ == "__main__":
    sys.exit(main())
