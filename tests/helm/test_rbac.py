"""The chart's operator ClusterRole is exactly operator/rbac.py's rules (generated file, no drift)."""

from __future__ import annotations

import yaml
from gateway_operator.rbac import RULES

from tests.helm import gen_chart_rbac
from tests.helm.tools import helm_template


def test_generated_rules_file_is_up_to_date():
    assert gen_chart_rbac.OUT.read_text() == gen_chart_rbac.render(), (
        "charts/kubegate/files/operator-rules.yaml is stale: run python -m tests.helm.gen_chart_rbac"
    )


def test_rendered_operator_cluster_role_equals_operator_rules():
    role = next(
        d
        for d in yaml.safe_load_all(helm_template())
        if d and d["kind"] == "ClusterRole" and d["metadata"]["name"] == "r-kubegate-operator"
    )
    assert role["rules"] == RULES


def _triples(rules: list[dict]) -> set[tuple[str, str, str]]:
    return {(g, r, v) for rule in rules for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}


def watched_rbac(namespace: str = "kg", watched: tuple[str, ...] = ("kg", "team-b")) -> dict[tuple[str, str], dict]:
    """RBAC objects the chart renders with a namespace watch list, by (kind, name or namespace)."""
    rendered = helm_template(f"operator.watchNamespaces={{{','.join(watched)}}}", namespace=namespace)
    docs = [d for d in yaml.safe_load_all(rendered) if d and d["apiVersion"].startswith("rbac.")]
    return {
        (d["kind"], d["metadata"].get("namespace") or d["metadata"]["name"]): d
        for d in docs
        if "operator" in d["metadata"]["name"]
    }


def test_watched_namespaces_get_namespaced_bindings_only():
    objs = watched_rbac()
    namespaced = objs[("ClusterRole", "r-kubegate-operator")]["rules"]
    cluster = objs[("ClusterRole", "r-kubegate-operator-cluster")]["rules"]
    # Nothing lost and nothing added: the two roles together are exactly operator/rbac.py's rules.
    assert _triples(namespaced) | _triples(cluster) == _triples(RULES)
    assert {r for _, r, _ in _triples(cluster)} == {"customresourcedefinitions", "namespaces"}
    assert not {v for _, _, v in _triples(cluster)} - {"get", "list", "watch"}
    # Cluster-wide, the ServiceAccount holds only the cluster-scoped reads.
    assert objs[("ClusterRoleBinding", "r-kubegate-operator")]["roleRef"]["name"] == "r-kubegate-operator-cluster"
    for ns in ("kg", "team-b"):
        binding = objs[("RoleBinding", ns)]
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "r-kubegate-operator",
        }
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "r-kubegate-operator", "namespace": "kg"}]
