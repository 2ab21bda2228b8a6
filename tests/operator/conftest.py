"""Fixtures that run operator tests against a real kube-apiserver + etcd (+ controller-manager)."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.harness.controlplane import ControlPlane, ensure_binaries
from tests.operator.audit import AuditLog, apiserver_args


@pytest.fixture(scope="session")
def audit_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="kubegate-audit-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def control_plane(audit_dir: Path) -> Iterator[ControlPlane]:
    """One control plane per test run (the first run on a machine also builds the binaries), with an audit log
    of every ServiceAccount write so tests can count the operator's writes exactly."""
    args, _ = apiserver_args(audit_dir)
    cp = ControlPlane(ensure_binaries(), controller_manager=True, extra_apiserver_args=args)
    cp.start()
    try:
        yield cp
    finally:
        cp.stop()


@pytest.fixture(scope="session")
def audit_log(control_plane: ControlPlane, audit_dir: Path) -> AuditLog:
    return AuditLog(apiserver_args(audit_dir)[1])


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
