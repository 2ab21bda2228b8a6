"""`helm install` (CRDs included) -> the chart's operator, as the chart's ServiceAccount, reconciles a Gateway.

This runs on its OWN control plane, not the session one: helm installs the chart's `crds/` only when they are
absent (it skips existing CRDs without a word), and the session control plane already has them from the
operator tests. A fresh API server is the only way to know that helm's CRD install, not someone else's, made
the kinds exist; it costs one more etcd + kube-apiserver start (a few seconds).

Two installs: the default (all namespaces, cluster-wide binding) and a watch list (namespaced rules bound only
in the watched namespace). The operator runs with the Deployment's own args and env, authenticated by a TokenRequest token of the
ServiceAccount helm created, so RBAC is exactly what the chart grants. No kubelet runs, so the proxy pods the
operator creates never start; the test checks the objects the operator writes.

Why an earlier draft of this test could hang: (1) the operator's stdout on a pipe nobody read (kopf blocks
once 64 KiB are buffered), fixed by logging to a file; (2) `python -m kopf` started with the repo as cwd, where
`operator/` shadows the stdlib module, fixed by PYTHONSAFEPATH=1 and a temp cwd; (3) until 4f82d77 the Gateway
carried kopf's finalizer (a kopf timer requires one): `helm uninstall` deletes the ClusterRoleBinding and the
ServiceAccount before custom kinds, so the operator could no longer remove the finalizer and the chart's Gateway
stayed Terminating while `helm uninstall --wait` waited. The test now asserts there is no finalizer on the
Gateway and uninstalls while the operator still runs; every wait has a timeout and prints the operator's output.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import Iterator

import pytest
import yaml

from gateway_plugins.policy import hash_key
from gateway_plugins.policy.signing import PolicyVerifier
from gateway_plugins.policy.store import load_document
from tests.harness.controlplane import ControlPlane, ensure_binaries, free_port
from tests.helm.operator_process import OperatorProcess, container_env, local_argv
from tests.helm.tools import CHART, helm, kubectl

KINDS = ("budgets", "llmgateways", "modelroutes", "tenantplans", "tenants")
CRD_NAMES = [f"{k}.kubegate.dev" for k in KINDS]


@dataclasses.dataclass(frozen=True)
class Case:
    release: str
    namespace: str
    values: tuple[str, ...]


CASES = [
    # First: on the fresh API server helm's own CRD install runs here (later installs find them present).
    # logFormat=json proves a chart value reaches kopf's command line (kopf exits on an unknown option).
    Case("kg", "kubegate-system", ("gateway.create=true", "operator.logFormat=json")),
    # A watch list: namespaced rights only through a RoleBinding in the watched namespace.
    Case("kgw", "team-a", ("gateway.create=true", "operator.watchNamespaces={team-a}")),
]


@pytest.fixture(scope="module")
def fresh_cluster() -> Iterator[ControlPlane]:
    cp = ControlPlane(ensure_binaries(), controller_manager=True)
    cp.start()
    try:
        yield cp
    finally:
        cp.stop()


def _get(cp: ControlPlane, ns: str, *args: str) -> dict | None:
    res = kubectl(cp, "-n", ns, "get", *args, "-o", "json", check=False)
    return json.loads(res.stdout) if res.returncode == 0 else None


def _policy(cp: ControlPlane, ns: str) -> dict | None:
    cm = _get(cp, ns, "configmap", "main-policy")
    if not cm:
        return None
    gateway = _get(cp, ns, "llmgateway", "main") or {}
    public_key = (gateway.get("status") or {}).get("policyPublicKey")
    if not public_key:
        return None
    # The ConfigMap carries the signed document: verify it with the key the LLMGateway publishes.
    raw = base64.b64decode(cm["binaryData"]["policy.json.gz"])
    return load_document(raw, PolicyVerifier.from_public_b64(public_key)).model_dump(by_alias=True, mode="json")


def _condition(obj: dict | None, type_: str) -> dict | None:
    conditions = ((obj or {}).get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == type_), None)


def _memory_bytes(quantity: str) -> int:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    return int(quantity[:-2]) * units[quantity[-2:]] if quantity[-2:] in units else int(quantity)


def _can(cp: ControlPlane, sa: str, verb: str, resource: str, ns: str) -> bool:
    res = kubectl(cp, "auth", "can-i", verb, resource, "--as", sa, "-n", ns, check=False)
    return res.stdout.strip() == "yes"


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.namespace)
def test_operator_reconciles_after_helm_install_as_chart_service_account(fresh_cluster, tmp_path, case):
    cp, ns, release = fresh_cluster, case.namespace, case.release
    crds_before = kubectl(cp, "get", "crd", "-o", "name").stdout.count("kubegate.dev")
    if case is CASES[0]:
        assert crds_before == 0, "the first install must find no kubegate CRDs, so that helm installs them"
    sets = [a for v in case.values for a in ("--set", v)]
    notes = helm(cp, "install", release, str(CHART), "-n", ns, "--create-namespace", *sets).stdout
    kubectl(cp, "wait", "--for=condition=Established", "--timeout=60s", *(f"crd/{n}" for n in CRD_NAMES))
    assert helm(cp, "get", "manifest", release, "-n", ns).stdout.count("kind: CustomResourceDefinition") == 0, (
        "CRDs belong in crds/ (installed once, never deleted with the release), not in templates/"
    )

    deploy = _get(cp, ns, "deployment", f"{release}-kubegate-operator")
    assert deploy, "the chart created no operator Deployment"
    pod = deploy["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    sa = f"system:serviceaccount:{ns}:{pod['serviceAccountName']}"
    if "operator.watchNamespaces={team-a}" in case.values:
        assert _can(cp, sa, "create", "secrets", ns)
        assert not _can(cp, sa, "get", "secrets", "default"), "a namespace-restricted operator reads other Secrets"
        assert not _can(cp, sa, "list", "llmgateways.kubegate.dev", "default")
    # create=False: the ServiceAccount must be the one helm made, not one this test conjures up.
    token = cp.token_for_service_account(ns, pod["serviceAccountName"], create=False)
    port = free_port()
    operator = OperatorProcess(
        local_argv(container, port),
        container_env(container, ns),
        cp.kubeconfig_for_token(token, user="kubegate-operator"),
        tmp_path / "operator.log",
    ).start()
    uninstalled = False
    try:
        operator.wait_healthy(port)  # the chart's livenessProbe target answers
        tenant = {
            "apiVersion": "kubegate.dev/v1alpha1",
            "kind": "Tenant",
            "metadata": {"name": "team", "namespace": ns},
            "spec": {"gateway": "main", "allowedModels": ["*"]},
        }
        kubectl(cp, "apply", "-f", "-", stdin=yaml.safe_dump(tenant))

        policy = operator.wait_for(
            "the Tenant in the policy ConfigMap", lambda: (p := _policy(cp, ns)) and p["tenants"] and p
        )
        secret = operator.wait_for("the Tenant's key Secret", lambda: _get(cp, ns, "secret", "team-kubegate-key"))
        raw_key = base64.b64decode(secret["data"]["api-key"]).decode()
        assert policy["tenants"][0]["keys"] == [{"sha256": hash_key(raw_key)}]
        assert raw_key not in json.dumps(policy) and raw_key not in operator.output()

        for kind, name in (
            ("deployment", "main-proxy"),
            ("service", "main"),  # clients reach http://<gateway>.<namespace>.svc:4000
            ("configmap", "main-litellm-config"),
            ("statefulset", "main-redis"),  # persistent managed Redis (AOF on a PVC)
            ("service", "main-metrics"),  # the metrics port, never on the tenant Service
        ):
            child = operator.wait_for(f"{kind}/{name}", lambda k=kind, n=name: _get(cp, ns, k, n))
            assert child["metadata"]["ownerReferences"][0]["kind"] == "LLMGateway", f"{kind}/{name}"
        reconciled = operator.wait_for(
            "LLMGateway Reconciled=True", lambda: _condition(_get(cp, ns, "llmgateway", "main"), "Reconciled")
        )
        assert reconciled["status"] == "True", reconciled
        ready = operator.wait_for(
            "Tenant Ready", lambda: _condition(_get(cp, ns, "tenants.kubegate.dev", "team"), "Ready")
        )
        assert ready["status"] == "True", ready

        out = operator.output()
        # The container's memory limit covers every process of the pod: measured, not guessed (OOMKill otherwise).
        limit = _memory_bytes(container["resources"]["limits"]["memory"])
        rss = operator.peak_rss_bytes()
        assert rss < 0.8 * limit, (
            f"operator peak RSS {rss / 2**20:.0f} MiB vs chart memory limit {limit / 2**20:.0f} MiB"
        )
        if "operator.logFormat=json" in case.values:
            kopf_lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
            assert kopf_lines and all("message" in r for r in kopf_lines), out[-3000:]
        # NOTES.txt sends users to the objects the operator really made.
        assert "port-forward svc/$GATEWAY" in notes and "GATEWAY=main" in notes
        assert (
            "get secret $TENANT-kubegate-key" in notes and "--for=condition=Ready tenants.kubegate.dev/$TENANT" in notes
        )
        assert "Forbidden" not in out and " 403" not in out, out[-6000:]
        # The chart's env keeps LiteLLM (imported via gateway_plugins) from fetching prices from the internet.
        assert "model cost map" not in out, out[-6000:]

        # helm removes the operator's RBAC before custom kinds: a finalizer would keep the Gateway Terminating.
        gateway = _get(cp, ns, "llmgateway", "main")
        assert not gateway["metadata"].get("finalizers"), "helm uninstall would hang on the Gateway's finalizer"
        res = helm(cp, "uninstall", release, "-n", ns, "--wait", "--timeout", "90s", check=False, timeout=150)
        uninstalled = res.returncode == 0
        assert uninstalled, f"helm uninstall: {res.stderr}\noperator output:\n{operator.tail()}"
    finally:
        code = operator.stop()
        if not uninstalled:
            print(f"operator exit code {code}; output:\n{operator.tail(20000)}")

    assert _get(cp, ns, "llmgateway", "main") is None
    assert _get(cp, ns, "deployment", f"{release}-kubegate-operator") is None
    rbac = kubectl(cp, "get", "clusterroles,clusterrolebindings", "-o", "name").stdout
    assert f"{release}-kubegate" not in rbac
    assert _get(cp, ns, "rolebindings", f"{release}-kubegate-operator") is None
    # helm never deletes CRDs it installed from crds/: users' Tenants and Budgets survive an uninstall.
    assert kubectl(cp, "get", "crd", "-o", "name").stdout.count("kubegate.dev") == len(CRD_NAMES)
