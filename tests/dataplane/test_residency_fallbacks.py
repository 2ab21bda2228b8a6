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

from tests.harness.echo import EchoServer
from tests.harness.proxy import ProxyServer
from tests.harness.rendered import UPSTREAM_KEY, ProxyInputs, cr, echo_route, render_proxy

GW = "fallbacks"
KEY = "sk-eu-west-only-0123"


def setup(failing: str, eu: str, us: str) -> ProxyInputs:
    """``gpt`` (one failing eu-west-1 deployment) falls back to ``mini`` (eu-west-1 and us-east-1), from CR objects."""
    gpt = echo_route(GW, "gpt", failing, upstream_model="gpt", fallbacks=["mini"])
    mini = cr(
        "ModelRoute",
        "mini",
        {
            "gateway": GW,
            "modelName": "mini",
            "numRetries": 0,
            "free": True,
            "deployments": [
                {"name": "eu", "model": "mini", "apiBase": eu, "apiKeySecretRef": UPSTREAM_KEY, "region": "eu-west-1"},
                {"name": "us", "model": "mini", "apiBase": us, "apiKeySecretRef": UPSTREAM_KEY, "region": "us-east-1"},
            ],
        },
    )
    tenant = cr("Tenant", "eu", {"gateway": GW, "allowedModels": ["gpt"], "allowedRegions": ["eu-west-1"]})
    return render_proxy([cr("LLMGateway", GW, {}), gpt, mini, tenant], keys={"eu": KEY})


@pytest.fixture(scope="module")
def stack() -> Iterator[tuple[ProxyServer, EchoServer, EchoServer]]:
    eu, us = EchoServer().start(), EchoServer().start()
    proxy = None
    try:
        rendered = setup(eu.api_base(status=500), eu.base_url, us.base_url)
        env = {**rendered.env, "INITIAL_RETRY_DELAY": "0", "JITTER": "0"}
        proxy = ProxyServer(rendered.config, rendered.policy, env=env).start()
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
