"""Run the operator in-process (kopf's KopfRunner, standalone) as the test's ServiceAccount, fast loops."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from gateway_operator.kube import client as kube_client
from kopf.testing import KopfRunner

FAST_LOOPS = {"KUBEGATE_BUDGET_REFRESH_SECONDS": "1", "KUBEGATE_RESYNC_SECONDS": "1"}


def operator_user(namespace: str) -> str:
    return f"system:serviceaccount:{namespace}:kubegate-operator"


@contextmanager
def running_operator(kubeconfig: str, namespace: str) -> Iterator[KopfRunner]:
    """The operator for ``namespace``; on exit it must have stopped cleanly, with no RBAC refusal and no traceback."""
    saved = {k: os.environ.get(k) for k in ("KUBECONFIG", *FAST_LOOPS)}
    os.environ.update({"KUBECONFIG": kubeconfig, **FAST_LOOPS})
    kube_client.reset()
    args = ["run", "--standalone", "--namespace", namespace, "-m", "gateway_operator.handlers"]
    try:
        with KopfRunner(args, timeout=90) as runner:
            yield runner
    finally:
        kube_client.reset()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    assert runner.exception is None, runner.output[-3000:]
    assert runner.exit_code == 0, runner.output[-3000:]
    for bad in ("Forbidden", "HTTP 403", "Traceback"):  # not a bare "403": log timestamps have milliseconds
        assert bad not in runner.output, runner.output[-3000:]
