"""What the proxy and Redis Deployments carry, as the real API server stored them, and the Gateway's columns.

The operator runs as its ServiceAccount (rbac.RULES). No kubelet runs here, so the pods never start: these checks
prove the API server accepts the hardened pod specs (security contexts, memory-backed emptyDir) and keeps them as
built, and that ``kubectl get llmgateways`` shows the replica setting and workers the operator applied.
"""

from __future__ import annotations

from gateway_operator.builders.proxy import MULTIPROC_DIR
from gateway_operator.crd import models as crd
from kubernetes import client

from gateway_plugins import proxy_defaults
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

        redis = apps.read_namespaced_deployment("main-redis", namespace).spec.template.spec
        (container,) = redis.containers
        assert container.image == crd.REDIS_IMAGE
        sc = container.security_context
        assert (sc.run_as_user, sc.run_as_group, sc.read_only_root_filesystem) == (999, 1000, True)

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
