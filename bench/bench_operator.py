"""Operator at scale on a real kube-apiserver: N Tenants + N Budgets into one Gateway.

Not a test. The operator runs in-process as a ServiceAccount bound to ``gateway_operator.rbac.RULES``; its writes
are counted exactly from the API server's audit log (every create/update/patch/delete that ServiceAccount made).
Prints: the time until the policy ConfigMap holds every Tenant and Budget and the operator's writes for them;
the writes of an idle period (resync and Budget refresh rounds included); for one Tenant change, the latency until
the policy shows it and each write it cost.

Usage: .venv/bin/python bench/bench_operator.py [--tenants 1000]
"""

from __future__ import annotations

import argparse
import base64
import collections
import gzip
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gateway_operator import rbac  # noqa: E402
from kubernetes import client  # noqa: E402

from tests.harness.controlplane import ControlPlane  # noqa: E402
from tests.operator.audit import AuditLog, apiserver_args  # noqa: E402
from tests.operator.test_crd import _install_crds  # noqa: E402

GROUP, VERSION, NS = "kubegate.dev", "v1alpha1", "bench"
OPERATOR = f"system:serviceaccount:{NS}:kubegate-operator"
# Longer than one resync and one Budget refresh round at their production default (30 s).
IDLE_SECONDS = 35.0


def say(text: str) -> None:
    # KopfRunner (click's CliRunner) swaps sys.stdout while the operator runs.
    print(text, file=sys.__stdout__, flush=True)


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


def summary(writes: list[str]) -> str:
    kinds = collections.Counter(w.rsplit(" ", 1)[0] if w.count(" ") > 1 else w for w in writes)
    return ", ".join(f"{n} {k}" for k, n in kinds.most_common()) or "none"


def operator_kubeconfig(cp: ControlPlane, api: client.ApiClient) -> str:
    rbac_api = client.RbacAuthorizationV1Api(api)
    rbac_api.create_cluster_role({"metadata": {"name": "kubegate-bench"}, "rules": rbac.RULES})
    rbac_api.create_cluster_role_binding(
        {
            "metadata": {"name": "kubegate-bench"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "kubegate-bench"},
            "subjects": [{"kind": "ServiceAccount", "name": "kubegate-operator", "namespace": NS}],
        }
    )
    return str(cp.kubeconfig_for_token(cp.token_for_service_account(NS, "kubegate-operator")))


def create_all(custom: client.CustomObjectsApi, n: int) -> None:
    def create(plural: str, make) -> None:
        for i in range(n):
            custom.create_namespaced_custom_object(GROUP, VERSION, NS, plural, make(i))

    def tenant(i: int) -> dict:
        return {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Tenant",
            "metadata": {"name": f"t{i:04d}"},
            "spec": {"gateway": "main", "allowedModels": ["*"]},
        }

    def budget(i: int) -> dict:
        return {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Budget",
            "metadata": {"name": f"b{i:04d}"},
            "spec": {"tenant": f"t{i:04d}", "limitUSD": "100"},
        }

    threads = [threading.Thread(target=create, args=a) for a in (("tenants", tenant), ("budgets", budget))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=1000)
    parser.add_argument("--timeout", type=float, default=900)
    args = parser.parse_args()
    n = args.tenants
    audit_dir = Path(tempfile.mkdtemp(prefix="kubegate-bench-audit-"))
    extra, audit_path = apiserver_args(audit_dir)
    audit = AuditLog(audit_path)
    with ControlPlane(extra_apiserver_args=extra) as cp:
        api = cp.admin_api_client()
        _install_crds(api)
        core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
        core.create_namespace({"metadata": {"name": NS}})
        os.environ["KUBECONFIG"] = operator_kubeconfig(cp, api)
        from kopf.testing import KopfRunner

        runner = KopfRunner(["run", "--standalone", "--namespace", NS, "-m", "gateway_operator.handlers"], timeout=60)
        runner.__enter__()
        try:
            body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "LLMGateway", "metadata": {"name": "main"}, "spec": {}}
            custom.create_namespaced_custom_object(GROUP, VERSION, NS, "llmgateways", body)
            wait("gateway policy", lambda: policy(core) is not None, 120)
            mark = audit.quiet(OPERATOR, seconds=2)
            started = time.monotonic()
            create_all(custom, n)
            created = time.monotonic() - started

            def complete() -> bool:
                p = policy(core)
                return bool(p) and len(p["tenants"]) == n and len(p["budgets"]) == n

            wait("all tenants and budgets in the policy", complete, args.timeout)
            elapsed = time.monotonic() - started

            # Budget statuses arrive with the first refresh round after creation (30 s by default).
            def budgets_have_status() -> bool:
                items = custom.list_namespaced_custom_object(GROUP, VERSION, NS, "budgets")["items"]
                return all((b.get("status") or {}).get("conditions") for b in items)

            wait("a status on every Budget", budgets_have_status, args.timeout)
            idle_from = audit.quiet(OPERATOR, seconds=5, timeout=args.timeout)
            bulk = audit.writes(OPERATOR, mark)
            say(f"{n} Tenants + {n} Budgets: created in {created:.1f}s, in the policy after {elapsed:.1f}s")
            say(f"operator API writes for them: {len(bulk)} ({len(bulk) / (2 * n):.2f} per object): {summary(bulk)}")

            time.sleep(IDLE_SECONDS)
            idle = audit.writes(OPERATOR, idle_from)
            say(f"idle {IDLE_SECONDS:.0f}s after that: {len(idle)} operator writes ({summary(idle)})")

            before = audit.quiet(OPERATOR, seconds=2)
            started = time.monotonic()
            custom.patch_namespaced_custom_object(
                GROUP, VERSION, NS, "tenants", "t0007", {"spec": {"allowedRegions": ["eu-west-1"]}}
            )

            def changed() -> bool:
                p = policy(core)
                return any(t["id"] == "t0007" and t["allowed_regions"] == ["eu-west-1"] for t in p["tenants"])

            latency = wait("the tenant change in the policy", changed, 120)
            audit.quiet(OPERATOR, seconds=3)
            single = audit.writes(OPERATOR, before)
            say(f"one Tenant change: in the policy after {latency:.2f}s; writes per single change: {len(single)}")
            for write in single:
                say(f"  {write}")
        finally:
            runner.__exit__(None, None, None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
