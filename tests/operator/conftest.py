"""Fixtures that run operator tests against a real kube-apiserver + etcd (+ controller-manager)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.harness.controlplane import ControlPlane, ensure_binaries


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    """One control plane per test run; the first run on a machine also builds the binaries."""
    cp = ControlPlane(ensure_binaries(), controller_manager=True)
    cp.start()
    try:
        yield cp
    finally:
        cp.stop()


@pytest.fixture
def admin_api(control_plane: ControlPlane) -> Iterator[client.ApiClient]:
    """ApiClient authenticated as a cluster admin (system:masters)."""
    with control_plane.admin_api_client() as api_client:
        yield api_client


@pytest.fixture
def namespace(admin_api: client.ApiClient) -> Iterator[str]:
    """A fresh namespace per test, deleted afterwards (the namespace controller empties it)."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    core = client.CoreV1Api(admin_api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    try:
        core.delete_namespace(name)
    except ApiException as exc:
        if exc.status != 404:
            raise
