"""The harness runs a real, useful control plane: versioned, RBAC-enforcing, CRD/CEL-validating, GC-ing."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.harness.controlplane import ControlPlane

CRD_GROUP = "harness.kubegate.dev"


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def configmap(name: str, **metadata: Any) -> client.V1ConfigMap:
    return client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name, **metadata), data={"k": "v"})


def test_version_endpoint_reports_pinned_release(control_plane: ControlPlane) -> None:
    response = httpx.get(f"{control_plane.url}/version", verify=control_plane.ssl_context(), timeout=10)
    response.raise_for_status()
    info = response.json()
    assert info["gitVersion"] == "v1.34.4"
    assert (info["major"], info["minor"]) == ("1", "34")


def test_admin_creates_namespace_and_configmap(admin_api: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(admin_api)
    core.create_namespaced_config_map(namespace, configmap("settings"))

    stored = core.read_namespaced_config_map("settings", namespace)
    assert stored.data == {"k": "v"}
    assert stored.metadata.uid  # assigned by the apiserver, i.e. really persisted
    assert namespace in {ns.metadata.name for ns in core.list_namespace().items}


def test_service_account_is_bound_by_rbac(
    control_plane: ControlPlane, admin_api: client.ApiClient, namespace: str
) -> None:
    token = control_plane.token_for_service_account(namespace, "operator")
    with control_plane.api_client_for_token(token) as sa_api:
        sa_core = client.CoreV1Api(sa_api)
        with pytest.raises(ApiException) as denied:
            sa_core.list_namespaced_config_map(namespace)
        assert denied.value.status == 403
        assert f"system:serviceaccount:{namespace}:operator" in str(denied.value.body)

        rbac = client.RbacAuthorizationV1Api(admin_api)
        rbac.create_namespaced_role(
            namespace,
            client.V1Role(
                metadata=client.V1ObjectMeta(name="configmap-reader"),
                rules=[client.V1PolicyRule(api_groups=[""], resources=["configmaps"], verbs=["get", "list"])],
            ),
        )
        rbac.create_namespaced_role_binding(
            namespace,
            client.V1RoleBinding(
                metadata=client.V1ObjectMeta(name="operator-reads-configmaps"),
                role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role", name="configmap-reader"),
                subjects=[client.RbacV1Subject(kind="ServiceAccount", name="operator", namespace=namespace)],
            ),
        )

        def allowed() -> bool:
            try:
                sa_core.list_namespaced_config_map(namespace)
            except ApiException as exc:
                if exc.status == 403:  # the authorizer's RBAC cache has not caught up yet
                    return False
                raise
            return True

        wait_for(allowed, "the RoleBinding to take effect", timeout=15)
        # Only what the Role grants: still no writes, and nothing cluster-wide.
        with pytest.raises(ApiException) as no_write:
            sa_core.create_namespaced_config_map(namespace, configmap("nope"))
        assert no_write.value.status == 403
        with pytest.raises(ApiException) as no_cluster_list:
            sa_core.list_config_map_for_all_namespaces()
        assert no_cluster_list.value.status == 403


@pytest.fixture
def widget_crd(admin_api: client.ApiClient) -> Iterator[str]:
    """A namespaced CRD with a structural schema and a CEL rule; yields its plural."""
    plural = f"widgets{uuid.uuid4().hex[:6]}"
    name = f"{plural}.{CRD_GROUP}"
    spec_schema = client.V1JSONSchemaProps(
        type="object",
        required=["minReplicas", "maxReplicas"],
        properties={
            "minReplicas": client.V1JSONSchemaProps(type="integer", minimum=0),
            "maxReplicas": client.V1JSONSchemaProps(type="integer"),
        },
        x_kubernetes_validations=[
            client.V1ValidationRule(
                rule="self.minReplicas <= self.maxReplicas",
                message="minReplicas must not exceed maxReplicas",
                field_path=".minReplicas",
            )
        ],
    )
    crd = client.V1CustomResourceDefinition(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1CustomResourceDefinitionSpec(
            group=CRD_GROUP,
            scope="Namespaced",
            names=client.V1CustomResourceDefinitionNames(plural=plural, singular=plural, kind="Widget"),
            versions=[
                client.V1CustomResourceDefinitionVersion(
                    name="v1",
                    served=True,
                    storage=True,
                    schema=client.V1CustomResourceValidation(
                        open_apiv3_schema=client.V1JSONSchemaProps(
                            type="object", properties={"spec": spec_schema}, required=["spec"]
                        )
                    ),
                )
            ],
        ),
    )
    ext = client.ApiextensionsV1Api(admin_api)
    ext.create_custom_resource_definition(crd)

    def established() -> bool:
        conditions = ext.read_custom_resource_definition(name).status.conditions or []
        return any(c.type == "Established" and c.status == "True" for c in conditions)

    wait_for(established, f"CRD {name} to be Established")
    yield plural
    ext.delete_custom_resource_definition(name)


def test_crd_schema_and_cel_rule_are_enforced(admin_api: client.ApiClient, namespace: str, widget_crd: str) -> None:
    objects = client.CustomObjectsApi(admin_api)

    def widget(name: str, spec: dict[str, Any]) -> dict[str, Any]:
        return {"apiVersion": f"{CRD_GROUP}/v1", "kind": "Widget", "metadata": {"name": name}, "spec": spec}

    def create(body: dict[str, Any]) -> dict[str, Any]:
        return objects.create_namespaced_custom_object(CRD_GROUP, "v1", namespace, widget_crd, body)

    # Established can precede the REST endpoint being served by a moment.
    def served() -> bool:
        try:
            create(widget("good", {"minReplicas": 1, "maxReplicas": 3}))
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    wait_for(served, "the custom resource endpoint")
    stored = objects.get_namespaced_custom_object(CRD_GROUP, "v1", namespace, widget_crd, "good")
    assert stored["spec"] == {"minReplicas": 1, "maxReplicas": 3}

    with pytest.raises(ApiException) as cel:
        create(widget("inverted", {"minReplicas": 5, "maxReplicas": 2}))
    assert cel.value.status == 422
    assert "spec.minReplicas" in cel.value.body
    assert "minReplicas must not exceed maxReplicas" in cel.value.body

    with pytest.raises(ApiException) as schema:
        create(widget("negative", {"minReplicas": -1, "maxReplicas": 2}))
    assert schema.value.status == 422
    assert "spec.minReplicas" in schema.value.body


def test_garbage_collector_deletes_owned_objects(
    control_plane: ControlPlane, admin_api: client.ApiClient, namespace: str
) -> None:
    if not control_plane.with_controller_manager:
        pytest.skip("garbage collection needs kube-controller-manager")
    core = client.CoreV1Api(admin_api)
    owner = core.create_namespaced_config_map(namespace, configmap("owner"))
    owner_ref = client.V1OwnerReference(api_version="v1", kind="ConfigMap", name="owner", uid=owner.metadata.uid)
    core.create_namespaced_config_map(namespace, configmap("child", owner_references=[owner_ref]))
    core.create_namespaced_config_map(namespace, configmap("bystander"))

    core.delete_namespaced_config_map("owner", namespace)

    def child_gone() -> bool:
        try:
            core.read_namespaced_config_map("child", namespace)
        except ApiException as exc:
            if exc.status == 404:
                return True
            raise
        return False

    wait_for(child_gone, "the garbage collector to delete the owned ConfigMap", timeout=60)
    assert core.read_namespaced_config_map("bystander", namespace).metadata.name == "bystander"
