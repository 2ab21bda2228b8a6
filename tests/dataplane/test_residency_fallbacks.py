"""A residency-restricted tenant keeps its model's fallbacks, inside its region.

The tenant may use eu-west-1 only. ``gpt@eu-west-1`` fails; the route's fallback model ``mini`` has a
healthy eu-west-1 deployment and a healthy US one. The request is served by ``mini`` in eu-west-1 (and
``x-kubegate-region`` says so); the US upstream never sees a request. A per-request fallback list that
held only other regions' groups once switched these in-region fallbacks off.
"""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from gateway_plugins.policy.schema import Policy, hash_key
from tests.harness.echo import EchoServer
from tests.harness.proxy import ProxyServer

KEY = "sk-eu-west-only-0123"


def setup(failing: str, eu: str, us: str) -> tuple[dict, Policy]:
    def dep(group: str, dep_id: str, region: str, base: str, model: str) -> dict:
        return {
            "model_name": group,
            "litellm_params": {"model": f"openai/{model}", "api_base": base, "api_key": "x"},
            "model_info": {"id": dep_id},
        }

    model_list = [
        dep("gpt", "gpt-eu", "eu-west-1", failing, "gpt"),
        dep("gpt@eu-west-1", "gpt-eu", "eu-west-1", failing, "gpt"),
        dep("mini", "mini-eu", "eu-west-1", eu, "mini"),
        dep("mini", "mini-us", "us-east-1", us, "mini"),
        dep("mini@eu-west-1", "mini-eu", "eu-west-1", eu, "mini"),
        dep("mini@us-east-1", "mini-us", "us-east-1", us, "mini"),
    ]
    config = {"model_list": model_list, "router_settings": {"num_retries": 0}}
    policy = Policy.model_validate(
        {
            "gateway": "fallbacks",
            "tenants": [
                {
                    "id": "eu",
                    "keys": [{"sha256": hash_key(KEY)}],
                    "allowed_models": ["gpt"],
                    "allowed_regions": ["eu-west-1"],
                }
            ],
            "models": [
                {"name": "gpt", "regional_groups": {"eu-west-1": "gpt@eu-west-1"}, "fallbacks": ["mini"]},
                {"name": "mini", "regional_groups": {"eu-west-1": "mini@eu-west-1", "us-east-1": "mini@us-east-1"}},
            ],
            "deployments": [
                {"id": "gpt-eu", "model": "gpt", "region": "eu-west-1"},
                {"id": "mini-eu", "model": "mini", "region": "eu-west-1"},
                {"id": "mini-us", "model": "mini", "region": "us-east-1"},
            ],
        }
    )
    return config, policy


@pytest.fixture(scope="module")
def stack() -> Iterator[tuple[ProxyServer, EchoServer, EchoServer]]:
    eu, us = EchoServer().start(), EchoServer().start()
    proxy = None
    try:
        config, policy = setup(eu.api_base(status=500), eu.base_url, us.base_url)
        proxy = ProxyServer(config, policy, env={"INITIAL_RETRY_DELAY": "0", "JITTER": "0"}).start()
        yield proxy, eu, us
    finally:
        if proxy is not None:
            proxy.stop()
        eu.stop()
        us.stop()


def test_in_region_fallback_serves_and_nothing_leaves_the_region(stack):
    proxy, eu, us = stack
    client = openai.OpenAI(base_url=proxy.base_url + "/v1", api_key=KEY, max_retries=0, timeout=60)
    for i in range(5):
        raw = client.chat.completions.with_raw_response.create(
            model="gpt", messages=[{"role": "user", "content": f"hello {i}"}]
        )
        assert raw.headers["x-kubegate-region"] == "eu-west-1"
        assert raw.parse().choices[0].message.content == f"hello {i}"
    served = [r for r in eu.received() if "/status/" not in r["path"]]
    assert len(served) == 5 and all(r["body"]["model"] == "mini" for r in served)
    assert us.received() == []
