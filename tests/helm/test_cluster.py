"""Chart and example YAML against a real kube-apiserver (session control plane from tests/operator).

No kubelet runs in the test control plane, so the chart's operator Deployment never starts pods: these tests
check that every rendered object is accepted by the API server (schemas, CRD validation, RBAC escalation rules)
and that helm can install and uninstall the release.
"""

from __future__ import annotations

import re
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import yaml
from gateway_operator.crd.generate import KIND_INFO
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
        assert "llmgateway.kubegate.dev/main created (server dry run)" in res.stdout


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


# Minimal stand-ins for CRDs other projects install with the same plural as ours (or as ours had): the Kubernetes
# Gateway API (often installed by default on managed clusters) and Capsule.
FOREIGN_CRDS = [
    {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        # *.k8s.io groups are protected: the real Gateway API CRDs carry this approval annotation too.
        "metadata": {
            "name": f"{plural}.{group}",
            "annotations": {"api-approved.kubernetes.io": "https://github.com/kubernetes-sigs/gateway-api/pull/1538"},
        },
        "spec": {
            "group": group,
            "scope": scope,
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
                **({"shortNames": short} if short else {}),
                "categories": categories,
            },
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    # Structural, unlike a root that preserves unknown fields: published, so `kubectl explain` works.
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {"spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
                        }
                    },
                }
            ],
        },
    }
    # Names, short names and categories as the projects' own CRDs declare them.
    for group, kind, plural, scope, short, categories in (
        ("gateway.networking.k8s.io", "Gateway", "gateways", "Namespaced", ["gtw"], ["gateway-api"]),
        ("gateway.networking.k8s.io", "GatewayClass", "gatewayclasses", "Cluster", ["gc"], ["gateway-api"]),
        ("gateway.networking.k8s.io", "HTTPRoute", "httproutes", "Namespaced", [], ["gateway-api"]),
        ("capsule.clastix.io", "Tenant", "tenants", "Cluster", ["tnt"], []),
    )
]


@pytest.fixture
def foreign_crds(crds):
    manifest = yaml.safe_dump_all(FOREIGN_CRDS)
    _kubectl(crds, "apply", "--server-side", "-f", "-", stdin=manifest)
    _kubectl(crds, "wait", "--for=condition=Established", "--timeout=60s", "-f", "-", stdin=manifest)
    yield crds
    _kubectl(crds, "delete", "--ignore-not-found", "--timeout=60s", "-f", "-", stdin=manifest, check=False)


def test_kinds_resolve_to_kubegate_beside_gateway_api_and_capsule(foreign_crds, namespace):
    """With the Gateway API's and Capsule's CRDs installed, our names still reach our kinds and everything we ship
    (chart, quickstart, both GitOps layouts) passes a server-side dry run."""
    cp = foreign_crds
    gw_api = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway", "metadata": {"name": "theirs"}}
    _kubectl(cp, "apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(gw_api))
    ours = next(d for d in _kubegate_docs(ROOT / "examples" / "quickstart" / "gateway.yaml"))
    ours["metadata"] = {"name": "ours", "namespace": namespace}
    _kubectl(cp, "apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(ours))

    def listed(resource: str) -> set[tuple[str, str]]:
        out = _kubectl(cp, "get", resource, "-n", namespace, "-o", "yaml").stdout
        return {(i["apiVersion"], i["metadata"]["name"]) for i in yaml.safe_load(out)["items"]}

    for name in ("llmgateways", "llmgateway", "kgw", "llmgw", "llmgateways.kubegate.dev"):
        assert listed(name) == {("kubegate.dev/v1alpha1", "ours")}, name
    # The clash the rename avoids: plain `gateways` is the Gateway API's, and it never lists ours.
    assert listed("gateways") == {("gateway.networking.k8s.io/v1", "theirs")}
    # Where a plural still clashes, the fully qualified name the docs use reaches ours.
    explained = _kubectl(cp, "explain", "tenants.kubegate.dev").stdout
    assert re.search(r"^GROUP:\s+kubegate\.dev$", explained, re.M), explained
    category = _kubectl(cp, "get", "kubegate", "-n", namespace, "-o", "name").stdout.split()
    assert category == ["llmgateway.kubegate.dev/ours"], category

    chart = _without_kinds(
        helm_template(*non_default(namespace), namespace=namespace), "ServiceMonitor", "PrometheusRule"
    )
    res = _server_dry_run(cp, chart, namespace)
    assert res.returncode == 0, res.stderr
    assert "llmgateway.kubegate.dev/main created (server dry run)" in res.stdout
    manifests = {
        "quickstart": yaml.safe_dump_all([d for p in EXAMPLES if "quickstart" in p.parts for d in _kubegate_docs(p)])
    }
    for layout in ("argocd", "flux"):
        built = [
            d
            for part in ("platform", "teams")
            for d in yaml.safe_load_all(
                _kubectl(cp, "kustomize", str(ROOT / "examples" / "gitops" / layout / part)).stdout
            )
            if d
        ]
        manifests[layout] = yaml.safe_dump_all(built)
    for what, manifest in manifests.items():
        docs = [d for d in yaml.safe_load_all(manifest) if d]
        for d in docs:
            d["metadata"]["namespace"] = namespace
        res = _server_dry_run(cp, yaml.safe_dump_all(docs), namespace)
        assert res.returncode == 0, f"{what}: {res.stderr}"
        assert "llmgateway.kubegate.dev/main created (server dry run)" in res.stdout, f"{what}: {res.stdout}"
        assert "tenant.kubegate.dev/" in res.stdout, f"{what}: {res.stdout}"


def test_argocd_health_checks_cover_kubegate_kinds():
    cm = yaml.safe_load((ROOT / "examples" / "gitops" / "argocd" / "argocd-cm-patch.yaml").read_text())["data"]
    budget = cm["resource.customizations.health.kubegate.dev_Budget"]
    assert 'obj.status.state == "blocked"' in budget and '"Degraded"' in budget
    tenant = cm["resource.customizations.health.kubegate.dev_Tenant"]
    assert 'c.type == "Ready"' in tenant and '"Healthy"' in tenant and '"Progressing"' in tenant
    # Argo CD keys health checks by group_kind: one left on the old kind name would never match.
    gateway = cm["resource.customizations.health.kubegate.dev_LLMGateway"]
    assert 'c.type == "Ready"' in gateway and '"Healthy"' in gateway
    kinds = {k.rsplit("_", 1)[1] for k in cm if k.startswith("resource.customizations.health.kubegate.dev_")}
    assert kinds <= set(KIND_INFO), kinds
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
        _kubectl(crds, "-n", namespace, "get", "llmgateway", "main")
        # The operator's ServiceAccount really holds what it needs on our kinds, and no more than read on nodes.
        sa = f"system:serviceaccount:{namespace}:{release}-kubegate-operator"
        can = _kubectl(crds, "auth", "can-i", "patch", "llmgateways.kubegate.dev/status", "--as", sa, "-n", namespace)
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


def test_budget_resets_column_prints_a_future_reset(crds, namespace):
    """kubectl's table (server-side columns, client-side printing) shows when a Budget resets, which is always in
    the future: a `date` column printed it as `<invalid>`."""
    budget = {
        "apiVersion": "kubegate.dev/v1alpha1",
        "kind": "Budget",
        "metadata": {"name": "monthly", "namespace": namespace},
        "spec": {"tenant": "team", "limitUSD": "10"},
    }
    _kubectl(crds, "apply", "-f", "-", stdin=yaml.safe_dump(budget))
    reset = "2099-01-01T00:00:00+01:00"  # as the budget refresh writes it: isoformat in the Budget's time zone
    status = {
        "status": {
            "conditions": [{"type": "Ready", "status": "True"}],
            "spentUSD": "1.0000",
            "remainingUSD": "9.0000",
            "percent": 10.0,
            "state": "ok",
            "periodEnd": reset,
        }
    }
    _kubectl(
        crds,
        "patch",
        "budgets.kubegate.dev",
        "monthly",
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        yaml.safe_dump(status),
    )
    table = _kubectl(crds, "get", "budgets.kubegate.dev", "-n", namespace).stdout
    header, row = table.splitlines()[:2]
    assert "<invalid>" not in table, table
    # By the header's column positions: a Budget without limitTokens leaves its token cells empty.
    starts = [m.start() for m in re.finditer(r"\S+", header)]
    (i,) = [n for n, m in enumerate(re.finditer(r"\S+", header)) if m.group() == "RESETS"]
    end = starts[i + 1] if i + 1 < len(starts) else None
    assert row[starts[i] : end].strip() == reset, table


# Every place we tell users to type a kubectl command.
DOC_FILES = sorted(
    [
        *(ROOT / "docs").glob("*.md"),
        ROOT / "README.md",
        CHART / "templates" / "NOTES.txt",
        *(p for p in (ROOT / "examples").rglob("*") if p.is_file()),
    ]
)
# A kubectl get/describe/wait, in a code block or an inline code span, up to where the shell or the span ends.
DOC_COMMAND = re.compile(r"kubectl\s+((?:-n\s+\S+\s+)?(?:get|describe|wait)\b[^`\n|>&;)]*)")
FLAGS_WITH_VALUE = {"-n", "--namespace", "-o", "--output", "-l", "--selector", "--field-selector", "--for", "--timeout"}
# Groups of the resources the docs name besides ours (secrets, deployments, events, CRDs).
BUILT_IN_GROUPS = {"", "apps", "apiextensions.k8s.io", "events.k8s.io", "rbac.authorization.k8s.io"}


def doc_resources() -> dict[str, set[str]]:
    """Resource name as typed (``tenants.kubegate.dev``, ``budget``, ``kgw``) -> where the docs use it."""
    found: dict[str, set[str]] = {}
    for path in DOC_FILES:
        for match in DOC_COMMAND.finditer(path.read_text(errors="replace")):
            args = match.group(1).split()
            positional, skip = [], False
            for arg in args:
                if skip:
                    skip = False
                elif arg.startswith("-"):
                    skip = arg in FLAGS_WITH_VALUE
                else:
                    positional.append(arg)
            # positional[0] is the verb; then TYPE[,TYPE...][/NAME] or TYPE NAME.
            if len(positional) < 2 or positional[1].startswith(("<", "$")):
                continue
            for resource in positional[1].split("/", 1)[0].split(","):
                found.setdefault(resource, set()).add(str(path.relative_to(ROOT)))
    return found


def _explain(cp, resource: str) -> tuple[str, str]:
    """(kind, group) ``resource`` resolves to, as kubectl get would resolve it. A CRD's schema reaches the API
    server's OpenAPI a moment after it is Established: retried until then."""
    for _ in range(50):
        res = _kubectl(cp, "explain", resource, check=False)
        if res.returncode == 0:
            group = re.search(r"^GROUP:\s+(\S+)$", res.stdout, re.M)
            kind = re.search(r"^KIND:\s+(\S+)$", res.stdout, re.M)
            return kind.group(1), group.group(1) if group else ""
        assert "couldn't find resource" in res.stderr, res.stderr
        time.sleep(0.2)
    raise AssertionError(f"kubectl explain {resource}: {res.stderr}")


def test_doc_commands_are_collected():
    found = doc_resources()
    assert {"tenants.kubegate.dev", "budgets.kubegate.dev", "llmgateways.kubegate.dev", "kubegate"} <= set(found)
    assert "docs/operations.md" in found["budgets.kubegate.dev"] and "README.md" in found["tenants.kubegate.dev"]
    assert "charts/kubegate/templates/NOTES.txt" in found["modelroutes.kubegate.dev"]


def test_doc_commands_reach_kubegate_beside_capsule_and_gateway_api(foreign_crds):
    """Where Capsule and the Gateway API are installed, every resource a kubectl get/describe/wait in the docs, the
    README, the examples and the chart's NOTES names resolves to a kubegate.dev kind (or a built-in one, such as a
    Secret), never to theirs: plain `tenants` resolved to Capsule's Tenant."""
    ours = set(KIND_INFO)
    wrong = []
    for resource, where in sorted(doc_resources().items()):
        if resource == "kubegate":
            continue  # the category: test_kinds_resolve_to_kubegate_beside_gateway_api_and_capsule lists it
        kind, group = _explain(foreign_crds, resource)
        if group != "kubegate.dev" and (kind in ours or group not in BUILT_IN_GROUPS):
            wrong.append(f"{resource} -> {kind}.{group} ({', '.join(sorted(where))})")
    assert wrong == []
    # Every kind's short names are its own there too.
    for kind, info in KIND_INFO.items():
        for short in info["short"]:
            assert _explain(foreign_crds, short) == (kind, "kubegate.dev"), short
