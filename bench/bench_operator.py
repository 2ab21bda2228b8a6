"""Operator at scale on a real kube-apiserver: N Tenants + N Budgets into one Gateway.

Not a test. The operator runs in-process as a ServiceAccount bound to ``gateway_operator.rbac.RULES``; its writes
are counted exactly from the API server's audit log (every create/update/patch/delete that ServiceAccount made).
Prints: the time until the policy ConfigMap holds every Tenant and Budget and the operator's writes for them;
the writes of an idle period (resync and Budget refresh rounds included); for one Tenant change, the latency until
the policy shows it and each write it cost; the operator's peak resident memory (``VmHWM`` of its process, which
runs as ``kopf run -m gateway_operator.handlers`` exactly as ``kubegate operator`` execs it); and for an operator
restarted with every object in place and its policy ConfigMap deleted, the time until the policy holds them all
again (convergence from a cold start), its peak memory and its writes.

Usage: .venv/bin/python bench/bench_operator.py [--tenants 1000]
"""

from __future__ import annotations

import argparse
import base64
import collections
import gzip
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gateway_operator import rbac  # noqa: E402
from kubernetes import client  # noqa: E402

from gateway_plugins.policy.signing import MAGIC, SIG_LEN  # noqa: E402
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
    signed = base64.b64decode(cm.binary_data["policy.json.gz"])
    # The bench reads, it does not verify: the signature is checked by the proxies and by the operator tests.
    return json.loads(gzip.decompress(signed[len(MAGIC) + SIG_LEN :]))


def wait(what: str, check, timeout: float, every: float = 0.2) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if check():
            return time.monotonic() - started
        time.sleep(every)
    raise SystemExit(f"timed out after {timeout:.0f}s waiting for {what}")


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_operator(kubeconfig: str, log_path: Path) -> subprocess.Popen:
    """The operator in its own process (its memory is measured alone); output to a file, never an undrained pipe."""
    # MALLOC_ARENA_MAX as the chart's operator Deployment sets it.
    env = {
        **os.environ,
        "KUBECONFIG": kubeconfig,
        "PYTHONSAFEPATH": "1",
        "PYTHONUNBUFFERED": "1",
        "MALLOC_ARENA_MAX": "2",
    }
    argv = [sys.executable, "-m", "kopf", "run", "--standalone", "--namespace", NS, "-m", "gateway_operator.handlers"]
    with log_path.open("wb") as log:
        return subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def summary(writes: list[str]) -> str:
    kinds = collections.Counter(w.rsplit(" ", 1)[0] if w.count(" ") > 1 else w for w in writes)
    return ", ".join(f"{n} {k}" for k, n in kinds.most_common()) or "none"


def operator_kubeconfig(cp: ControlPlane, api: client.ApiClient, suffix: str = "") -> str:
    if not suffix:
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

    # Two writers per kind: creation is then bound by the API server, not by one client's round trips.
    def create_part(plural: str, make, part: int) -> None:
        for i in range(part, n, 2):
            custom.create_namespaced_custom_object(GROUP, VERSION, NS, plural, make(i))

    kinds = (("tenants", tenant), ("budgets", budget))
    threads = [threading.Thread(target=create_part, args=(*a, part)) for a in kinds for part in (0, 1)]
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
        log_path = audit_dir / "operator.log"
        proc = start_operator(operator_kubeconfig(cp, api), log_path)
        try:
            body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "LLMGateway", "metadata": {"name": "main"}, "spec": {}}
            custom.create_namespaced_custom_object(GROUP, VERSION, NS, "llmgateways", body)
            wait("gateway policy", lambda: policy(core) is not None, 120)
            mark = audit.quiet(OPERATOR, seconds=2)
            started = time.monotonic()
            create_all(custom, n)
            created = time.monotonic() - started

            def complete() -> bool:
                if proc.poll() is not None:
                    raise SystemExit(f"operator exited ({proc.returncode}); see {log_path}")
                p = policy(core)
                return bool(p) and len(p["tenants"]) == n and len(p["budgets"]) == n

            wait("all tenants and budgets in the policy", complete, args.timeout, every=0.5)
            elapsed = time.monotonic() - started
            converged_peak = peak_rss_mib(proc.pid)

            # Budget statuses arrive with the first refresh round after creation (30 s by default).
            def budgets_have_status() -> bool:
                items = custom.list_namespaced_custom_object(GROUP, VERSION, NS, "budgets")["items"]
                return all((b.get("status") or {}).get("conditions") for b in items)

            # Listing every Budget is itself load on the API server: not five times a second.
            wait("a status on every Budget", budgets_have_status, args.timeout, every=3)
            idle_from = audit.quiet(OPERATOR, seconds=5, timeout=args.timeout)
            bulk = audit.writes(OPERATOR, mark)
            say(
                f"{n} Tenants + {n} Budgets: created in {created:.1f}s, in the policy after {elapsed:.1f}s "
                f"({elapsed - created:.1f}s after the last was created); operator peak RSS {converged_peak:.0f} MiB"
            )
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
            say(f"operator peak RSS over the whole run: {peak_rss_mib(proc.pid):.0f} MiB")

            # A restart finds every object at once (one list per kind, one full reconcile, no creation burst). The
            # policy ConfigMap is deleted while the operator is down: the time to rebuild it from all 2N objects is
            # convergence from a cold start, not bound by how fast the objects can be created.
            stop(proc)
            core.delete_namespaced_config_map("main-policy", NS)
            restart_from = audit.quiet(OPERATOR, seconds=1)
            started = time.monotonic()
            proc = start_operator(operator_kubeconfig(cp, api, suffix="-restart"), audit_dir / "operator-restart.log")
            rebuilt = wait("the policy rebuilt after a restart", complete, args.timeout, every=0.5)
            time.sleep(max(0.0, IDLE_SECONDS - (time.monotonic() - started)))
            restart_writes = audit.writes(OPERATOR, restart_from)
            say(
                f"restart with every object in place and the policy ConfigMap deleted: policy rebuilt with all of them "
                f"{rebuilt:.1f}s after the operator started; peak RSS {peak_rss_mib(proc.pid):.0f} MiB after "
                f"{max(IDLE_SECONDS, time.monotonic() - started):.0f}s, {len(restart_writes)} writes "
                f"({summary(restart_writes)})"
            )
        finally:
            stop(proc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
