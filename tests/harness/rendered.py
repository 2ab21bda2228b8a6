"""What the operator gives a proxy pod, made from CR objects: the LiteLLM config (read back from the ConfigMap the
operator builds), the policy ``render_gateway`` renders, and the container env the Deployment builder sets for what
a Gateway's spec brings (upstream credentials, tracing, master key), Secret references resolved as the kubelet does.

Data-plane tests start their proxy from this instead of a hand-written config and policy, so a CR field the renderer
or a builder drops fails a test. Everything else a pod gets (Redis, policy file, audit key, metrics port) is the
harness's local equivalent (tests/harness/proxy.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml
from gateway_operator.builders.configmaps import CONFIG_KEY
from gateway_operator.builders.gateway import build_children
from gateway_operator.crd import models as crd
from gateway_operator.render import RenderedGateway, render_gateway
from gateway_operator.render.plans import apply_plans

from gateway_plugins.policy.schema import KeyRef, Policy, hash_key
from tests.harness.proxy import SIGNER

# Variables of the proxy container a test's proxy takes from the built Deployment (besides the rendered upstream
# credentials): they follow from the Gateway's spec; the rest of the pod's env is provided by the harness.
SPEC_ENV_PREFIXES = ("OTEL_",)
SPEC_ENV_NAMES = frozenset({"LITELLM_MASTER_KEY", "KUBEGATE_MASTER_KEY_SHA256", "KUBEGATE_AUDIT_STREAM_MAXLEN"})
# An upstream key for ModelRoute deployments (``apiKeySecretRef``), in a Secret every rendered proxy can read;
# the echo upstream takes any key.
UPSTREAM_KEY = {"name": "upstream", "key": "api-key"}
UPSTREAM_SECRETS = {("upstream", "api-key"): "echo-needs-no-key"}


def cr(kind: str, name: str, spec: Mapping[str, Any], namespace: str = "default") -> dict[str, Any]:
    """A kubegate object as ``kubectl apply`` would send it."""
    return {
        "apiVersion": crd.API_VERSION,
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace},
        "spec": dict(spec),
    }


@dataclass(frozen=True)
class ProxyInputs:
    config: dict[str, Any]
    policy: Policy
    env: dict[str, str]
    rendered: RenderedGateway


def _container_env(children: list[dict[str, Any]]) -> list[dict[str, Any]]:
    (deployment,) = [c for c in children if c["kind"] == "Deployment" and c["metadata"]["name"].endswith("-proxy")]
    (container,) = [c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "proxy"]
    return container["env"]


def _config(children: list[dict[str, Any]]) -> dict[str, Any]:
    (configmap,) = [c for c in children if c["kind"] == "ConfigMap" and CONFIG_KEY in c.get("data", {})]
    return yaml.safe_load(configmap["data"][CONFIG_KEY])


def render_proxy(
    objects: Iterable[Mapping[str, Any]],
    *,
    keys: Mapping[str, str | Sequence[KeyRef]],
    secrets: Mapping[tuple[str, str], str] | None = None,
    master_key_sha256: str | None = None,
    revision: int = 1,
) -> ProxyInputs:
    """``objects``: one LLMGateway and its ModelRoutes, Tenants and Budgets (CR dicts, e.g. from ``cr``);
    ``keys``: Tenant name -> its plaintext key (the renderer gets its hash), or the key hashes as the Tenant's key
    Secret yields them (a rotated-out key with its expiry);
    ``secrets``: (Secret name, key) -> value, for the Secret references of the proxy container's env (besides
    ``UPSTREAM_KEY``).

    Every object must render: one the renderer leaves out fails here, naming it and why."""
    by_kind: dict[str, list[Any]] = {kind: [] for kind in crd.KINDS}
    raw_gateways: list[dict[str, Any]] = []
    for obj in objects:
        by_kind[obj["kind"]].append(crd.KINDS[obj["kind"]].model_validate(obj))
        if obj["kind"] == "LLMGateway":
            raw_gateways.append(obj)
    (gateway,) = by_kind["LLMGateway"]
    tenants, plan_budgets, plan_problems = apply_plans(by_kind["Tenant"], by_kind["TenantPlan"])
    assert not plan_problems, plan_problems
    rendered = render_gateway(
        gateway,
        by_kind["ModelRoute"],
        tenants,
        [*by_kind["Budget"], *plan_budgets],
        tenant_key_hashes={t: [hash_key(k)] if isinstance(k, str) else list(k) for t, k in keys.items()},
        revision=revision,
    )
    assert not rendered.problems, f"objects the renderer left out: {rendered.skipped}"
    # The builders take the object as the API server returns it (with a uid for owner references).
    raw = {**raw_gateways[0], "metadata": {"uid": "test-uid", **raw_gateways[0]["metadata"]}}
    children = build_children(raw, rendered, SIGNER, master_key_sha256=master_key_sha256)
    env: dict[str, str] = {}
    # An external Redis, or the managed Sentinel group, reaches the proxy as the operator renders it (address, user,
    # password); a single managed one is the test's own redis_url.
    external = gateway.spec.redis.mode == "external" or gateway.spec.redis.high_availability is not None
    for var in _container_env(children):
        name = var["name"]
        spec_env = name in SPEC_ENV_NAMES or name.startswith(SPEC_ENV_PREFIXES)
        if not (name in rendered.api_key_env or spec_env or (external and name.startswith("KUBEGATE_REDIS_"))):
            continue
        if "value" in var:
            env[name] = var["value"]
        else:
            ref = var["valueFrom"]["secretKeyRef"]
            env[name] = {**UPSTREAM_SECRETS, **(secrets or {})}[(ref["name"], ref["key"])]
    missing = set(rendered.api_key_env) - set(env)
    assert not missing, f"rendered credentials the proxy Deployment does not get: {sorted(missing)}"
    return ProxyInputs(_config(children), rendered.policy, env, rendered)


def echo_route(
    gateway: str,
    model: str,
    base: str,
    *,
    upstream_model: str = "echo",
    provider: str = "openai",
    region: str = "eu-west-1",
    name: str = "1",
    input_price: str | None = None,
    output_price: str | None = None,
    num_retries: int = 0,
    namespace: str = "default",
    **spec: Any,
) -> dict[str, Any]:
    """A ModelRoute serving ``model`` from one deployment at ``base`` (an echo upstream) in ``region``; ``provider``
    picks the API LiteLLM speaks to it (the echo answers OpenAI's and Anthropic's) and, with ``upstream_model``, the
    model's limits in LiteLLM's model map (``echo`` is in none).

    No price given: a free route (the echo model is in no price map). ``num_retries`` defaults to 0 so a test's
    upstream failure is seen once; ``spec``: further ModelRoute spec fields (camelCase)."""
    deployment: dict[str, Any] = {
        "name": name,
        "provider": provider,
        "model": upstream_model,
        "apiBase": base,
        "apiKeySecretRef": UPSTREAM_KEY,
        "region": region,
    }
    if input_price is not None or output_price is not None:
        deployment["inputCostPerToken"] = input_price or "0"
        deployment["outputCostPerToken"] = output_price or "0"
    else:
        spec.setdefault("free", True)
    return cr(
        "ModelRoute",
        model,
        {"gateway": gateway, "modelName": model, "deployments": [deployment], "numRetries": num_retries, **spec},
        namespace,
    )
