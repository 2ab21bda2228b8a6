"""Helm tests reuse the operator tests' session control plane (a real kube-apiserver + etcd)."""

from tests.operator.conftest import admin_api, control_plane, namespace  # noqa: F401
