"""Generated CRDs: no drift, structural and documented, and the real API server enforces them."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from gateway_operator.crd import generate
from kubernetes import client
from kubernetes.client.rest import ApiException

GROUP, VERSION = "kubegate.dev", "v1alpha1"


def test_generated_files_match_models():
    files = generate.render_all()
    for directory in generate.OUTPUT_DIRS:
        for name, text in files.items():
            path = Path(directory) / name
            assert path.exists(), f"{path} missing: run python -m gateway_operator.crd.generate"
            assert path.read_text() == text, f"{path} is stale: run python -m gateway_operator.crd.generate"
        # A CRD of a renamed kind (gateways.yaml before LLMGateway) would still be installed by helm and kubectl.
        assert sorted(p.name for p in Path(directory).glob("*.yaml")) == sorted(files), directory


def _walk(schema: dict, where: str) -> Iterator[tuple[str, dict]]:
    yield where, schema
    for key, sub in schema.get("properties", {}).items():
        yield from _walk(sub, f"{where}.{key}")
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            yield from _walk(schema[key], f"{where}[{key}]")


@pytest.mark.parametrize("kind", sorted(generate.KIND_INFO))
def test_schema_is_structural_and_documented(kind):
    schema = generate.build_crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for where, node in _walk(schema, kind):
        assert node.get("description") or where.endswith(".metadata"), f"{where} has no description"
        assert "$ref" not in node and "anyOf" not in node and "allOf" not in node, where
        assert "type" in node, f"{where} has no type"


def _install_crds(api: client.ApiClient) -> None:
    ext = client.ApiextensionsV1Api(api)
    for text in generate.render_all().values():
        body = yaml.safe_load(text)
        try:
            ext.create_custom_resource_definition(body)
        except ApiException as exc:
            if exc.status != 409:
                raise
    for _ in range(100):
        crds = {c.metadata.name: c for c in ext.list_custom_resource_definition().items}
        established = [
            c
            for c in crds.values()
            if c.spec.group == GROUP
            and any(x.type == "Established" and x.status == "True" for x in c.status.conditions or [])
        ]
        if len(established) == len(generate.KIND_INFO):
            return
        time.sleep(0.1)
    raise AssertionError("CRDs not established")


INVALID = [
    (
        "budgets",
        {
            "tenant": "t",
            "limitUSD": "5",
            "thresholds": [{"percent": 80, "action": "block"}, {"percent": 50, "action": "notify"}],
        },
        "thresholds",
    ),
    ("budgets", {"tenant": "t", "limitUSD": "5", "downgrade": {"a": "a"}}, "downgrade"),
    ("budgets", {"tenant": "t", "limitUSD": "5", "downgrade": {"a": "b", "b": "a"}}, "downgrade"),
    ("budgets", {"tenant": "t", "limitUSD": "five"}, "limitUSD"),
    ("llmgateways", {"autoscaling": {"minReplicas": 5, "maxReplicas": 2}}, "minReplicas"),
    ("llmgateways", {"redis": {"mode": "external"}}, "urlSecretRef"),
    (
        "modelroutes",
        {"gateway": "g", "modelName": "m", "deployments": [{"name": "d", "model": "x", "region": "eu", "weight": 0}]},
        "weight",
    ),
    ("tenants", {"gateway": "NOT_A_NAME"}, "gateway"),
    ("tenants", {"gateway": "g", "hostedTools": ["file_search"]}, "hostedTools"),
    ("tenants", {"gateway": "g", "hostedTools": ["web_search", "web_search"]}, "hostedTools"),
]


@pytest.mark.parametrize(("plural", "spec", "field"), INVALID)
def test_api_server_refuses_invalid_objects_naming_the_field(admin_api, namespace, plural, spec, field):
    _install_crds(admin_api)
    api = client.CustomObjectsApi(admin_api)
    kind = generate.KIND_INFO
    kind_name = next(k for k, v in kind.items() if v["plural"] == plural)
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": kind_name, "metadata": {"name": "bad"}, "spec": spec}
    with pytest.raises(ApiException) as info:
        api.create_namespaced_custom_object(GROUP, VERSION, namespace, plural, body)
    assert info.value.status == 422
    assert field in info.value.body


def test_api_server_accepts_the_examples(admin_api, namespace):
    _install_crds(admin_api)
    api = client.CustomObjectsApi(admin_api)
    for path in sorted(Path("examples/quickstart").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            doc["metadata"]["namespace"] = namespace
            plural = generate.KIND_INFO[doc["kind"]]["plural"]
            api.create_namespaced_custom_object(GROUP, VERSION, namespace, plural, doc)
    got = api.get_namespaced_custom_object(GROUP, VERSION, namespace, "budgets", "team-eu-monthly")
    assert got["spec"]["period"] == "monthly"
