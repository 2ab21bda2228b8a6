"""Chart and example YAML against a real kube-apiserver (session control plane from tests/operator).

No kubelet runs in the test control plane, so the chart's operator Deployment never starts pods: these tests
check that every rendered object is accepted by the API server (schemas, CRD validation, RBAC escalation rules)
and that helm can install and uninstall the release.
"""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pytest
import yaml
from gateway_operator.rbac import RULES

from tests.helm.test_rbac import _triples, watched_rbac
from tests.helm.test_static import non_default
from tests.helm.tools import CHART, ROOT, helm, helm_template, kubectl, run


def _kubectl(cp, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    return kubectl(cp, *args, stdin=stdin, check=check)


def _helm(cp, *args: str) -> subprocess.CompletedProcess[str]:
    return helm(cp, *args)


@pytest.fixture(scope="module")
def crds(control_plane):
    crd_dir = CHART / "crds"
    assert sorted(p.name for p in crd_dir.glob("*.yaml")), (
        "chart CRDs missing: run python -m gateway_operator.crd.generate"
    )
    _kubectl(control_plane, "apply", "--server-side", "-f", str(crd_dir))
    _kubectl(control_plane, "wait", "--for=condition=Established", "--timeout=60s", "-f", str(crd_dir))
    return control_plane


def _server_dry_run(cp, manifest: str, namespace: str) -> subprocess.CompletedProcess[str]:
    return _kubectl(cp, "apply", "--dry-run=server", "-n", namespace, "-f", "-", stdin=manifest, check=False)


def _without_kinds(manifest: str, *kinds: str) -> str:
    docs = [d for d in yaml.safe_load_all(manifest) if d and d["kind"] not in kinds]
    return yaml.safe_dump_all(docs)


@pytest.mark.parametrize("custom", [False, True], ids=["default", "non-default"])
def test_rendered_chart_passes_server_side_dry_run(crds, namespace, custom):
    values = non_default(namespace) if custom else ()
    # ServiceMonitor's and PrometheusRule's CRDs belong to prometheus-operator (the rule: its own test below).
    manifest = _without_kinds(helm_template(*values, namespace=namespace), "ServiceMonitor", "PrometheusRule")
    res = _server_dry_run(crds, manifest, namespace)
    assert res.returncode == 0, res.stderr
    if values:
        assert "gateway.kubegate.dev/main created (server dry run)" in res.stdout


def test_api_server_rejects_an_invalid_gateway_spec(crds, namespace):
    """Guards the test above: the dry run really validates kubegate objects against the CRD schema."""
    manifest = _without_kinds(
        helm_template("gateway.create=true", "gateway.spec.replicas=not-a-number", namespace=namespace),
        "ServiceMonitor",
    )
    res = _server_dry_run(crds, manifest, namespace)
    assert res.returncode != 0
    assert "replicas" in res.stderr


def _kubegate_docs(path: Path) -> list[dict]:
    docs = yaml.safe_load_all(path.read_text())
    return [d for d in docs if d and str(d.get("apiVersion", "")).startswith("kubegate.dev/")]


# Argo CD / Flux objects and kustomizations need controllers the test cluster lacks; only kubegate objects go.
EXAMPLES = sorted(
    p for d in ("examples/quickstart", "examples/gitops") for p in (ROOT / d).rglob("*.yaml") if _kubegate_docs(p)
)


def test_gitops_examples_are_collected():
    assert {p.parent.name for p in EXAMPLES} >= {"platform", "team-payments", "team-search"}
    assert any("argocd" in p.parts for p in EXAMPLES) and any("flux" in p.parts for p in EXAMPLES)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: str(p.relative_to(ROOT)))
def test_example_yaml_passes_server_side_dry_run(crds, namespace, path: Path):
    docs = _kubegate_docs(path)
    for d in docs:
        d["metadata"]["namespace"] = namespace
    res = _server_dry_run(crds, yaml.safe_dump_all(docs), namespace)
    assert res.returncode == 0, res.stderr


@pytest.mark.parametrize("layout", ["argocd", "flux"])
def test_gitops_kustomizations_build_and_pass_dry_run(crds, namespace, layout):
    for part in ("platform", "teams"):
        built = _kubectl(crds, "kustomize", str(ROOT / "examples" / "gitops" / layout / part)).stdout
        docs = [d for d in yaml.safe_load_all(built) if d]
        assert docs
        for d in docs:
            d["metadata"]["namespace"] = namespace
        res = _server_dry_run(crds, yaml.safe_dump_all(docs), namespace)
        assert res.returncode == 0, res.stderr


def test_argocd_health_checks_cover_kubegate_kinds():
    cm = yaml.safe_load((ROOT / "examples" / "gitops" / "argocd" / "argocd-cm-patch.yaml").read_text())["data"]
    budget = cm["resource.customizations.health.kubegate.dev_Budget"]
    assert 'obj.status.state == "blocked"' in budget and '"Degraded"' in budget
    tenant = cm["resource.customizations.health.kubegate.dev_Tenant"]
    assert 'c.type == "Ready"' in tenant and '"Healthy"' in tenant and '"Progressing"' in tenant
    # Without it the app of apps' sync waves do not wait for the chart to be Healthy.
    assert "obj.status.health.status" in cm["resource.customizations.health.argoproj.io_Application"]


def test_helm_install_and_uninstall(crds, namespace):
    release = f"kg-{uuid.uuid4().hex[:6]}"
    # --skip-crds: the session's CRDs are shared with the operator tests and already applied by another manager.
    _helm(crds, "install", release, str(CHART), "-n", namespace, "--skip-crds", "--set", "gateway.create=true")
    try:
        deploy = _kubectl(crds, "-n", namespace, "get", "deployment", f"{release}-kubegate-operator", "-o", "yaml")
        assert yaml.safe_load(deploy.stdout)["spec"]["template"]["spec"]["serviceAccountName"] == (
            f"{release}-kubegate-operator"
        )
        _kubectl(crds, "-n", namespace, "get", "gateway", "main")
        # The operator's ServiceAccount really holds what it needs on our kinds, and no more than read on nodes.
        sa = f"system:serviceaccount:{namespace}:{release}-kubegate-operator"
        can = _kubectl(crds, "auth", "can-i", "patch", "gateways.kubegate.dev/status", "--as", sa, "-n", namespace)
        assert can.stdout.strip() == "yes"
        cannot = _kubectl(crds, "auth", "can-i", "delete", "nodes", "--as", sa, check=False)
        assert cannot.stdout.strip() == "no"
    finally:
        _helm(crds, "uninstall", release, "-n", namespace, "--wait=watcher")
    gone = _kubectl(crds, "-n", namespace, "get", "deployment", f"{release}-kubegate-operator", check=False)
    assert gone.returncode != 0 and "NotFound" in gone.stderr
    roles = _kubectl(crds, "get", "clusterroles", "-o", "name").stdout
    assert f"{release}-kubegate" not in roles


def test_chart_splits_operator_rules_by_the_api_servers_scopes(crds):
    """With a watch list the chart binds namespaced rules per namespace: its cluster-scoped list must be right."""
    names = _kubectl(crds, "api-resources", "--namespaced=false", "-o", "name").stdout.split()
    cluster_scoped = {(n.partition(".")[2], n.partition(".")[0]) for n in names}
    wanted = {(g, r) for g, r, _ in _triples(RULES) if (g, r) in cluster_scoped}
    cluster_role = watched_rbac()[("ClusterRole", "r-kubegate-operator-cluster")]
    assert {(g, r) for g, r, _ in _triples(cluster_role["rules"])} == wanted


def _doc_commands(doc: str, heading: str) -> list[str]:
    section = doc.split(heading, 1)[1].split("\n## ", 1)[0]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line.startswith("kubectl ")]


def test_quickstart_developer_key_grant_reads_exactly_one_secret(crds, namespace):
    # The doc's release is named kubegate, so the roles are kubegate-developer etc.
    roles_doc = run(
        "helm", "template", "kubegate", str(CHART), "-n", namespace, "--show-only", "templates/user-roles.yaml"
    ).stdout
    _kubectl(crds, "apply", "-f", "-", stdin=roles_doc)
    try:
        doc = (ROOT / "docs" / "quickstart.md").read_text()
        commands = _doc_commands(doc, "## Give a team's developers their key")
        assert len(commands) == 3
        for command in commands:
            _kubectl(crds, *command.replace("ai-gateway", namespace).split()[1:])
        dev = ("--as", "alice", "--as-group", "team-eu-devs", "-n", namespace)

        def can(*what: str) -> bool:
            return _kubectl(crds, "auth", "can-i", *what, *dev, check=False).stdout.strip() == "yes"

        assert can("get", "secret/team-eu-kubegate-key")
        assert not can("get", "secret/team-us-kubegate-key")
        assert not can("list", "secrets")  # listing would reveal every key
        assert can("list", "tenants.kubegate.dev")
        assert not can("update", "tenants.kubegate.dev")
    finally:
        _kubectl(crds, "delete", "-f", "-", "--ignore-not-found", stdin=roles_doc, check=False)


@pytest.fixture(scope="module")
def prometheus_rule_crd(crds):
    crd = ROOT / "tests" / "helm" / "prometheusrule-crd.yaml"
    _kubectl(crds, "apply", "--server-side", "-f", str(crd))
    _kubectl(crds, "wait", "--for=condition=Established", "--timeout=60s", "-f", str(crd))
    return crds


def test_prometheus_rule_passes_server_side_dry_run(prometheus_rule_crd, namespace):
    manifest = helm_template("metrics.prometheusRule.enabled=true", namespace=namespace)
    rule = [d for d in yaml.safe_load_all(manifest) if d and d["kind"] == "PrometheusRule"]
    assert len(rule) == 1
    res = _server_dry_run(prometheus_rule_crd, yaml.safe_dump_all(rule), namespace)
    assert res.returncode == 0, res.stderr
    assert "prometheusrule.monitoring.coreos.com/r-kubegate-alerts created (server dry run)" in res.stdout

    # Guard: the dry run really checks the rule's shape (a rule without expr, an unknown field).
    broken = {**rule[0], "spec": {"groups": [{"name": "g", "rules": [{"alert": "A", "exprr": "up"}]}]}}
    res = _server_dry_run(prometheus_rule_crd, yaml.safe_dump(broken), namespace)
    assert res.returncode != 0 and "expr" in res.stderr, res.stdout + res.stderr
