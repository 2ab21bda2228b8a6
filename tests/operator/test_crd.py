"""Generated CRDs: no drift, structural and documented, and the real API server enforces them."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from gateway_operator.crd import generate, models
from kubernetes import client
from kubernetes.client.rest import ApiException
from pydantic import BaseModel

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


# Every pydantic model class: a description equal to one is pydantic's title, not an explanation.
MODEL_NAMES = {n for n, c in vars(models).items() if isinstance(c, type) and issubclass(c, BaseModel)}
# "TenantSpec.", "Rpm.": a bare (class or title-cased field) name.
TYPE_NAME = re.compile(r"^[A-Z][A-Za-z]+\.?$")


def _schema_of(crd: dict) -> dict:
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


@pytest.mark.parametrize("name", sorted(generate.render_all()))
def test_schema_is_structural_and_documented(name):
    """`kubectl explain` says what each field does: every node of every generated CRD (the files we ship, checked
    recursively) has a description, and none is just a type name."""
    crd = yaml.safe_load(generate.render_all()[name])
    kind = crd["spec"]["names"]["kind"]
    for where, node in _walk(_schema_of(crd), kind):
        if where == f"{kind}.metadata":
            continue  # the API server's own schema: a CRD may only give its type
        text = (node.get("description") or "").strip()
        assert text, f"{where} has no description"
        assert not TYPE_NAME.match(text) and text.rstrip(".") not in MODEL_NAMES, f"{where}: {text!r} is a type name"
        assert "$ref" not in node and "anyOf" not in node and "allOf" not in node, where
        assert "type" in node, f"{where} has no type"


def test_a_field_without_description_is_refused_by_the_generator():
    """Fixed at the source: the generator does not invent a description from pydantic's title."""

    class Undocumented(BaseModel):
        """Documented model, undocumented field."""

        rpm: int = 1

    with pytest.raises(ValueError, match=r"X\.rpm: no description"):
        generate._structural(Undocumented.model_json_schema(), {}, ("X",))


def test_date_columns_are_never_in_the_future():
    """kubectl prints a `date` column as an age, and a future time as `<invalid>` (Budget's Resets did): only a
    creation time, always past, may be a date."""
    for kind in generate.KIND_INFO:
        for column in generate.build_crd(kind)["spec"]["versions"][0]["additionalPrinterColumns"]:
            if column["type"] == "date":
                assert column["jsonPath"] == ".metadata.creationTimestamp", (kind, column)


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


WITNESS_VKEY = "w.example/w1+0a1b2c3d+BKqfB0x2l0vpAYJFDAn1mVoKBOjqzxxp3U0lsh6i3cKz"
S3_OK = {
    "bucket": "audit",
    "accessKeyIdSecretRef": {"name": "s", "key": "i"},
    "secretAccessKeySecretRef": {"name": "s", "key": "k"},
}
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
    ("budgets", {"tenant": "t"}, "set limitUSD or limitTokens"),
    ("budgets", {"tenant": "t", "limitTokens": 0}, "limitTokens"),
    ("tenantplans", {"budget": {"period": "daily"}}, "set limitUSD or limitTokens"),
    ("tenantplans", {"allowedModels": ["a", "a"]}, "allowedModels"),
    ("tenants", {"gateway": "g", "plan": "Not_A_Name"}, "plan"),
    ("llmgateways", {"autoscaling": {"minReplicas": 5, "maxReplicas": 2}}, "minReplicas"),
    ("llmgateways", {"redis": {"mode": "external"}}, "urlSecretRef"),
    (
        "llmgateways",
        {"redis": {"mode": "external", "topology": "cluster"}},
        "topology cluster needs spec.redis.cluster",
    ),
    (
        "llmgateways",
        {"redis": {"topology": "sentinel", "sentinel": {"addresses": ["s:26379"], "masterName": "m"}}},
        "needs mode external",
    ),
    (
        "llmgateways",
        {"redis": {"mode": "external", "urlSecretRef": {"name": "r", "key": "u"}, "tls": True}},
        "rediss://",
    ),
    (
        "llmgateways",
        {"redis": {"mode": "external", "topology": "cluster", "cluster": {"nodes": ["no-port"]}}},
        "nodes",
    ),
    (
        "llmgateways",
        {"redis": {"mode": "external", "urlSecretRef": {"name": "r", "key": "u"}, "highAvailability": {}}},
        "highAvailability is for mode managed",
    ),
    ("llmgateways", {"redis": {"highAvailability": {"replicas": 3, "replicaAcks": 3}}}, "must be below replicas"),
    ("llmgateways", {"redis": {"highAvailability": {"replicaAcks": 4}}}, "must be below replicas"),
    ("llmgateways", {"redis": {"highAvailability": {"replicas": 2}}}, "replicas"),
    ("llmgateways", {"redis": {"caSecretRef": {"name": "ca", "key": "ca.crt"}}}, "caSecretRef is for mode external"),
    ("llmgateways", {"redis": {"clientCertSecretRef": {"name": "c"}}}, "clientCertSecretRef is for mode external"),
    (
        "llmgateways",
        {
            "redis": {
                "mode": "external",
                "topology": "cluster",
                "cluster": {"nodes": ["c:1"]},
                "clientCertSecretRef": {"name": "c"},
            }
        },
        "clientCertSecretRef needs TLS",
    ),
    (
        "modelroutes",
        {"gateway": "g", "modelName": "m", "deployments": [{"name": "d", "model": "x", "region": "eu", "weight": 0}]},
        "weight",
    ),
    ("llmgateways", {"pod": {"volumes": [{"name": "tmp", "emptyDir": {}}]}}, "operator's own volume names"),
    (
        "llmgateways",
        {"pod": {"volumes": [{"name": "a", "emptyDir": {}, "secret": {"secretName": "s"}}]}},
        "set exactly one of configMap",
    ),
    (
        "llmgateways",
        {"pod": {"volumes": [{"name": "a", "emptyDir": {}}], "volumeMounts": [{"name": "a", "mountPath": "/tmp/x"}]}},
        "spec.pod.volumeMounts: Invalid value",
    ),
    (
        "llmgateways",
        {
            "pod": {
                "volumes": [{"name": "a", "emptyDir": {}}],
                "volumeMounts": [{"name": "a", "mountPath": "/etc/kubegate"}],
            }
        },
        "operator's mounts",
    ),
    (
        "llmgateways",
        {
            "pod": {
                "volumes": [{"name": "a", "emptyDir": {}}],
                "volumeMounts": [{"name": "a", "mountPath": "/x/../tmp"}],
            }
        },
        "mountPath",
    ),
    ("llmgateways", {"pod": {"volumeMounts": [{"name": "config", "mountPath": "/x"}]}}, "spec.pod.volumeMounts"),
    ("llmgateways", {"pod": {"volumes": [{"name": "a", "hostPath": {"path": "/"}}]}}, "set exactly one of"),
    *[
        ("llmgateways", {"audit": {"export": {"s3": {**S3_OK, **change}}}}, field)
        for change, field in (
            ({"prefix": "kubegate"}, "spec.audit.export.s3.prefix: Invalid value"),
            ({"prefix": "kubegate"}, "prefix must be empty or end in '/'"),
            ({"endpoint": "https://id:secret@s3.example.com"}, "endpoint must not hold credentials"),
            ({"endpoint": "s3.example.com"}, "spec.audit.export.s3.endpoint"),
            ({"bucket": "Not_A_Bucket"}, "spec.audit.export.s3.bucket"),
            ({"objectLock": {"mode": "LEGAL_HOLD"}}, "spec.audit.export.s3.objectLock.mode: Unsupported value"),
            ({"objectLock": {"retentionDays": 0}}, "spec.audit.export.s3.objectLock.retentionDays"),
            ({"accessKeyIdSecretRef": None}, "spec.audit.export.s3.accessKeyIdSecretRef: Required value"),
        )
    ],
    ("tenants", {"gateway": "NOT_A_NAME"}, "gateway"),
    ("tenants", {"gateway": "g", "hostedTools": ["file_search"]}, "hostedTools"),
    ("tenants", {"gateway": "g", "hostedTools": ["web_search", "web_search"]}, "hostedTools"),
    ("tenants", {"gateway": "g", "expiresAt": "next tuesday"}, "expiresAt"),
    ("llmgateways", {"audit": {"witnesses": {"keys": ["not a vkey"]}}}, "spec.audit.witnesses.keys[0]"),
    ("llmgateways", {"audit": {"witnesses": {"keys": [WITNESS_VKEY], "quorum": 2}}}, "quorum must not be more"),
    ("llmgateways", {"audit": {"witnesses": {"keys": []}}}, "spec.audit.witnesses.keys"),
    ("llmgateways", {"volumeDiscounts": [{"fromUSD": "100", "percent": "100"}]}, "percent"),
    (
        "llmgateways",
        {"volumeDiscounts": [{"fromUSD": "100", "percent": "10"}, {"fromUSD": "50", "percent": "20"}]},
        "ascending by fromUSD",
    ),
    ("modelroutes", {"gateway": "g", "modelName": "auto"}, "set either deployments"),
    (
        "modelroutes",
        {
            "gateway": "g",
            "modelName": "auto",
            "candidates": [{"model": "m", "tier": 1}],
            "deployments": [{"name": "a", "model": "m", "region": "eu-west-1"}],
        },
        "set either deployments",
    ),
    (
        "modelroutes",
        {"gateway": "g", "modelName": "auto", "candidates": [{"model": "auto", "tier": 1}]},
        "own modelName",
    ),
    ("modelroutes", {"gateway": "g", "modelName": "auto", "candidates": [{"model": "m", "tier": 0}]}, "tier"),
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


def test_api_server_accepts_the_plan_examples(admin_api, namespace):
    _install_crds(admin_api)
    api = client.CustomObjectsApi(admin_api)
    paths = [
        "examples/gitops/argocd/platform/plans.yaml",
        "examples/gitops/argocd/platform/modelroutes.yaml",  # with a cost-routed route (auto)
        "examples/gitops/argocd/teams/team-analytics/tenant.yaml",
    ]
    for path in paths:
        for doc in yaml.safe_load_all(Path(path).read_text()):
            doc["metadata"]["namespace"] = namespace
            plural = generate.KIND_INFO[doc["kind"]]["plural"]
            api.create_namespaced_custom_object(GROUP, VERSION, namespace, plural, doc)
    names = {
        p["metadata"]["name"]
        for p in api.list_namespaced_custom_object(GROUP, VERSION, namespace, "tenantplans")["items"]
    }
    assert names == {"basic", "professional", "enterprise"}


def test_a_witness_key_is_parsed_whole_and_the_quorum_reachable():
    from gateway_operator.crd import models as m

    from gateway_plugins.policy.audit.witness import Cosigner

    good = [Cosigner.generate(f"w.example/w{i}").key.vkey() for i in range(3)]
    assert m.AuditWitnessesSpec.model_validate({"keys": good, "quorum": 2}).quorum == 2
    name, _, material = good[0].split("+", 2)
    wrong_id = f"{name}+{'0' * 8}+{material}"
    with pytest.raises(ValueError, match=r"keys\[1\]"):
        m.AuditWitnessesSpec.model_validate({"keys": [good[0], wrong_id]})
    with pytest.raises(ValueError, match="quorum 3 is more than the 2"):
        m.AuditWitnessesSpec.model_validate({"keys": good[:2], "quorum": 3})
    with pytest.raises(ValueError, match="same witness name"):
        m.AuditWitnessesSpec.model_validate({"keys": [good[0], good[0]]})


def test_api_server_accepts_the_redis_topologies_in_docs(admin_api, namespace):
    """The Sentinel and Cluster examples of docs/redis.md, as written there, with the defaults the API server adds."""
    _install_crds(admin_api)
    api = client.CustomObjectsApi(admin_api)
    text = Path("docs/redis.md").read_text()
    block = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    specs = [doc["spec"] for doc in yaml.safe_load_all(block)]
    assert [s["redis"]["topology"] for s in specs] == ["sentinel", "cluster"]
    for i, spec in enumerate(specs):
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "LLMGateway", "metadata": {"name": f"gw{i}"}, "spec": spec}
        api.create_namespaced_custom_object(GROUP, VERSION, namespace, "llmgateways", body)
        got = api.get_namespaced_custom_object(GROUP, VERSION, namespace, "llmgateways", f"gw{i}")
        assert got["spec"]["redis"]["mode"] == "external"
        models.LLMGatewaySpec.model_validate(got["spec"])  # what the operator then reads


def test_ner_types_in_a_language_the_image_has_no_model_for_are_refused_naming_the_field_and_fix():
    """The operator's own parse refuses what the CEL rule refuses at apply (a TenantPlan or an older API server)."""
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as info:
        models.PiiSpec(entities={"PERSON": "mask"}, languages=["en", "de"])
    text = str(info.value)
    assert "pii.languages: de has no NER model in the proxy image (it ships: en)" in text, text
    assert "remove de from pii.languages, or drop the NER types" in text, text
    with pytest.raises(ValidationError, match=r"pii\.language: fr"):
        models.PiiSpec(entities={"LOCATION": "mask"}, language="fr")
    # Structured types need no model: any language; English NER is fine.
    assert models.PiiSpec(languages=["de", "fr"]).languages == ["de", "fr"]
    assert models.PiiSpec(entities={"PERSON": "mask"}, languages=["en"]).languages == ["en"]
