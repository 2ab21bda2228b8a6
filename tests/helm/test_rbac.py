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
