"""The managed Redis's volume grows with its Gateway's caps, against the real API server (#26 item 0).

A StatefulSet's volumeClaimTemplates cannot change, yet the claim's size is derived from spec.audit.streamMaxLen and
spec.cache.maxTotalBytes. Raising a cap must still roll out the new maxmemory and memory, and grow the existing claim
in place when its StorageClass allows expansion; when it does not, the refusal names the claim and what to do.
"""

from __future__ import annotations

import uuid

import pytest
from gateway_operator.builders.redis import build_redis
from gateway_operator.kube import children
from gateway_operator.kube import client as kube_client
from gateway_operator.reconcile import gateway as gw_reconcile
from kubernetes import client

from tests.operator.test_operator_e2e import GROUP, VERSION, operator_kubeconfig  # noqa: F401

CLAIM = "data-main-redis-0"


def _gateway(ns: str, spec: dict) -> dict:
    return {
        "apiVersion": "kubegate.dev/v1alpha1",
        "kind": "LLMGateway",
        "metadata": {"name": "main", "namespace": ns, "uid": str(uuid.uuid4())},
        "spec": spec,
    }


def _redis_objects(ns: str, stream_max_len: int, storage_class: str, ha: dict | None = None) -> list[dict]:
    spec = {
        "audit": {"streamMaxLen": stream_max_len},
        "redis": {"persistence": {"storageClassName": storage_class}, **({"highAvailability": ha} if ha else {})},
    }
    built = build_redis(_gateway(ns, spec))
    for obj in built:
        obj["metadata"].pop("ownerReferences")  # no LLMGateway object in this test
    return built


def _maxmemory_of(built: list[dict]) -> str:
    args = built[0]["spec"]["template"]["spec"]["containers"][0]["args"]
    return args[args.index("--maxmemory") + 1]


def _maxmemory(statefulset) -> str:
    args = statefulset.spec.template.spec.containers[0].args
    return args[args.index("--maxmemory") + 1]


@pytest.fixture
def storage(admin_api):
    """(StorageClass name, make a bound claim) with or without allowVolumeExpansion; a static PV per claim (no
    provisioner runs here), bound by the controller-manager's binder."""
    storage_api, core = client.StorageV1Api(admin_api), client.CoreV1Api(admin_api)
    made: list[tuple[str, str]] = []

    def make(expandable: bool, ns: str) -> str:
        name = f"kg-{uuid.uuid4().hex[:8]}"
        storage_api.create_storage_class(
            client.V1StorageClass(
                metadata=client.V1ObjectMeta(name=name),
                provisioner="kubegate.dev/none",
                allow_volume_expansion=expandable,
                volume_binding_mode="Immediate",
            )
        )
        core.create_persistent_volume(
            client.V1PersistentVolume(
                metadata=client.V1ObjectMeta(name=name),
                spec=client.V1PersistentVolumeSpec(
                    capacity={"storage": "10Gi"},
                    access_modes=["ReadWriteOnce"],
                    storage_class_name=name,
                    host_path=client.V1HostPathVolumeSource(path=f"/tmp/{name}"),
                    claim_ref=client.V1ObjectReference(namespace=ns, name=CLAIM),
                ),
            )
        )
        made.append((name, name))
        return name

    yield make
    for sc, pv in made:
        core.delete_persistent_volume(pv)
        storage_api.delete_storage_class(sc)


def _bound_claim(core, ns: str, storage_class: str) -> None:
    """The claim the StatefulSet controller would create for ordinal 0 (created here: no pod ever starts), bound to
    its volume as the binder would (no persistentvolume-binder runs here)."""
    core.create_namespaced_persistent_volume_claim(
        ns,
        client.V1PersistentVolumeClaim(
            metadata=client.V1ObjectMeta(name=CLAIM),
            spec=client.V1PersistentVolumeClaimSpec(
                access_modes=["ReadWriteOnce"],
                storage_class_name=storage_class,
                volume_name=storage_class,
                resources=client.V1VolumeResourceRequirements(requests={"storage": "1Gi"}),
            ),
        ),
    )
    status = {"status": {"phase": "Bound", "accessModes": ["ReadWriteOnce"], "capacity": {"storage": "1Gi"}}}
    core.patch_namespaced_persistent_volume_claim_status(CLAIM, ns, status)


def test_raising_the_stream_cap_rolls_out_maxmemory_and_grows_the_claim(admin_api, namespace, storage):
    core, apps = client.CoreV1Api(admin_api), client.AppsV1Api(admin_api)
    storage_class = storage(True, namespace)
    small = _redis_objects(namespace, 1000, storage_class)
    assert small[0]["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"] == {"storage": "1Gi"}
    children.sync(admin_api, small, verify=False)
    _bound_claim(core, namespace, storage_class)

    large = _redis_objects(namespace, 1_000_000, storage_class)
    assert large[0]["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"] == {"storage": "5Gi"}
    written = children.sync(admin_api, large, verify=False)
    assert "StatefulSet/main-redis" in written

    live = apps.read_namespaced_stateful_set("main-redis", namespace)
    wanted = large[0]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert _maxmemory(live) == wanted[wanted.index("--maxmemory") + 1] != _maxmemory_of(small)
    assert live.spec.template.spec.containers[0].resources.limits["memory"] == "1790Mi"
    # The template keeps the size it was created with (immutable); the claim itself grew.
    assert live.spec.volume_claim_templates[0].spec.resources.requests == {"storage": "1Gi"}
    claim = core.read_namespaced_persistent_volume_claim(CLAIM, namespace)
    assert claim.spec.resources.requests == {"storage": "5Gi"}
    # Applied once: the same objects again write nothing.
    assert children.sync(admin_api, large, verify=False) == []
    # Another StorageClass is not a size: refused with the API server's own message, as before.
    with pytest.raises(children.ChildRejected) as err:
        children.sync(admin_api, _redis_objects(namespace, 1_000_000, "other-class"), verify=False)
    assert "Forbidden" in err.value.failed["StatefulSet/main-redis"]


def test_a_claim_that_cannot_grow_is_named_and_the_rest_is_applied(admin_api, namespace, storage):
    core, apps = client.CoreV1Api(admin_api), client.AppsV1Api(admin_api)
    storage_class = storage(False, namespace)
    children.sync(admin_api, _redis_objects(namespace, 1000, storage_class), verify=False)
    _bound_claim(core, namespace, storage_class)

    large = _redis_objects(namespace, 1_000_000, storage_class)
    with pytest.raises(children.ChildRejected) as err:
        children.sync(admin_api, large, verify=False)
    message = err.value.failed["StatefulSet/main-redis"]
    assert f"PersistentVolumeClaim {CLAIM} (1Gi) cannot grow to 5Gi" in message, message
    assert "allowVolumeExpansion" in message
    assert err.value.written == []  # the Service is unchanged
    # The new memory and maxmemory are applied all the same.
    live = apps.read_namespaced_stateful_set("main-redis", namespace)
    assert live.spec.template.spec.containers[0].resources.limits["memory"] == "1790Mi"
    assert core.read_namespaced_persistent_volume_claim(CLAIM, namespace).spec.resources.requests == {"storage": "1Gi"}


def test_an_override_too_small_for_the_caps_is_ready_false_and_leaves_the_redis_as_applied(
    operator_kubeconfig,  # noqa: F811
    admin_api,
    namespace,
    monkeypatch,
):
    """The operator's own reconcile, as its ServiceAccount: InvalidSpec naming the fields, nothing re-applied."""
    monkeypatch.setenv("KUBECONFIG", operator_kubeconfig)
    kube_client.reset()
    custom, apps = client.CustomObjectsApi(admin_api), client.AppsV1Api(admin_api)

    def ready() -> dict:
        gw = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "llmgateways", "main")
        return next(c for c in gw["status"]["conditions"] if c["type"] == "Ready")

    def redis_memory() -> str:
        live = apps.read_namespaced_stateful_set("main-redis", namespace)
        return live.spec.template.spec.containers[0].resources.limits["memory"]

    gateway = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "LLMGateway", "metadata": {"name": "main"}, "spec": {}}
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "llmgateways", gateway)
    try:
        gw_reconcile.reconcile(namespace, "main")
        assert ready()["status"] == "True" and redis_memory() == "1790Mi"

        patch = {"spec": {"redis": {"resources": {"memory": "512Mi"}}}}
        custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, "llmgateways", "main", patch)
        gw_reconcile.reconcile(namespace, "main")
        cond = ready()
        assert (cond["status"], cond["reason"]) == ("False", "InvalidSpec")
        for field in ("spec.redis.resources.memory", "spec.audit.streamMaxLen", "spec.cache.maxTotalBytes"):
            assert field in cond["message"], cond["message"]
        assert "set at least 1790Mi" in cond["message"]
        assert redis_memory() == "1790Mi"  # left as last applied

        # Lowering the cap makes the same memory enough.
        patch = {"spec": {"audit": {"streamMaxLen": 100_000}}}
        custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, "llmgateways", "main", patch)
        gw_reconcile.reconcile(namespace, "main")
        assert ready()["status"] == "True" and redis_memory() == "512Mi"
    finally:
        kube_client.reset()


def test_making_the_managed_redis_highly_available_keeps_its_claim_and_pod(admin_api, namespace, storage):
    """The HA group needs its own governing Service and parallel pods, fields a StatefulSet never lets change: the
    operator replaces the StatefulSet orphaning its pod, the new one adopts it, and the claim (the data) stays."""
    core, apps = client.CoreV1Api(admin_api), client.AppsV1Api(admin_api)
    storage_class = storage(True, namespace)
    children.sync(admin_api, _redis_objects(namespace, 1000, storage_class), verify=False)
    _bound_claim(core, namespace, storage_class)
    claim_uid = core.read_namespaced_persistent_volume_claim(CLAIM, namespace).metadata.uid
    old = apps.read_namespaced_stateful_set("main-redis", namespace)
    _controlled_pod(core, namespace, old)

    ha = _redis_objects(namespace, 1000, storage_class, ha={"replicas": 3})
    written = children.sync(admin_api, ha, verify=False)
    assert {"StatefulSet/main-redis", "Service/main-redis-nodes", "PodDisruptionBudget/main-redis"} <= set(written)
    new = apps.read_namespaced_stateful_set("main-redis", namespace)
    assert new.metadata.uid != old.metadata.uid
    assert (new.spec.service_name, new.spec.pod_management_policy, new.spec.replicas) == (
        "main-redis-nodes",
        "Parallel",
        3,
    )
    assert core.read_namespaced_persistent_volume_claim(CLAIM, namespace).metadata.uid == claim_uid
    # The pod was orphaned, not deleted: the new StatefulSet's controller adopts it and rolls it to the new template
    # (no StatefulSet controller runs here; its adoption of orphans is Kubernetes's own).
    assert _pod_owner(core, namespace) is None
    assert children.sync(admin_api, ha, verify=False) == []


def _controlled_pod(core, ns: str, statefulset) -> None:
    """Pod 0 as the StatefulSet controller would create it (none runs here), under the StatefulSet's control."""
    owner = client.V1OwnerReference(
        api_version="apps/v1",
        kind="StatefulSet",
        name=statefulset.metadata.name,
        uid=statefulset.metadata.uid,
        controller=True,
        block_owner_deletion=True,
    )
    core.create_namespaced_pod(
        ns,
        client.V1Pod(
            metadata=client.V1ObjectMeta(
                name="main-redis-0", labels=statefulset.spec.selector.match_labels, owner_references=[owner]
            ),
            spec=client.V1PodSpec(containers=[client.V1Container(name="redis", image="redis")]),
        ),
    )


def _pod_owner(core, ns: str) -> str | None:
    pod = core.read_namespaced_pod("main-redis-0", ns)  # 404 if deleted with its StatefulSet
    refs = [r for r in pod.metadata.owner_references or [] if r.controller]
    return refs[0].uid if refs else None
