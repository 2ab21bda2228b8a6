"""Residency through the real proxy: in-region upstreams fail (500/429), out-of-region is healthy;
not one request may reach the out-of-region upstream (first tries, retries and fallbacks included).

LiteLLM 1.103.7 sleeps between retries of a single-deployment group: ``INITIAL_RETRY_DELAY * 2**n``
(0.5 s) plus up to ``JITTER`` (0.75 s) of random jitter, ~9 s per request with two in-region groups
and ``num_retries: 2``. The proxy here gets both set to 0 (``litellm/constants.py`` reads them from the
environment) so that every retry and fallback still happens, just without the wait.
"""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from gateway_plugins.policy.schema import Policy, hash_key
from tests.harness.echo import EchoServer
from tests.harness.proxy import ProxyServer

KEY = "sk-eu-only"


def residency_setup(eu_west: str, eu_central: str, us: str) -> tuple[dict, Policy]:
    """Config rendered like the operator does: public group, one group per region, fallbacks per region."""

    def dep(group: str, dep_id: str, region: str, base: str) -> dict:
        return {
            "model_name": group,
            "litellm_params": {"model": "openai/echo", "api_base": base, "api_key": "x"},
            "model_info": {"id": f"{dep_id}-{group}", "region": region},
        }

    model_list = [
        dep("gpt", "eu1", "eu-west-1", eu_west),
        dep("gpt", "eu2", "eu-central-1", eu_central),
        dep("gpt", "us1", "us-east-1", us),
        dep("gpt@eu-west-1", "eu1", "eu-west-1", eu_west),
        dep("gpt@eu-central-1", "eu2", "eu-central-1", eu_central),
        dep("gpt@us-east-1", "us1", "us-east-1", us),
    ]
    config = {"model_list": model_list, "router_settings": {"num_retries": 2}}
    policy = Policy.model_validate(
        {
            "gateway": "main",
            "tenants": [
                {
                    "id": "eu",
                    "keys": [{"sha256": hash_key(KEY)}],
                    "allowed_models": ["gpt"],
                    "allowed_regions": ["eu-west-1", "eu-central-1"],
                }
            ],
            "models": [
                {
                    "name": "gpt",
                    "regional_groups": {r: f"gpt@{r}" for r in ("eu-west-1", "eu-central-1", "us-east-1")},
                }
            ],
            "deployments": [
                {"id": f"{d['model_info']['id']}", "model": "gpt", "region": d["model_info"]["region"]}
                for d in model_list
            ],
        }
    )
    return config, policy


NO_BACKOFF = {"INITIAL_RETRY_DELAY": "0", "JITTER": "0"}
REQUESTS = 25
CALLS_PER_REQUEST = 6  # (1 try + 2 retries) in gpt@eu-west-1, then the same in its fallback gpt@eu-central-1


@pytest.fixture(scope="module")
def region_proxy() -> Iterator[tuple[ProxyServer, EchoServer, EchoServer, EchoServer]]:
    """One proxy for both statuses (a proxy start costs more than all the requests of one case)."""
    servers = [EchoServer() for _ in range(3)]
    proxy = None
    try:
        for s in servers:
            s.start()
        eu_west, eu_central, us = servers
        config, policy = residency_setup(eu_west.base_url, eu_central.base_url, us.base_url)
        proxy = ProxyServer(config, policy, env=NO_BACKOFF).start()
        yield proxy, eu_west, eu_central, us
    finally:
        if proxy is not None:
            proxy.stop()
        for s in servers:
            s.stop()


@pytest.mark.parametrize("status", [500, 429])
def test_failing_region_never_spills_out(region_proxy, openai_client, status):
    proxy, eu_west, eu_central, us = region_proxy
    for s in (eu_west, eu_central, us):
        s.clear()
    client = openai_client(proxy, KEY)
    eu_west.fail_next(status, 10_000)
    eu_central.fail_next(status, 10_000)
    try:
        for i in range(REQUESTS):
            with pytest.raises(openai.APIStatusError) as exc:
                client.chat.completions.create(model="gpt", messages=[{"role": "user", "content": f"hello {i}"}])
            assert exc.value.status_code == status, proxy.logs()
            # The error names the constraint, not the last upstream's message.
            error = exc.value.body if isinstance(exc.value.body, dict) else {}
            assert error.get("code") == "residency_unavailable", exc.value.body
            assert "eu-west-1, eu-central-1" in error.get("message", "") and "not sent" in error["message"]
            assert "provider_specific_fields" not in error
    finally:
        eu_west.fail_next(status, 0)
        eu_central.fail_next(status, 0)
    assert us.received() == []
    # Retries and the in-region fallback really ran (so they were the ones kept in region).
    assert len(eu_west.received()) == REQUESTS * CALLS_PER_REQUEST // 2
    assert len(eu_central.received()) == REQUESTS * CALLS_PER_REQUEST // 2
    # In-region healthy again: served in the first region, and the response says where.
    raw = client.chat.completions.with_raw_response.create(model="gpt", messages=[{"role": "user", "content": "hi"}])
    assert raw.parse().choices[0].message.content == "hi"
    assert raw.headers.get("x-kubegate-region") == "eu-west-1"
    assert us.received() == []
