"""Operator at scale on a real kube-apiserver: N Tenants + N Budgets into one Gateway.

Not a test. Prints the time until the policy ConfigMap holds every Tenant and Budget, the API
writes the operator made for it (from the API server's own ``apiserver_request_total``), and,
for one Tenant change afterwards, the latency until the policy shows it and the writes it cost.

Usage: .venv/bin/python bench/bench_operator.py [--tenants 1000]
"""

from __future__ import annotations

import argparse
import base64
import gzip
import json
import os
import re
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
from kubernetes import client  # noqa: E402

from tests.harness.controlplane import ControlPlane  # noqa: E402
from tests.operator.test_crd import _install_crds  # noqa: E402

GROUP, VERSION, NS = "kubegate.dev", "v1alpha1", "bench"
WRITE = re.compile(r"^apiserver_request_total\{([^}]*)\} ([0-9.e+]+)$", re.M)


def say(text: str) -> None:
    # KopfRunner (click's CliRunner) swaps sys.stdout while the operator runs.
    print(text, file=sys.__stdout__, flush=True)


def writes(cp: ControlPlane) -> float:
    """Mutating requests served so far, as counted by the API server itself."""
    text = httpx.get(
        cp.url + "/metrics", headers={"Authorization": f"Bearer {cp.admin_token}"}, verify=cp.ssl_context()
    ).text
    total = 0.0
    for labels, value in WRITE.findall(text):
        if re.search(r'verb="(POST|PUT|PATCH|DELETE|APPLY)"', labels):
            total += float(value)
    return total


def policy(core: client.CoreV1Api) -> dict | None:
    try:
        cm = core.read_namespaced_config_map("main-policy", NS)
    except client.ApiException:
        return None
    return json.loads(gzip.decompress(base64.b64decode(cm.binary_data["policy.json.gz"])))


def wait(what: str, check, timeout: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if check():
            return time.monotonic() - started
        time.sleep(0.2)
    raise SystemExit(f"timed out after {timeout:.0f}s waiting for {what}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=1000)
    parser.add_argument("--timeout", type=float, default=900)
    args = parser.parse_args()
    n = args.tenants
    with ControlPlane() as cp:
        api = cp.admin_api_client()
        _install_crds(api)
        core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
        core.create_namespace({"metadata": {"name": NS}})
        os.environ["KUBECONFIG"] = str(cp.kubeconfig_path)
        from kopf.testing import KopfRunner

        runner = KopfRunner(["run", "--standalone", "--namespace", NS, "-m", "gateway_operator.handlers"], timeout=60)
        runner.__enter__()
        try:
            body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Gateway", "metadata": {"name": "main"}, "spec": {}}
            custom.create_namespaced_custom_object(GROUP, VERSION, NS, "gateways", body)
            wait("gateway policy", lambda: policy(core) is not None, 120)
            before = writes(cp)
            started = time.monotonic()

            def create(kind: str, plural: str, make) -> None:
                for i in range(n):
                    custom.create_namespaced_custom_object(GROUP, VERSION, NS, plural, make(i))

            threads = [
                threading.Thread(
                    target=create,
                    args=(
                        "Tenant",
                        "tenants",
                        lambda i: {
                            "apiVersion": f"{GROUP}/{VERSION}",
                            "kind": "Tenant",
                            "metadata": {"name": f"t{i:04d}"},
                            "spec": {"gateway": "main", "allowedModels": ["*"]},
                        },
                    ),
                ),
                threading.Thread(
                    target=create,
                    args=(
                        "Budget",
                        "budgets",
                        lambda i: {
                            "apiVersion": f"{GROUP}/{VERSION}",
                            "kind": "Budget",
                            "metadata": {"name": f"b{i:04d}"},
                            "spec": {"tenant": f"t{i:04d}", "limitUSD": "100"},
                        },
                    ),
                ),
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            created = time.monotonic() - started

            def complete() -> bool:
                p = policy(core)
                return bool(p) and len(p["tenants"]) == n and len(p["budgets"]) == n

            wait("all tenants and budgets in the policy", complete, args.timeout)
            elapsed = time.monotonic() - started
            time.sleep(5)  # let trailing reconciles land before counting
            operator_writes = writes(cp) - before - 2 * n
            say(f"{n} Tenants + {n} Budgets: created in {created:.1f}s, in the policy after {elapsed:.1f}s")
            say(f"operator API writes for them: {operator_writes:.0f} ({operator_writes / (2 * n):.2f} per object)")

            before = writes(cp)
            started = time.monotonic()
            custom.patch_namespaced_custom_object(
                GROUP, VERSION, NS, "tenants", "t0007", {"spec": {"allowedRegions": ["eu-west-1"]}}
            )

            def changed() -> bool:
                p = policy(core)
                return any(t["id"] == "t0007" and t["allowed_regions"] == ["eu-west-1"] for t in p["tenants"])

            latency = wait("the tenant change in the policy", changed, 120)
            time.sleep(5)
            say(f"one Tenant change: in the policy after {latency:.2f}s, {writes(cp) - before - 1:.0f} operator writes")
        finally:
            runner.__exit__(None, None, None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
