"""Data-plane fixtures usable by every test: Redis, echo upstream, LiteLLM proxies with our plugins.

See ``tests/harness/README.md``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

# Tests that import LiteLLM in this process (its route table, its Router) must never fetch its price map.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from gateway_plugins.policy.schema import Policy
from tests.harness.echo import EchoServer
from tests.harness.proxy import ProxyServer
from tests.harness.redis import RedisServer


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def echo_upstream() -> Iterator[EchoServer]:
    server = EchoServer().start()
    yield server
    server.stop()


@pytest.fixture
def make_proxy(request: pytest.FixtureRequest) -> Iterator[Callable[..., ProxyServer]]:
    """Factory: ``make_proxy(config, policy, redis_url=None, env=None)`` -> started ProxyServer.

    Proxies are stopped at the end of the test; their log is printed when the test failed.
    """
    started: list[ProxyServer] = []

    def factory(config: dict, policy: Policy | None, **kwargs) -> ProxyServer:
        proxy = ProxyServer(config, policy, **kwargs)
        started.append(proxy)
        return proxy.start()

    yield factory
    failed = getattr(request.node, "rep_call", None)
    for proxy in started:
        if failed is not None and failed.failed:
            print(proxy.logs())
        proxy.stop()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    rep = yield
    setattr(item, f"rep_{rep.when}", rep)
    return rep


@pytest.fixture
def openai_client() -> Callable[..., object]:
    """``openai_client(proxy, key)`` -> an official ``openai.OpenAI`` pointed at the proxy."""
    import openai

    def factory(proxy: ProxyServer, key: str) -> openai.OpenAI:
        return openai.OpenAI(base_url=proxy.base_url + "/v1", api_key=key, max_retries=0, timeout=30)

    return factory
