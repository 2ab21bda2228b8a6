"""What the proxy and Redis Deployments carry, as the real API server stored them, and the Gateway's columns.

The operator runs as its ServiceAccount (rbac.RULES). No kubelet runs here, so the pods never start: these checks
prove the API server accepts the hardened pod specs (security contexts, memory-backed emptyDir) and keeps them as
built, and that ``kubectl get llmgateways`` shows the replica setting and workers the operator applied.
"""

from __future__ import annotations

import base64
import gzip

import pytest
from gateway_operator.builders.proxy import MULTIPROC_DIR
from gateway_operator.crd import models as crd
from kubernetes import client

from gateway_plugins.policy import proxy_defaults
from gateway_plugins.policy.schema import parse_policy
from gateway_plugins.policy.signing import PolicySignatureError, PolicySigner, PolicyVerifier
from tests.operator.kopf_runner import running_operator
from tests.operator.test_operator_e2e import GROUP, VERSION, _wait, operator_kubeconfig  # noqa: F401
from tests.operator.test_operator_status import _table_row


def _gateway(spec: dict) -> dict:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "LLMGateway", "metadata": {"name": "main"}, "spec": spec}


def _status(custom, ns: str) -> dict:
    return custom.get_namespaced_custom_object(GROUP, VERSION, ns, "llmgateways", "main").get("status") or {}


def test_hardened_children_stored_as_built_and_gateway_columns(operator_kubeconfig, admin_api, namespace):  # noqa: F811
    custom = client.CustomObjectsApi(admin_api)
    apps = client.AppsV1Api(admin_api)
    spec = {"workers": 2, "replicas": 3, "autoscaling": {"enabled": False}}
    with running_operator(operator_kubeconfig, namespace):
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "llmgateways", _gateway(spec))
        _wait("Gateway status.scale", lambda: _status(custom, namespace).get("scale"))
        row = _table_row(admin_api, namespace, "llmgateways", "main")
        assert (row["Replicas"], row["Workers"]) == ("3", 2), row

        proxy = apps.read_namespaced_deployment("main-proxy", namespace).spec.template.spec
        (container,) = proxy.containers
        env = {e.name: e.value for e in container.env}
        assert {k: env.get(k) for k in proxy_defaults.ENV} == proxy_defaults.ENV
        assert env["KUBEGATE_POLICY_PUBLIC_KEY"] == _status(custom, namespace)["policyPublicKey"]
        assert env["PROMETHEUS_MULTIPROC_DIR"] == MULTIPROC_DIR
        mounts = {m.mount_path: m.name for m in container.volume_mounts}
        volumes = {v.name: v for v in proxy.volumes}
        assert volumes[mounts[MULTIPROC_DIR]].empty_dir.medium == "Memory"
        assert volumes[mounts[MULTIPROC_DIR]].empty_dir.size_limit
        assert volumes[mounts["/tmp"]].empty_dir is not None
        sc = container.security_context
        assert (sc.run_as_user, sc.run_as_group, sc.run_as_non_root) == (65532, 65532, True)
        assert sc.read_only_root_filesystem is True
        assert sc.capabilities.drop == ["ALL"] and sc.allow_privilege_escalation is False
        assert sc.seccomp_profile.type == "RuntimeDefault"

        redis_set = apps.read_namespaced_stateful_set("main-redis", namespace).spec
        redis = redis_set.template.spec
        (container,) = redis.containers
        assert container.image == crd.REDIS_IMAGE
        sc = container.security_context
        assert (sc.run_as_user, sc.run_as_group, sc.read_only_root_filesystem) == (999, 1000, True)
        assert redis.security_context.fs_group == 1000
        (claim,) = redis_set.volume_claim_templates
        # Sized from the default caps (gateway_operator.builders.redis_sizing); Guaranteed QoS.
        assert claim.spec.resources.requests == {"storage": "5Gi"}
        assert container.resources.requests == container.resources.limits == {"cpu": "1", "memory": "1790Mi"}
        assert "--maxmemory-policy" in container.args
        password_ref = next(e for e in container.env if e.name == "REDIS_PASSWORD").value_from.secret_key_ref
        assert (password_ref.name, password_ref.key) == ("main-kubegate-redis", "password")

        # Autoscaling on: the column shows the HPA's bounds; one worker: no multiprocess directory.
        patch = {"spec": {"workers": 1, "autoscaling": {"enabled": True, "minReplicas": 2, "maxReplicas": 5}}}
        custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, "llmgateways", "main", patch)
        _wait("Gateway status.scale with HPA", lambda: _status(custom, namespace).get("scale") == "2-5 (HPA)")
        row = _table_row(admin_api, namespace, "llmgateways", "main")
        assert (row["Replicas"], row["Workers"]) == ("2-5 (HPA)", 1), row

        def single_worker() -> bool:
            pod = apps.read_namespaced_deployment("main-proxy", namespace).spec.template.spec
            mounted = {m.mount_path for m in pod.containers[0].volume_mounts}
            return "PROMETHEUS_MULTIPROC_DIR" not in {e.name for e in pod.containers[0].env} and (
                MULTIPROC_DIR not in mounted and "/tmp" in mounted
            )

        _wait("proxy Deployment without the multiprocess directory", single_worker)


def test_trust_material_and_network_policies_as_the_api_server_stores_them(
    operator_kubeconfig,  # noqa: F811
    admin_api,
    namespace,
):
    """Secrets generated once and owned by the Gateway, the policy ConfigMap signed with the key whose public half
    is in status and in the proxies, NetworkPolicies accepted: all created by the operator as its ServiceAccount."""
    custom = client.CustomObjectsApi(admin_api)
    core = client.CoreV1Api(admin_api)
    net = client.NetworkingV1Api(admin_api)
    with running_operator(operator_kubeconfig, namespace):
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "llmgateways", _gateway({}))
        _wait("Gateway status.policyPublicKey", lambda: _status(custom, namespace).get("policyPublicKey"))
        public = _status(custom, namespace)["policyPublicKey"]
        secrets = {
            name: core.read_namespaced_secret(name, namespace)
            for name in (
                "main-kubegate-policy-signing",
                "main-kubegate-audit-key",
                "main-kubegate-redis",
                "main-kubegate-audit-log-signing",
            )
        }
        for secret in secrets.values():
            assert secret.metadata.owner_references[0].kind == "LLMGateway"
        signing = secrets["main-kubegate-policy-signing"].data
        signer = PolicySigner.from_private_b64(base64.b64decode(signing["ed25519-private-key"]).decode())
        assert signer.public_key_b64 == public
        # The audit log's checkpoint key: its vkey (named after the log's origin) is public, in the status.
        log_vkey = _status(custom, namespace)["auditLogPublicKey"]
        assert base64.b64decode(secrets["main-kubegate-audit-log-signing"].data["vkey"]).decode() == log_vkey
        assert log_vkey.startswith(f"kubegate.dev/{namespace}/main/")
        blob = base64.b64decode(core.read_namespaced_config_map("main-policy", namespace).binary_data["policy.json.gz"])
        policy = parse_policy(gzip.decompress(PolicyVerifier.from_public_b64(public).open(blob)))
        assert (policy.gateway, policy.namespace) == ("main", namespace)
        with pytest.raises(PolicySignatureError):
            PolicySigner.generate().verifier().open(blob)
        policies = {p.metadata.name: p.spec for p in net.list_namespaced_network_policy(namespace).items}
        assert set(policies) == {"main-proxy", "main-redis"}
        assert [p.port for p in policies["main-proxy"].ingress[0].ports] == [4000, 9464]
        assert [p.port for p in policies["main-redis"].ingress[0].ports] == [6379]
        # Generated once: a later reconcile keeps the same key (the proxies' public key does not change).
        versions = {name: s.metadata.resource_version for name, s in secrets.items()}
        patch = {"spec": {"replicas": 3, "autoscaling": {"enabled": False}}}
        custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, "llmgateways", "main", patch)
        _wait("reconciled again", lambda: _status(custom, namespace).get("scale") == "3")
        assert _status(custom, namespace)["policyPublicKey"] == public
        assert _status(custom, namespace)["auditLogPublicKey"] == log_vkey
        assert {n: core.read_namespaced_secret(n, namespace).metadata.resource_version for n in versions} == versions


def test_a_highly_available_managed_redis_as_the_api_server_stores_it(operator_kubeconfig, admin_api, namespace):  # noqa: F811
    """spec.redis.highAvailability: three pods of a data node and a sentinel each, their names from a headless
    Service, one at a time through a drain, reachable from each other; the proxies follow the sentinels."""
    custom, apps, core = client.CustomObjectsApi(admin_api), client.AppsV1Api(admin_api), client.CoreV1Api(admin_api)
    policy = client.PolicyV1Api(admin_api)
    net = client.NetworkingV1Api(admin_api)
    spec = {"redis": {"highAvailability": {"replicas": 3, "replicaAcks": 1}}}
    with running_operator(operator_kubeconfig, namespace):
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "llmgateways", _gateway(spec))
        _wait(
            "the Redis NetworkPolicy (applied after the other children)",
            lambda: net.list_namespaced_network_policy(namespace, field_selector="metadata.name=main-redis").items,
        )
        redis_set = apps.read_namespaced_stateful_set("main-redis", namespace).spec
        assert (redis_set.replicas, redis_set.service_name, redis_set.pod_management_policy) == (
            3,
            "main-redis-nodes",
            "Parallel",
        )
        containers = {c.name: c for c in redis_set.template.spec.containers}
        assert set(containers) == {"redis", "sentinel"}
        for c in containers.values():
            assert c.resources.requests == c.resources.limits  # Guaranteed QoS, like the single Redis
            assert c.security_context.read_only_root_filesystem is True
            assert "$(POD_NAME)" in next(e.value for e in c.env if e.name == "KG_SELF")
        nodes = core.read_namespaced_service("main-redis-nodes", namespace).spec
        assert nodes.cluster_ip == "None" and nodes.publish_not_ready_addresses is True
        assert {p.port for p in nodes.ports} == {6379, 26379}
        assert policy.read_namespaced_pod_disruption_budget("main-redis", namespace).spec.max_unavailable == 1
        # No single-server Service: nothing could reach the primary through it.
        with pytest.raises(client.ApiException):
            core.read_namespaced_service("main-redis", namespace)
        ingress = net.read_namespaced_network_policy("main-redis", namespace).spec.ingress[0]
        assert {p.port for p in ingress.ports} == {6379, 26379}
        assert any(
            (peer.pod_selector.match_labels or {}).get("kubegate.dev/component") == "redis"
            for peer in ingress._from
            if peer.pod_selector
        )

        proxy = apps.read_namespaced_deployment("main-proxy", namespace).spec.template.spec.containers[0]
        env = {e.name: e.value for e in proxy.env}
        hosts = ",".join(f"main-redis-{i}.main-redis-nodes.{namespace}.svc:26379" for i in range(3))
        assert env["KUBEGATE_REDIS_URL"] == f"redis+sentinel://{hosts}/kubegate?sentinel_auth=1"
        assert env["KUBEGATE_REDIS_REPLICA_ACKS"] == "1"
