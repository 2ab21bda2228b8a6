"""Helm tests reuse the operator tests' session control plane (a real kube-apiserver + etcd).

A star import: the fixtures there depend on each other (e.g. the control plane on its audit directory), and
naming them one by one here broke every time one was added.
"""

from tests.operator.conftest import *  # noqa: F403
