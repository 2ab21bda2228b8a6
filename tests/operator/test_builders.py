"""Builders: children of a Gateway as plain dicts (no cluster)."""

from __future__ import annotations

import base64
import gzip
import json
import re
import secrets

import pytest
import yaml
from gateway_operator.builders.configmaps import POLICY_KEY, build_policy_configmap
from gateway_operator.builders.gateway import build_children
from gateway_operator.builders.proxy import CHECKSUM_ANNOTATION, build_proxy_deployment, scale_summary
from gateway_operator.builders.secrets import KEY_FIELD, build_tenant_key_secret, new_tenant_key
from gateway_operator.crd import models as crd
from gateway_operator.render import render_gateway

from gateway_plugins.policy import hash_key, parse_policy, proxy_defaults
from gateway_plugins.policy.signing import PolicySignatureError, PolicySigner

UID = "0f0e0d0c-0000-4000-8000-000000000001"
SIGNER = PolicySigner.generate()


def _gateway(spec: dict | None = None) -> dict:
    return {
        "apiVersion": crd.API_VERSION,
        "kind": "LLMGateway",
        "metadata": {"name": "main", "namespace": "ns", "uid": UID},
        "spec": spec or {},
    }


def _route() -> crd.ModelRoute:
    return crd.ModelRoute.model_validate(
        {
            "metadata": {"name": "r"},
            "spec": {
                "gateway": "main",
                "modelName": "m",
                "free": True,
                "deployments": [
                    {"name": "a", "model": "x", "region": "eu-west-1", "apiKeySecretRef": {"name": "up", "key": "k"}}
                ],
            },
        }
    )


def _children(spec: dict | None = None, **kwargs) -> dict[str, dict]:
    gw = _gateway(spec)
    rendered = render_gateway(crd.LLMGateway.model_validate(gw), [_route()], [], [], tenant_key_hashes={}, revision=1)
    return {f"{c['kind']}/{c['metadata']['name']}": c for c in build_children(gw, rendered, SIGNER, **kwargs)}


def test_every_child_is_owned_by_the_gateway():
    children = _children()
    assert set(children) >= {
        "Deployment/main-proxy",
        "Service/main",
        "ConfigMap/main-litellm-config",
        "ConfigMap/main-policy",
        "HorizontalPodAutoscaler/main-proxy",
        "PodDisruptionBudget/main-proxy",
        "StatefulSet/main-redis",
        "Service/main-redis",
    }
    for child in children.values():
        (ref,) = child["metadata"]["ownerReferences"]
        assert ref["uid"] == UID and ref["controller"] is True


def test_proxy_deployment_env_and_checksum():
    spec = {"masterKeySecretRef": {"name": "mk", "key": "key"}, "autoscaling": {"enabled": False}}
    children = _children(spec, master_key_sha256="c" * 64)
    dep = children["Deployment/main-proxy"]
    container = dep["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert env["LITELLM_LOCAL_MODEL_COST_MAP"]["value"] == "True"
    assert env["LITELLM_MASTER_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "mk", "key": "key"}
    # The front door opens admin routes by this hash (gateway_plugins.settings); the key itself is not in the spec.
    assert env["KUBEGATE_MASTER_KEY_SHA256"]["value"] == "c" * 64
    assert env["KUBEGATE_PII_HASH_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "main-kubegate-pii", "key": "hash-key"}
    assert env["KUBEGATE_AUDIT_STREAM_MAXLEN"]["value"] == "1000000"
    assert env["KUBEGATE_AUDIT_SPOOL_MAX"]["value"] == "100000"
    # The master key Secret is missing (no hash): neither variable, so the pods still start with admin routes closed.
    closed = _children(spec)["Deployment/main-proxy"]["spec"]["template"]["spec"]["containers"][0]["env"]
    assert not {"LITELLM_MASTER_KEY", "KUBEGATE_MASTER_KEY_SHA256"} & {e["name"] for e in closed}
    api_vars = [e for e in env.values() if e["name"].startswith("KG_KEY_")]
    assert api_vars[0]["valueFrom"]["secretKeyRef"] == {"name": "up", "key": "k"}
    config = yaml.safe_load(children["ConfigMap/main-litellm-config"]["data"]["config.yaml"])
    assert config["model_list"][0]["litellm_params"]["api_key"] == f"os.environ/{api_vars[0]['name']}"
    assert len(dep["spec"]["template"]["metadata"]["annotations"][CHECKSUM_ANNOTATION]) == 64
    assert dep["spec"]["replicas"] == 2
    assert "HorizontalPodAutoscaler/main-proxy" not in children


def test_external_redis_has_no_managed_redis():
    children = _children({"redis": {"mode": "external", "urlSecretRef": {"name": "r", "key": "url"}}})
    assert "StatefulSet/main-redis" not in children
    env = {e["name"]: e for e in children["Deployment/main-proxy"]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["KUBEGATE_REDIS_URL"]["valueFrom"]["secretKeyRef"]["name"] == "r"


def test_policy_of_1000_tenants_and_1000_budgets_fits_a_configmap():
    tenants = [
        crd.Tenant.model_validate(
            {
                "metadata": {"name": f"tenant-{i:04d}"},
                "spec": {"gateway": "main", "allowedModels": ["m"], "allowedRegions": ["eu-west-1"], "pii": {}},
            }
        )
        for i in range(1000)
    ]
    budgets = [
        crd.Budget.model_validate(
            {"metadata": {"name": f"budget-{i:04d}"}, "spec": {"tenant": f"tenant-{i:04d}", "limitUSD": "100"}}
        )
        for i in range(1000)
    ]
    keys = {t.metadata.name: [hash_key(secrets.token_hex(16))] for t in tenants}
    gw = _gateway()
    rendered = render_gateway(
        crd.LLMGateway.model_validate(gw), [_route()], tenants, budgets, tenant_key_hashes=keys, revision=9
    )
    cm = build_policy_configmap(gw, rendered.policy, SIGNER)
    blob = base64.b64decode(cm["binaryData"][POLICY_KEY])
    assert len(json.dumps(cm)) < 1024 * 1024
    policy = parse_policy(gzip.decompress(SIGNER.verifier().open(blob)))
    assert len(policy.tenants) == 1000 and len(policy.budgets) == 1000
    # Same policy, same bytes: an unchanged reconcile has nothing to write.
    assert build_policy_configmap(gw, rendered.policy, SIGNER) == cm


def test_tenant_key_secret_holds_the_key_and_is_owned_by_the_tenant():
    tenant = {
        "apiVersion": crd.API_VERSION,
        "kind": "Tenant",
        "metadata": {"name": "t", "namespace": "ns", "uid": UID},
        "spec": {"gateway": "main"},
    }
    key = new_tenant_key()
    assert key != new_tenant_key()
    secret = build_tenant_key_secret(tenant, key)
    assert base64.b64decode(secret["data"][KEY_FIELD]).decode() == key
    assert secret["metadata"]["ownerReferences"][0]["kind"] == "Tenant"


def _proxy_container(spec: dict | None = None, api_key_env: dict | None = None) -> tuple[dict, dict]:
    dep = build_proxy_deployment(_gateway(spec), api_key_env or {}, "c" * 64, policy_public_key=SIGNER.public_key_b64)
    pod = dep["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    return container, pod


def test_proxy_env_carries_every_shipped_proxy_setting_in_a_stable_order():
    container, _ = _proxy_container()
    env = {e["name"]: e.get("value") for e in container["env"]}
    # kubegate dev and the operator's proxies run with the same settings (uvicorn's 5 s worker health check
    # killed multi-worker proxies still importing LiteLLM, in a loop).
    for name, value in proxy_defaults.ENV.items():
        assert env[name] == value, name
    assert env["TIMEOUT_WORKER_HEALTHCHECK"] == "120"

    refs = {"KG_KEY_B": crd.SecretKeyRef(name="b", key="k"), "KG_KEY_A": crd.SecretKeyRef(name="a", key="k")}
    spec = {"masterKeySecretRef": {"name": "mk", "key": "key"}}
    first, _ = _proxy_container(spec, refs)
    again, _ = _proxy_container(spec, dict(reversed(refs.items())))
    assert first["env"] == again["env"], "the env must not depend on the order Secrets were found in"
    plain = [e["name"] for e in first["env"] if "value" in e]
    from_secrets = [e["name"] for e in first["env"] if "valueFrom" in e]
    assert plain == sorted(plain) and from_secrets == sorted(from_secrets)
    assert first["env"] == [*(e for e in first["env"] if "value" in e), *(e for e in first["env"] if "valueFrom" in e)]


def test_multi_worker_proxy_gets_a_prometheus_multiprocess_dir():
    single, pod = _proxy_container({"workers": 1})
    assert "PROMETHEUS_MULTIPROC_DIR" not in {e["name"] for e in single["env"]}
    assert [m["mountPath"] for m in single["volumeMounts"] if m["name"] not in ("config", "policy")] == ["/tmp"]
    assert len(pod["volumes"]) == 3

    multi, pod = _proxy_container({"workers": 4})
    (directory,) = [e["value"] for e in multi["env"] if e["name"] == "PROMETHEUS_MULTIPROC_DIR"]
    (mount,) = [m for m in multi["volumeMounts"] if m["mountPath"] == directory]
    assert not mount.get("readOnly")
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    assert volume["emptyDir"]["medium"] == "Memory"  # counts against the pod's memory: keep it bounded
    assert volume["emptyDir"]["sizeLimit"]
    assert multi["args"][multi["args"].index("--num_workers") + 1] == "4"


def test_workers_default_to_one_per_requested_cpu():
    def workers(spec: dict) -> str:
        container, _ = _proxy_container(spec)
        return container["args"][container["args"].index("--num_workers") + 1]

    assert workers({}) == "1"  # the default request, 500m
    assert workers({"resources": {"requests": {"cpu": "2"}}}) == "2"
    assert workers({"resources": {"requests": {"cpu": "3500m"}}}) == "3"
    assert workers({"resources": {"requests": {"cpu": "250m"}}}) == "1"
    assert workers({"resources": {"requests": {"memory": "1Gi"}}}) == "1"  # no CPU request: one
    assert workers({"resources": {"requests": {"cpu": "200"}}}) == "64"
    assert workers({"workers": 3, "resources": {"requests": {"cpu": "1"}}}) == "3"  # an explicit count wins
    multi, _ = _proxy_container({"resources": {"requests": {"cpu": "2"}}})
    assert "PROMETHEUS_MULTIPROC_DIR" in {e["name"] for e in multi["env"]}


def test_tracing_renders_the_standard_otel_variables_and_keeps_the_headers_in_their_secret():
    off, _ = _proxy_container()
    assert not [e["name"] for e in off["env"] if e["name"].startswith("OTEL_")], "no tracing unless asked for"

    tracing = {"otlpEndpoint": "http://collector.obs:4318/", "sampleRatio": 0.1}
    on, _ = _proxy_container({"tracing": {**tracing, "headersSecretRef": {"name": "otel", "key": "headers"}}})
    env = {e["name"]: e for e in on["env"]}
    assert env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]["value"] == "http://collector.obs:4318/v1/traces"
    assert env["OTEL_TRACES_SAMPLER"]["value"] == "parentbased_traceidratio"
    assert env["OTEL_TRACES_SAMPLER_ARG"]["value"] == "0.1"
    assert env["OTEL_SERVICE_NAME"]["value"] == "main-proxy"
    # A collector token is a credential: by reference only, never a plain value in the pod spec.
    assert env["OTEL_EXPORTER_OTLP_TRACES_HEADERS"] == {
        "name": "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
        "valueFrom": {"secretKeyRef": {"name": "otel", "key": "headers"}},
    }
    # The platform's own OTEL_* convention wins over the rendered one (spec.pod.env replaces by name).
    tuned, _ = _proxy_container({"tracing": tracing, "pod": {"env": [{"name": "OTEL_SERVICE_NAME", "value": "llm"}]}})
    assert [e.get("value") for e in tuned["env"] if e["name"] == "OTEL_SERVICE_NAME"] == ["llm"]
    with pytest.raises(ValueError, match="otlpEndpoint"):
        crd.LLMGatewaySpec.model_validate({"tracing": {"otlpEndpoint": "collector:4318"}})


def test_proxy_container_is_restricted_as_the_image_user():
    container, pod = _proxy_container()
    sc = container["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert sc["runAsNonRoot"] is True
    assert isinstance(sc["runAsUser"], int) and sc["runAsUser"] > 0 and isinstance(sc["runAsGroup"], int)
    # Read-only root, /tmp writable (audit spool, temp files): tests/operator/test_proxy_read_only_root.py runs it.
    assert sc["readOnlyRootFilesystem"] is True
    (tmp,) = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
    assert {"name": tmp["name"], "emptyDir": {}} in pod["volumes"]


def test_managed_redis_runs_as_the_official_image_user_on_a_read_only_root():
    children = _children()
    pod = children["StatefulSet/main-redis"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == crd.REDIS_IMAGE
    assert re.fullmatch(r"redis:7\.4-alpine@sha256:[0-9a-f]{64}", container["image"])
    sc = container["securityContext"]
    assert (sc["runAsUser"], sc["runAsGroup"]) == (999, 1000)  # the official alpine image's redis user
    assert sc["runAsNonRoot"] is True and sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]} and sc["allowPrivilegeEscalation"] is False
    (data,) = [m for m in container["volumeMounts"] if m["mountPath"] == "/data"]  # its working directory
    claims = children["StatefulSet/main-redis"]["spec"]["volumeClaimTemplates"]
    assert [c["metadata"]["name"] for c in claims] == [data["name"]]  # on the claim, the only writable path

    # Another image's user and start-up writes are unknown: only what cannot break it.
    other = _children({"redis": {"image": "docker.io/bitnami/redis:7.4"}})
    (container,) = other["StatefulSet/main-redis"]["spec"]["template"]["spec"]["containers"]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    mirrored = _children({"redis": {"image": "mirror.example.com/library/redis:7.4-alpine"}})
    (container,) = mirrored["StatefulSet/main-redis"]["spec"]["template"]["spec"]["containers"]
    assert container["securityContext"]["runAsUser"] == 999


def test_scale_summary_is_what_the_operator_asks_for():
    fixed = crd.LLMGatewaySpec.model_validate({"replicas": 3, "autoscaling": {"enabled": False}})
    assert scale_summary(fixed) == "3"
    auto = crd.LLMGatewaySpec.model_validate({"autoscaling": {"minReplicas": 2, "maxReplicas": 7}})
    assert scale_summary(auto) == "2-7 (HPA)"


def test_proxy_gets_public_key_namespace_and_secrets_only_by_reference():
    container, pod = _proxy_container()
    env = {e["name"]: e for e in container["env"]}
    assert env["KUBEGATE_POLICY_PUBLIC_KEY"]["value"] == SIGNER.public_key_b64
    assert env["KUBEGATE_NAMESPACE"]["value"] == "ns"
    # No credentials in any plain value: the Redis password and the audit key come from the Gateway's Secrets.
    assert env["KUBEGATE_REDIS_URL"]["value"] == "redis://main-redis:6379/0"
    assert env["KUBEGATE_REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "main-kubegate-redis",
        "key": "password",
    }
    assert env["KUBEGATE_AUDIT_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "main-kubegate-audit-key",
        "key": "audit-key",
    }
    # The signing keys themselves never reach the proxies (policies; the audit log's checkpoints).
    assert "policy-signing" not in json.dumps(pod) and "audit-log-signing" not in json.dumps(pod)


def test_external_redis_takes_url_and_password_from_the_users_secrets():
    spec = {
        "redis": {
            "mode": "external",
            "urlSecretRef": {"name": "ext", "key": "url"},
            "passwordSecretRef": {"name": "ext", "key": "password"},
        }
    }
    container, _ = _proxy_container(spec)
    env = {e["name"]: e for e in container["env"]}
    assert env["KUBEGATE_REDIS_URL"]["valueFrom"]["secretKeyRef"] == {"name": "ext", "key": "url"}
    assert env["KUBEGATE_REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "ext", "key": "password"}
    children = _children(spec)
    assert "StatefulSet/main-redis" not in children and "NetworkPolicy/main-redis" not in children


def test_managed_redis_is_a_statefulset_with_a_claim_of_the_requested_size_and_class():
    spec = {"redis": {"persistence": {"size": "20Gi", "storageClassName": "fast-ssd"}}}
    sts = _children(spec)["StatefulSet/main-redis"]["spec"]
    (claim,) = sts["volumeClaimTemplates"]
    assert claim["spec"] == {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": "20Gi"}},
        "storageClassName": "fast-ssd",
    }
    assert sts["serviceName"] == "main-redis" and sts["replicas"] == 1
    assert sts["persistentVolumeClaimRetentionPolicy"]["whenDeleted"] == "Retain"
    assert sts["template"]["spec"]["securityContext"]["fsGroup"] == 1000
    assert "volumes" not in sts["template"]["spec"]


def test_network_policies_fence_redis_and_expose_only_the_api_port():
    children = _children({"port": 8080, "networkPolicy": {"operatorNamespace": "platform"}})
    proxy = children["NetworkPolicy/main-proxy"]["spec"]
    assert proxy["podSelector"]["matchLabels"] == {"kubegate.dev/gateway": "main", "kubegate.dev/component": "proxy"}
    assert proxy["ingress"] == [{"ports": [{"protocol": "TCP", "port": 8080}, {"protocol": "TCP", "port": 9464}]}]
    rds = children["NetworkPolicy/main-redis"]["spec"]
    assert rds["podSelector"]["matchLabels"] == {"kubegate.dev/gateway": "main", "kubegate.dev/component": "redis"}
    (rule,) = rds["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 6379}]
    proxies, operator = rule["from"]
    assert proxies == {
        "podSelector": {"matchLabels": {"kubegate.dev/gateway": "main", "kubegate.dev/component": "proxy"}}
    }
    assert operator["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "platform"}
    assert operator["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "operator"
    assert not any(k.startswith("NetworkPolicy/") for k in _children({"networkPolicy": {"enabled": False}}))


def test_policy_configmap_is_signed_and_refused_when_altered():
    gw = _gateway()
    rendered = render_gateway(crd.LLMGateway.model_validate(gw), [_route()], [], [], tenant_key_hashes={}, revision=3)
    blob = bytearray(base64.b64decode(build_policy_configmap(gw, rendered.policy, SIGNER)["binaryData"][POLICY_KEY]))
    assert parse_policy(gzip.decompress(SIGNER.verifier().open(bytes(blob)))).namespace == "ns"
    blob[-1] ^= 1
    with pytest.raises(PolicySignatureError):
        SIGNER.verifier().open(bytes(blob))
    with pytest.raises(PolicySignatureError):
        PolicySigner.generate().verifier().open(
            base64.b64decode(build_policy_configmap(gw, rendered.policy, SIGNER)["binaryData"][POLICY_KEY])
        )
