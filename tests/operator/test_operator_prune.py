"""Children a Gateway no longer renders are deleted, as the operator's ServiceAccount, on the real API server.

Turning autoscaling off must remove the HPA (left behind, it keeps scaling the Deployment the Gateway now sizes);
making Redis external removes the managed StatefulSet and its Service (its data volume stays); an older release's
``<gw>-redis`` Deployment goes on upgrade. Objects that merely carry the label, without this Gateway as their
controller, and the Gateway's ConfigMaps and Secrets are left alone.
"""

from __future__ import annotations

from gateway_operator.builders.common import LABEL_GATEWAY, owner_reference
from gateway_operator.kube.prune import stale_children
from kubernetes import client

from tests.operator.kopf_runner import running_operator
from tests.operator.test_operator_e2e import GROUP, VERSION, _wait, operator_kubeconfig  # noqa: F401


def _deployment(name: str, labels: dict, owners: list[dict]) -> dict:
    pod = {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "c", "image": "redis:7"}]}}
    return {
        "metadata": {"name": name, "labels": labels, "ownerReferences": owners},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": name}}, "template": pod},
    }


def _exists(read, *args) -> bool:
    try:
        read(*args)
        return True
    except client.ApiException as exc:
        if exc.status == 404:
            return False
        raise


def test_unrendered_children_are_pruned(operator_kubeconfig, admin_api, namespace):  # noqa: F811
    custom = client.CustomObjectsApi(admin_api)
    apps = client.AppsV1Api(admin_api)
    core = client.CoreV1Api(admin_api)
    scaling = client.AutoscalingV2Api(admin_api)
    gw = custom.create_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        "llmgateways",
        {"apiVersion": f"{GROUP}/{VERSION}", "kind": "LLMGateway", "metadata": {"name": "main"}, "spec": {}},
    )
    labels = {LABEL_GATEWAY: "main"}
    # What an older release left (the managed Redis as a Deployment), and a look-alike nobody's controller owns.
    apps.create_namespaced_deployment(namespace, _deployment("main-redis", labels, [owner_reference(gw)]))
    apps.create_namespaced_deployment(namespace, _deployment("main-lookalike", labels, []))
    with running_operator(operator_kubeconfig, namespace):
        _wait("the HPA", lambda: _exists(scaling.read_namespaced_horizontal_pod_autoscaler, "main-proxy", namespace))
        _wait(
            "the old Redis Deployment to go",
            lambda: not _exists(apps.read_namespaced_deployment, "main-redis", namespace),
        )
        assert _exists(apps.read_namespaced_stateful_set, "main-redis", namespace)

        custom.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, "llmgateways", "main", {"spec": {"autoscaling": {"enabled": False}}}
        )
        _wait(
            "the HPA to go",
            lambda: not _exists(scaling.read_namespaced_horizontal_pod_autoscaler, "main-proxy", namespace),
        )
        core.create_namespaced_secret(
            namespace, {"metadata": {"name": "ext-redis"}, "string_data": {"url": "redis://x:6379/0"}}
        )
        custom.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            "llmgateways",
            "main",
            {"spec": {"redis": {"mode": "external", "urlSecretRef": {"name": "ext-redis", "key": "url"}}}},
        )
        _wait(
            "the managed Redis to go",
            lambda: (
                not _exists(apps.read_namespaced_stateful_set, "main-redis", namespace)
                and not _exists(core.read_namespaced_service, "main-redis", namespace)
            ),
        )
        # Turned back on, the HPA returns (the operator must not skip it as "already applied").
        custom.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, "llmgateways", "main", {"spec": {"autoscaling": {"enabled": True}}}
        )
        _wait(
            "the HPA again", lambda: _exists(scaling.read_namespaced_horizontal_pod_autoscaler, "main-proxy", namespace)
        )
    assert _exists(apps.read_namespaced_deployment, "main-proxy", namespace)
    assert _exists(apps.read_namespaced_deployment, "main-lookalike", namespace)
    assert _exists(core.read_namespaced_config_map, "main-policy", namespace)


def test_stale_children_needs_this_gateway_as_controller():
    gw = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "LLMGateway", "metadata": {"name": "main", "uid": "u1"}}
    mine = owner_reference(gw)
    other = {**mine, "uid": "u2"}
    not_controller = {**mine, "controller": False}

    def obj(kind: str, name: str, owners: list[dict]) -> dict:
        return {"kind": kind, "metadata": {"name": name, "ownerReferences": owners}}

    desired = [obj("Deployment", "main-proxy", [mine])]
    live = [
        obj("Deployment", "main-proxy", [mine]),  # still rendered
        obj("Deployment", "main-redis", [mine]),  # stale
        obj("Deployment", "x", [other]),  # a namesake Gateway's (re-created: new uid)
        obj("Deployment", "y", [not_controller]),
        obj("Deployment", "z", []),
    ]
    assert [o["metadata"]["name"] for o in stale_children(gw, desired, live)] == ["main-redis"]
