"""Auth, allow-list and each hook through a real LiteLLM proxy, with the official openai SDK."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest

from gateway_plugins.policy import proxy_defaults
from tests.harness.procs import wait_until
from tests.harness.rendered import ProxyInputs, cr, echo_route, render_proxy

KEY_A = "sk-test-tenant-a-0123456789"


def _objects(echo) -> list[dict]:
    """Gateway ``main``: ``echo-model`` in eu-west-1, ``other-model`` in us-east-1, and team-a allowed only the first."""
    return [
        cr("LLMGateway", "main", {}),
        echo_route("main", "echo-model", echo.base_url),
        echo_route("main", "other-model", echo.base_url, region="us-east-1"),
        cr("Tenant", "team-a", {"gateway": "main", "allowedModels": ["echo-model"]}),
    ]


def _setup(echo, extra: Sequence[dict] = (), keys: Mapping[str, str] | None = None, revision: int = 1) -> ProxyInputs:
    """The proxy's inputs rendered from ``_objects`` plus ``extra`` objects (``keys``: their tenants' keys)."""
    return render_proxy([*_objects(echo), *extra], keys={"team-a": KEY_A, **(keys or {})}, revision=revision)


@pytest.fixture
def proxy(make_proxy, echo_upstream):
    rendered = _setup(echo_upstream)
    return make_proxy(rendered.config, rendered.policy, env=rendered.env)


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


def test_model_not_in_allow_list_is_404_model_not_found(proxy, openai_client):
    with pytest.raises(openai.NotFoundError) as exc:
        openai_client(proxy, KEY_A).chat.completions.create(
            model="other-model", messages=[{"role": "user", "content": "x"}]
        )
    assert exc.value.status_code == 404
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
    rendered = _setup(echo_upstream)
    multiproc = tmp_path / "prom"
    multiproc.mkdir()
    # The shipped health-check timeout: with uvicorn's 5 s, workers importing LiteLLM were killed in a loop.
    env = {
        **rendered.env,
        "TIMEOUT_WORKER_HEALTHCHECK": proxy_defaults.ENV["TIMEOUT_WORKER_HEALTHCHECK"],
        "PROMETHEUS_MULTIPROC_DIR": str(multiproc),
    }
    proxy = make_proxy(rendered.config, rendered.policy, workers=2, env=env)
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
