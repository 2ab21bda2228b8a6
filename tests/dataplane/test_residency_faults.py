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

from tests.harness.echo import EchoServer
from tests.harness.proxy import ProxyServer
from tests.harness.rendered import UPSTREAM_KEY, ProxyInputs, cr, render_proxy

GW = "main"
KEY = "sk-eu-only"


def residency_setup(eu_west: str, eu_central: str, us: str) -> ProxyInputs:
    """One ModelRoute ``gpt`` with a deployment per region (2 retries), and a tenant allowed the two EU regions."""
    bases = {"eu-west-1": eu_west, "eu-central-1": eu_central, "us-east-1": us}
    route = cr(
        "ModelRoute",
        "gpt",
        {
            "gateway": GW,
            "modelName": "gpt",
            "numRetries": 2,
            "free": True,
            "deployments": [
                {"name": region, "model": "echo", "apiBase": base, "apiKeySecretRef": UPSTREAM_KEY, "region": region}
                for region, base in bases.items()
            ],
        },
    )
    tenant = cr(
        "Tenant", "eu", {"gateway": GW, "allowedModels": ["gpt"], "allowedRegions": ["eu-west-1", "eu-central-1"]}
    )
    return render_proxy([cr("LLMGateway", GW, {}), route, tenant], keys={"eu": KEY})


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
        rendered = residency_setup(eu_west.base_url, eu_central.base_url, us.base_url)
        proxy = ProxyServer(rendered.config, rendered.policy, env={**rendered.env, **NO_BACKOFF}).start()
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
