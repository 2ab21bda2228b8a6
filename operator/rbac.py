"""Every API group/resource/verb the operator uses: the single source for the chart's ClusterRole."""

from __future__ import annotations

RULES: list[dict[str, list[str]]] = [
    {
        "apiGroups": ["kubegate.dev"],
        "resources": ["llmgateways", "modelroutes", "tenants", "budgets"],
        "verbs": ["get", "list", "watch", "patch", "update"],
    },
    {
        "apiGroups": ["kubegate.dev"],
        "resources": ["llmgateways/status", "modelroutes/status", "tenants/status", "budgets/status"],
        "verbs": ["get", "patch", "update"],
    },
    # TenantPlans are only read: a Tenant's status shows its plan.
    {"apiGroups": ["kubegate.dev"], "resources": ["tenantplans"], "verbs": ["get", "list", "watch"]},
    {
        "apiGroups": [""],
        "resources": ["configmaps", "services", "secrets"],
        "verbs": ["get", "list", "watch", "create", "patch", "update", "delete"],
    },
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
    # The managed Redis's volume grows with its Gateway's caps (claim templates of a StatefulSet cannot change).
    {"apiGroups": [""], "resources": ["persistentvolumeclaims"], "verbs": ["get", "patch"]},
    {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
    {
        "apiGroups": ["apps"],
        "resources": ["deployments", "statefulsets"],
        "verbs": ["get", "list", "watch", "create", "patch", "update", "delete"],
    },
    {
        "apiGroups": ["autoscaling"],
        "resources": ["horizontalpodautoscalers"],
        "verbs": ["get", "list", "watch", "create", "patch", "update", "delete"],
    },
    {
        "apiGroups": ["policy"],
        "resources": ["poddisruptionbudgets"],
        "verbs": ["get", "list", "watch", "create", "patch", "update", "delete"],
    },
    {
        "apiGroups": ["networking.k8s.io"],
        "resources": ["networkpolicies"],
        "verbs": ["get", "list", "watch", "create", "patch", "update", "delete"],
    },
    # kopf's peering and CRD discovery.
    {
        "apiGroups": ["apiextensions.k8s.io"],
        "resources": ["customresourcedefinitions"],
        "verbs": ["get", "list", "watch"],
    },
    {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "watch"]},
]
