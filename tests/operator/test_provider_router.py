"""Provider parameters of ModelRoute deployments: validated in the CRD model, rendered into litellm_params that a
real LiteLLM Router accepts, credentials only through Secret-backed environment variables."""

from __future__ import annotations

import os

import pytest
from gateway_operator.crd import models as crd
from gateway_operator.render import render_gateway
from pydantic import ValidationError

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


def _ref(name: str) -> dict:
    return {"name": name, "key": "k"}


DEPLOYMENTS = {
    "openai": {"provider": "openai", "model": "gpt-4o", "apiKeySecretRef": _ref("openai")},
    "azure": {
        "provider": "azure",
        "model": "my-gpt-4o",
        "apiBase": "https://example.openai.azure.com",
        "apiKeySecretRef": _ref("azure"),
        "azure": {"apiVersion": "2024-10-21"},
    },
    "bedrock": {
        "provider": "bedrock",
        "model": "anthropic.claude-3-5-sonnet-20240620-v1:0",
        "bedrock": {
            "region": "eu-central-1",
            "accessKeyIdSecretRef": _ref("aws-id"),
            "secretAccessKeySecretRef": _ref("aws-secret"),
        },
    },
    "vertex": {
        "provider": "vertex_ai",
        "model": "gemini-1.5-pro",
        "vertex": {"project": "my-project-1", "location": "europe-west4", "credentialsSecretRef": _ref("gcp")},
    },
    "anthropic": {"provider": "anthropic", "model": "claude-3-5-sonnet-20241022", "apiKeySecretRef": _ref("anthropic")},
}
EXPECTED = {
    "azure": {"api_version": "2024-10-21", "api_base": "https://example.openai.azure.com"},
    "bedrock": {"aws_region_name": "eu-central-1"},
    "vertex": {"vertex_project": "my-project-1", "vertex_location": "europe-west4"},
}
SECRET_PARAMS = {
    "openai": {"api_key"},
    "azure": {"api_key"},
    "bedrock": {"aws_access_key_id", "aws_secret_access_key"},
    "vertex": {"vertex_credentials"},
    "anthropic": {"api_key"},
}


def _render(kind: str):
    dep = {"name": "d", "region": "eu-west-1", **DEPLOYMENTS[kind]}
    route = crd.ModelRoute.model_validate(
        {"metadata": {"name": "r"}, "spec": {"gateway": "main", "modelName": "m", "deployments": [dep], "free": True}}
    )
    gw = crd.LLMGateway.model_validate({"metadata": {"name": "main"}})
    return render_gateway(gw, [route], [], [], tenant_key_hashes={}, revision=1)


@pytest.mark.parametrize("kind", sorted(DEPLOYMENTS))
def test_a_litellm_router_accepts_the_render_of_each_provider(kind, monkeypatch):
    from litellm import Router

    rendered = _render(kind)
    for var in rendered.api_key_env:
        monkeypatch.setenv(var, f"value-of-{var}")
    params = rendered.litellm_config["model_list"][0]["litellm_params"]
    # Credentials appear only as references to Secret-backed variables, never as values.
    assert {k for k, v in params.items() if str(v).startswith("os.environ/")} == SECRET_PARAMS[kind]
    for key, value in EXPECTED.get(kind, {}).items():
        assert params[key] == value
    router = Router(model_list=rendered.litellm_config["model_list"])
    deployment = router.get_deployment(model_id="r/d")
    assert deployment is not None
    resolved = deployment.litellm_params
    assert resolved.model == f"{DEPLOYMENTS[kind]['provider']}/{DEPLOYMENTS[kind]['model']}"
    for key, value in EXPECTED.get(kind, {}).items():
        assert getattr(resolved, key) == value
    assert not getattr(resolved, "rust", None)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"rust": True}, "rust"),  # would hand the call to LiteLLM's Rust core, past kubegate's post-call hooks
        ({"apiKey": "sk-inline"}, "apiKey"),  # credentials only from Secrets
        ({"azure": {"apiVersion": "latest"}}, "apiVersion"),
        ({"provider": "openai"}, "azure"),  # an Azure block on an OpenAI deployment
    ],
)
def test_invalid_or_off_path_parameters_are_refused(change, field):
    dep = {"name": "d", "region": "eu-west-1", **DEPLOYMENTS["azure"], **change}
    with pytest.raises(ValidationError) as err:
        crd.ModelDeployment.model_validate(dep)
    assert field in str(err.value)


@pytest.mark.parametrize("provider", ["azure", "bedrock", "vertex_ai"])
def test_providers_that_need_parameters_require_them(provider):
    with pytest.raises(ValidationError, match="needs"):
        crd.ModelDeployment.model_validate({"name": "d", "region": "eu", "provider": provider, "model": "x"})
