"""LiteLLM per-request work kubegate's proxy does not need stays trimmed (``gateway_plugins.litellm_trim``, issue #22).

A rendered proxy reports on /metrics what LiteLLM calls after every call: its per-key limiters are gone,
and any callback a LiteLLM upgrade adds fails the test until it is looked at. The Router's TPM/RPM tracking is
checked in process: a deployment without limits is looked at once, one with limits is still counted.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from litellm import Router

from gateway_plugins import litellm_trim
from gateway_plugins.policy import proxy_defaults
from tests.dataplane.contract_stack import objects
from tests.harness.proxy import ProxyServer
from tests.harness.redis import RedisServer
from tests.harness.rendered import render_proxy

# What LiteLLM calls after each successful call in kubegate's proxy (LiteLLM 1.103.7). kubegate's own callback;
# the Router's success callback (its cooldowns count successes); LiteLLM's service logger and the proxy hooks it
# registers for every proxy, which do nothing without their features configured.
EXPECTED_CALLBACKS = {
    "KubegateHooks",
    "Router.deployment_callback_on_success",
    "ServiceLogging",
    "_PROXY_CacheControlCheck",
    "ResponsesIDSecurity",
    "SkillsInjectionHook",
    "_PROXY_MaxIterationsHandler",
    "_PROXY_MaxBudgetPerSessionHandler",
    "_PROXY_SensitiveDataRoutingHandler",
    "PromptCacheObserver",
}
GAUGE = re.compile(r'^kubegate_litellm_success_callbacks\{callback="([^"]+)"\} 1\.0$', re.M)


@pytest.fixture(scope="module")
def proxy(echo_upstream) -> Iterator[ProxyServer]:
    rendered = render_proxy(objects(echo_upstream.base_url), keys={"plain": "sk-contract-plain-0123456789"})
    rds = RedisServer().start()
    server = ProxyServer(rendered.config, rendered.policy, redis_url=rds.url, env=rendered.env)
    try:
        yield server.start()
    finally:
        print(server.logs()[-4000:])
        server.stop()
        rds.stop()


def _success_callbacks(proxy: ProxyServer) -> set[str]:
    body = {"model": "echo", "messages": [{"role": "user", "content": "hello"}]}
    auth = {"Authorization": "Bearer sk-contract-plain-0123456789"}
    resp = httpx.post(f"{proxy.base_url}/v1/chat/completions", json=body, headers=auth, timeout=30)
    assert resp.status_code == 200, resp.text
    metrics = httpx.get(f"http://127.0.0.1:{proxy.metrics_port}/metrics", timeout=10).text
    return set(GAUGE.findall(metrics))


def test_the_proxy_runs_only_the_callbacks_it_needs(proxy):
    found = _success_callbacks(proxy)
    assert "_PROXY_MaxParallelRequestsHandler_v3" not in found
    assert "_PROXY_VirtualKeyModelMaxBudgetLimiter" not in found
    # A new name here is new per-request work: trim it in gateway_plugins.litellm_trim or add it with a reason.
    assert found == EXPECTED_CALLBACKS


def test_openai_compatible_calls_skip_the_openai_sdk_client(proxy, echo_upstream):
    """The shipped environment sends OpenAI-compatible calls through LiteLLM's own HTTP handler: the OpenAI SDK
    client (its request transform and response models, about 1.4 ms per request) marks each call it makes with its
    ``x-stainless-*`` headers, and no call of the proxy carries one."""
    assert proxy_defaults.ENV["EXPERIMENTAL_OPENAI_BASE_LLM_HTTP_HANDLER"] == "true"
    before = len(echo_upstream.received())
    _success_callbacks(proxy)
    calls = echo_upstream.received()[before:]
    assert calls and all(c["path"].endswith("/chat/completions") for c in calls), calls
    assert not [h for c in calls for h in c["headers"] if h.startswith("x-stainless")], calls[0]["headers"]


def test_the_rendered_config_skips_per_callback_opt_out_checks(echo_upstream):
    rendered = render_proxy(objects(echo_upstream.base_url), keys={"plain": "sk-contract-plain-0123456789"})
    assert rendered.config["litellm_settings"]["global_disable_no_log_param"] is True


def test_the_limiter_stays_where_it_could_limit():
    assert litellm_trim.limiter_is_inert({"custom_auth": proxy_defaults.CUSTOM_AUTH}, None)
    assert not litellm_trim.limiter_is_inert({}, None)  # LiteLLM's own auth: keys may carry limits
    assert not litellm_trim.limiter_is_inert({"custom_auth": "my_auth.check"}, None)
    assert not litellm_trim.limiter_is_inert({"custom_auth": proxy_defaults.CUSTOM_AUTH}, object())  # a database


def _router() -> Router:
    def deployment(model_id: str, **limits: int) -> dict:
        params = {"model": "openai/echo", "api_base": "http://127.0.0.1:9/v1", "api_key": "k", **limits}
        return {"model_name": "echo", "litellm_params": params, "model_info": {"id": model_id}}

    return Router(model_list=[deployment("plain"), deployment("limited", rpm=100)])


async def _count(router: Router, deployment_id: str) -> None:
    await router._increment_deployment_usage(
        deployment_id=deployment_id,
        deployment_name=None,
        model_group="echo",
        total_tokens=10,
        rpm_increment=1,
        parent_otel_span=None,
    )


async def test_usage_tracking_looks_at_a_deployment_without_limits_once(monkeypatch):
    router = _router()
    assert litellm_trim.skip_untracked_deployment_usage(router)
    assert not litellm_trim.skip_untracked_deployment_usage(router)  # once per Router
    looked = []
    original = router.get_router_model_info
    monkeypatch.setattr(router, "get_router_model_info", lambda **kw: looked.append(kw) or original(**kw))
    for _ in range(3):
        await _count(router, "plain")
    assert len(looked) == 1  # LiteLLM alone builds the model info on each of the three calls

    # A deployment with a limit is still counted as LiteLLM counts it.
    await _count(router, "limited")
    await _count(router, "limited")
    cached = router.cache.in_memory_cache.cache_dict
    rpm = [value for name, value in cached.items() if "limited" in name and "rpm" in name.lower()]
    assert rpm == [2]
