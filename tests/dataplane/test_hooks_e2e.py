"""Auth, allow-list and each hook through a real LiteLLM proxy, with the official openai SDK."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import openai
import pytest

from gateway_plugins.policy import proxy_defaults
from gateway_plugins.policy.schema import DeploymentMeta, KeyRef, ModelMeta, Policy, Tenant, hash_key
from tests.harness.procs import wait_until

KEY_A = "sk-test-tenant-a-0123456789"


def _setup(echo):
    config = {
        "model_list": [
            {
                "model_name": "echo-model",
                "litellm_params": {"model": "openai/echo", "api_base": echo.base_url, "api_key": "upstream-key"},
                "model_info": {"id": "echo-eu"},
            },
            {
                "model_name": "other-model",
                "litellm_params": {"model": "openai/echo", "api_base": echo.base_url, "api_key": "upstream-key"},
                "model_info": {"id": "echo-other"},
            },
        ]
    }
    policy = Policy(
        gateway="main",
        revision=1,
        tenants=[Tenant(id="team-a", keys=[KeyRef(sha256=hash_key(KEY_A))], allowed_models=["echo-model"])],
        models=[ModelMeta(name="echo-model"), ModelMeta(name="other-model")],
        deployments=[
            DeploymentMeta(id="echo-eu", model="echo-model", region="eu-west-1"),
            DeploymentMeta(id="echo-other", model="other-model", region="us-east-1"),
        ],
    )
    return config, policy


@pytest.fixture
def proxy(make_proxy, echo_upstream):
    config, policy = _setup(echo_upstream)
    return make_proxy(config, policy)


def test_tenant_key_chat_non_streaming_and_streaming(proxy, openai_client):
    client = openai_client(proxy, KEY_A)
    raw = client.chat.completions.with_raw_response.create(
        model="echo-model", messages=[{"role": "user", "content": "hello gateway"}]
    )
    resp = raw.parse()
    assert resp.choices[0].message.content == "hello gateway"
    # Set by our response-headers hook from the deployment that served the call.
    assert raw.headers.get("x-kubegate-region") == "eu-west-1"
    chunks = client.chat.completions.create(
        model="echo-model", messages=[{"role": "user", "content": "streamed hello"}], stream=True
    )
    text = "".join((c.choices[0].delta.content or "") for c in chunks if c.choices)
    assert text == "streamed hello"


def test_unknown_key_is_401_openai_body(proxy, openai_client):
    with pytest.raises(openai.AuthenticationError) as exc:
        openai_client(proxy, "sk-wrong").chat.completions.create(
            model="echo-model", messages=[{"role": "user", "content": "x"}]
        )
    assert exc.value.status_code == 401
    body = exc.value.body
    # errors.openai_error's openai_code does not reach the body in litellm 1.103.7 (code is the status).
    assert body["type"] == "authentication_error"
    assert body["message"] == "Invalid API key."
    assert "sk-wrong" not in proxy.logs()


def test_model_not_in_allow_list_is_403(proxy, openai_client):
    with pytest.raises(openai.PermissionDeniedError) as exc:
        openai_client(proxy, KEY_A).chat.completions.create(
            model="other-model", messages=[{"role": "user", "content": "x"}]
        )
    assert exc.value.status_code == 403
    assert "other-model" in str(exc.value)


def test_admin_routes_refused_without_master_key(proxy):
    resp = proxy.get("/key/list", headers={"Authorization": f"Bearer {KEY_A}"})
    assert resp.status_code in (401, 403), resp.text


def test_metrics_route_shows_bounded_series(proxy, openai_client):
    openai_client(proxy, KEY_A).chat.completions.create(
        model="echo-model", messages=[{"role": "user", "content": "count me"}]
    )
    text = proxy.metrics()
    assert "kubegate_requests_total{" in text
    assert 'tenant="team-a"' in text


def _served(text: str, tenant: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "kubegate_requests_total"
        and sample.labels.get("tenant") == tenant
        and sample.labels.get("outcome") == "success"
    )


def test_metrics_add_up_across_workers(make_proxy, echo_upstream, openai_client, tmp_path):
    """With several uvicorn workers every scrape shows the whole pod's counts, not one worker's."""
    config, policy = _setup(echo_upstream)
    multiproc = tmp_path / "prom"
    multiproc.mkdir()
    # The shipped health-check timeout: with uvicorn's 5 s, workers importing LiteLLM were killed in a loop.
    env = {
        "TIMEOUT_WORKER_HEALTHCHECK": proxy_defaults.ENV["TIMEOUT_WORKER_HEALTHCHECK"],
        "PROMETHEUS_MULTIPROC_DIR": str(multiproc),
    }
    proxy = make_proxy(config, policy, workers=2, env=env)
    wait_until(
        lambda: proxy.log.read_text(errors="replace").count("Application startup complete") >= 2,
        timeout=180,
        what="both proxy workers",
        proc=proxy.proc,
        log=proxy.log,
        interval=0.5,
    )
    sent = 48

    def call(i: int) -> None:  # a new client (connection) per request, concurrent, so both workers accept some
        openai_client(proxy, KEY_A).chat.completions.create(
            model="echo-model", messages=[{"role": "user", "content": f"request {i}"}]
        )

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(call, range(sent)))
    writers = {path.stem.rsplit("_", 1)[-1] for path in multiproc.glob("counter_*.db")}
    assert len(writers) >= 2, f"only {writers} wrote counters: the requests did not reach both workers"
    for _ in range(6):  # each scrape lands on either worker; every one must report all requests
        assert _served(proxy.metrics(), "team-a") == sent
