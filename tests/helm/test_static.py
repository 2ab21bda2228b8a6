"""Checks that need no cluster: pinned image bases, chart/package versions, values schema, helm lint."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import PurePosixPath

import pytest
import yaml

from tests.helm.tools import CHART, ROOT, helm_template, run

NON_DEFAULT = (
    "gateway.create=true",
    "gateway.modelRoutes[0].name=gpt-4o",
    "gateway.modelRoutes[0].spec.modelName=gpt-4o",
    "gateway.modelRoutes[0].spec.deployments[0].name=openai-eu",
    "gateway.modelRoutes[0].spec.deployments[0].provider=openai",
    "gateway.modelRoutes[0].spec.deployments[0].model=gpt-4o",
    "gateway.modelRoutes[0].spec.deployments[0].region=eu-west-1",
    "gateway.modelRoutes[0].spec.deployments[0].apiKeySecretRef.name=openai",
    "gateway.modelRoutes[0].spec.deployments[0].apiKeySecretRef.key=api-key",
    "metrics.serviceMonitor.enabled=true",
    "metrics.grafanaDashboard.enabled=true",
    "serviceAccount.name=kg-op",
    "operator.logLevel=debug",
    "operator.logFormat=json",
    "operator.imagePullSecrets[0].name=regcred",
    "imagePullSecrets[0].name=mirror",
    "operator.podLabels.team=platform",
    "operator.priorityClassName=system-cluster-critical",
    "operator.topologySpreadConstraints[0].maxSkew=1",
    "operator.topologySpreadConstraints[0].topologyKey=topology.kubernetes.io/zone",
    "operator.topologySpreadConstraints[0].whenUnsatisfiable=ScheduleAnyway",
    "operator.extraEnv[0].name=HTTPS_PROXY",
    "operator.extraEnv[0].value=http://proxy.internal:3128",
    "metrics.serviceMonitor.scrapeTimeout=10s",
    "metrics.serviceMonitor.relabelings[0].targetLabel=cluster",
    "metrics.serviceMonitor.relabelings[0].replacement=prod-eu",
    "metrics.prometheusRule.enabled=true",
)


def non_default(namespace: str = "kubegate-system") -> tuple[str, ...]:
    """NON_DEFAULT plus a watch list holding the release namespace (where the Gateway goes, and which must exist)."""
    return (*NON_DEFAULT, f"operator.watchNamespaces={{{namespace}}}")


def _package_version() -> str:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


DOCKERFILES = sorted((ROOT / "images").glob("*.Dockerfile"))


def _base_images(dockerfile) -> list[str]:
    text = dockerfile.read_text()
    args = dict(re.findall(r"^ARG (\w+)=(\S+)$", text, re.M))
    return [args.get(ref.strip("${}"), ref) for ref in re.findall(r"^FROM (\S+)", text, re.M)]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_bases_are_pinned_by_digest(dockerfile):
    text = dockerfile.read_text()
    froms = _base_images(dockerfile)
    assert froms
    for ref in froms:
        m = re.fullmatch(r"([\w./-]+):([\w.-]+)@sha256:([0-9a-f]{64})", ref)
        assert m, f"{dockerfile.name}: base {ref} is not name:tag@sha256:<64 hex>"
        assert len(set(m[3])) > 4, f"{dockerfile.name}: {ref} has a placeholder digest"
        # The image's Python must be the one pyproject allows (wheels in the locks are cp311).
        assert m[2].startswith("3.11"), f"{dockerfile.name}: base {ref} is not Python 3.11"
    assert "--require-hashes" in text
    assert re.search(r"^USER \d+:\d+$", text, re.M), "must run as a numeric non-root user"
    # Both images import LiteLLM (the operator through gateway_plugins): never fetch prices from the internet.
    assert "LITELLM_LOCAL_MODEL_COST_MAP=True" in text


def test_images_share_one_base():
    """One digest to bump (Renovate/Dependabot) and one Python for the operator and the proxy."""
    bases = {ref for d in DOCKERFILES for ref in _base_images(d)}
    assert len(bases) == 1, bases


def test_proxy_image_has_no_kopf_and_local_cost_map():
    text = (ROOT / "images" / "proxy.Dockerfile").read_text()
    assert "LITELLM_LOCAL_MODEL_COST_MAP=True" in text
    instructions = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    assert "requirements.lock" not in instructions.replace("requirements-proxy.lock", "")
    assert 'import kopf" 2>/dev/null' in instructions  # the build fails if kopf slipped in


def test_default_images_match_package_version():
    """The LLMGateway CRD's default proxy image and the operator image ship with the same release."""
    crd = yaml.safe_load((CHART / "crds" / "llmgateways.yaml").read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    assert spec["image"]["default"] == f"ghcr.io/kubegate/proxy:{_package_version()}"


def test_proxy_image_default_command_matches_the_operator_mounts():
    from gateway_operator.builders.proxy import build_proxy_deployment

    gateway = {"apiVersion": "kubegate.dev/v1alpha1", "kind": "LLMGateway", "spec": {}}
    gateway["metadata"] = {"name": "main", "namespace": "ns", "uid": "u"}
    (container,) = build_proxy_deployment(gateway, {}, "x", policy_public_key="k")["spec"]["template"]["spec"][
        "containers"
    ]
    config = container["args"][container["args"].index("--config") + 1]
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert str(PurePosixPath(config).parent) in mounts
    cmd = json.loads(re.search(r"^CMD (\[.*\])$", (ROOT / "images" / "proxy.Dockerfile").read_text(), re.M)[1])
    assert cmd[cmd.index("--config") + 1] == config


def test_proxy_container_runs_as_the_proxy_image_user():
    from gateway_operator.builders.proxy import build_proxy_deployment

    gateway = {"apiVersion": "kubegate.dev/v1alpha1", "kind": "LLMGateway", "spec": {}}
    gateway["metadata"] = {"name": "main", "namespace": "ns", "uid": "u"}
    (container,) = build_proxy_deployment(gateway, {}, "x", policy_public_key="k")["spec"]["template"]["spec"][
        "containers"
    ]
    user, group = re.search(r"^USER (\d+):(\d+)$", (ROOT / "images" / "proxy.Dockerfile").read_text(), re.M).groups()
    sc = container["securityContext"]
    assert (sc["runAsUser"], sc["runAsGroup"]) == (int(user), int(group))


def test_managed_redis_default_image_is_pinned_by_digest():
    crd = yaml.safe_load((CHART / "crds" / "llmgateways.yaml").read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    image = spec["redis"]["properties"]["image"]["default"]
    m = re.fullmatch(r"redis:7\.4-alpine@sha256:([0-9a-f]{64})", image)
    assert m, f"managed Redis default {image} is not redis:7.4-alpine@sha256:<64 hex>"
    assert len(set(m[1])) > 4, f"{image} has a placeholder digest"


def test_chart_versions_equal_package_version():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["version"] == chart["appVersion"] == _package_version()
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["operator"]["image"]["tag"] == ""  # falls back to appVersion
    rendered = list(yaml.safe_load_all(helm_template()))
    deploy = next(d for d in rendered if d and d["kind"] == "Deployment")
    assert deploy["spec"]["template"]["spec"]["containers"][0]["image"] == (
        f"ghcr.io/kubegate/operator:{_package_version()}"
    )


def test_release_named_kubegate_is_not_repeated_in_names():
    rendered = run("helm", "template", "kubegate", str(CHART), "-n", "kubegate-system").stdout
    names = {d["metadata"]["name"] for d in yaml.safe_load_all(rendered) if d}
    assert {"kubegate-operator", "kubegate-developer", "kubegate-billing"} <= names, names
    assert not any("kubegate-kubegate" in n for n in names)


def test_operator_pod_is_restricted():
    deploy = next(d for d in yaml.safe_load_all(helm_template()) if d and d["kind"] == "Deployment")
    pod = deploy["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert container["args"][0] == "operator"


def _operator_args(*values: str) -> list[str]:
    deploy = next(d for d in yaml.safe_load_all(helm_template(*values)) if d and d["kind"] == "Deployment")
    return deploy["spec"]["template"]["spec"]["containers"][0]["args"]


@pytest.mark.parametrize(
    ("values", "flags", "absent"),
    [
        ((), ["--log-format=full", "--all-namespaces", "--standalone"], ["--debug", "--quiet"]),
        (("operator.logLevel=debug", "operator.logFormat=json"), ["--debug", "--log-format=json"], ["--quiet"]),
        (("operator.logLevel=warning",), ["--quiet"], ["--debug"]),
        (("operator.watchNamespaces={a,b}",), ["--namespace=a", "--namespace=b"], ["--all-namespaces"]),
    ],
)
def test_operator_values_reach_kopf_flags(values, flags, absent):
    args = _operator_args(*values)
    assert set(flags) <= set(args), args
    assert not set(absent) & set(args), args


def test_helm_lint_default_and_non_default_values():
    run("helm", "lint", "--strict", str(CHART))
    sets = [a for s in non_default() for a in ("--set", s)]
    run("helm", "lint", "--strict", str(CHART), *sets)


def test_non_default_values_render_optional_objects():
    kinds = [d["kind"] for d in yaml.safe_load_all(helm_template(*non_default())) if d]
    for kind in ("LLMGateway", "ModelRoute", "ServiceMonitor", "ConfigMap"):
        assert kind in kinds
    defaults = [d["kind"] for d in yaml.safe_load_all(helm_template()) if d]
    assert "LLMGateway" not in defaults and "ServiceMonitor" not in defaults


def test_user_roles_aggregate_to_builtin_roles():
    roles = {
        d["metadata"]["name"].removeprefix("r-kubegate-"): d
        for d in yaml.safe_load_all(helm_template())
        if d and d["kind"] == "ClusterRole"
    }
    assert roles["viewer"]["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
    assert roles["tenant-admin"]["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
    write_verbs = {"create", "update", "patch", "delete"}
    for name in ("viewer", "developer", "billing"):
        assert not any(write_verbs & set(r["verbs"]) for r in roles[name]["rules"]), name
    assert [r["resources"] for r in roles["billing"]["rules"]] == [["budgets"]]


def _dashboard() -> dict:
    return json.loads((CHART / "dashboards" / "kubegate.json").read_text())


def _exported_metrics() -> dict[str, tuple[str, ...]]:
    """Every kubegate series name the data plane can export -> its label names (counters as ``*_total``)."""
    from prometheus_client import REGISTRY

    import gateway_plugins.audit.metrics
    import gateway_plugins.metrics  # noqa: F401

    # _names_to_collectors/_labelnames are private but the only way to see label names before a sample exists.
    return {
        name: tuple(getattr(collector, "_labelnames", ()))
        for name, collector in REGISTRY._names_to_collectors.items()
        if name.startswith("kubegate_")
    }


# Prometheus adds these to every scraped series (target labels), and `le` comes with histogram buckets.
TARGET_LABELS = {"namespace", "pod", "service", "instance", "job", "le"}


def test_dashboard_is_valid_json_with_tenant_panels():
    dash = _dashboard()
    exprs = " ".join(t["expr"] for p in dash["panels"] for t in p["targets"])
    for metric in (
        "kubegate_requests_total",
        "kubegate_cost_usd_total",
        "kubegate_refusals_total",
        "kubegate_pii_entities_total",
    ):
        assert metric in exprs
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    # Tenants are namespaced: two namespaces may both have a tenant "team" and must not be summed together.
    for grouping in re.findall(r"by \(([^)]*)\)", exprs):
        labels = {x.strip() for x in grouping.split(",")}
        assert "tenant" not in labels or "namespace" in labels, grouping


def test_dashboard_panels_do_not_overlap():
    cells: dict[tuple[int, int], str] = {}
    for p in _dashboard()["panels"]:
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24, p["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{p['title']!r} overlaps {cells[(x, y)]!r}"
                cells[(x, y)] = p["title"]


def test_dashboard_queries_only_metrics_and_labels_the_data_plane_exports():
    exported = _exported_metrics()
    for panel in _dashboard()["panels"]:
        for target in panel["targets"]:
            expr = target["expr"]
            names = set(re.findall(r"\bkubegate_\w+", expr))
            assert names, f"{panel['title']!r} queries no kubegate metric"
            for name in names:
                assert name in exported, f"{panel['title']!r}: {name} is not exported by gateway_plugins"
            used = set(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)\s*\"", expr))
            for grouping in re.findall(r"by \(([^)]*)\)", expr):
                used |= {x.strip() for x in grouping.split(",")}
            known = TARGET_LABELS.union(*(exported[n] for n in names))
            assert used <= known, f"{panel['title']!r}: labels {used - known} are not on {names}"


def test_dashboard_shows_budget_state_by_tenant():
    panels = [p for p in _dashboard()["panels"] if any("kubegate_budget_used_ratio" in t["expr"] for t in p["targets"])]
    assert {p["type"] for p in panels} >= {"bargauge"}, "a current-state panel of budget use per tenant"
    for p in panels:
        (target,) = p["targets"]
        assert re.search(r"by \(namespace, tenant\)", target["expr"]), target["expr"]
        defaults = p["fieldConfig"]["defaults"]
        assert defaults["unit"] == "percentunit"  # the gauge is a ratio: 1.0 is the whole budget
        steps = [s["value"] for s in defaults["thresholds"]["steps"]]
        assert steps[-1] == 1, "red exactly where a hard budget refuses"


def test_dashboard_shows_pii_detections_by_tenant_and_entity():
    panels = [
        p for p in _dashboard()["panels"] if any("kubegate_pii_entities_total" in t["expr"] for t in p["targets"])
    ]
    assert panels, "a panel of PII detections (kubegate_pii_entities_total)"
    for p in panels:
        (target,) = p["targets"]
        (grouping,) = re.findall(r"by \(([^)]*)\)", target["expr"])
        # Per tenant (namespaced) and entity type, with the action so masked and blocked findings stay apart.
        assert {x.strip() for x in grouping.split(",")} == {"namespace", "tenant", "entity", "action"}, grouping
        # A counter: a rate/increase of it, never the raw ever-growing total.
        assert re.search(r"\b(rate|increase)\(kubegate_pii_entities_total(\{[^}]*\})?\[", target["expr"]), target[
            "expr"
        ]


def test_dashboard_configmap_carries_the_dashboard_file():
    rendered = helm_template("metrics.grafanaDashboard.enabled=true")
    cm = next(d for d in yaml.safe_load_all(rendered) if d and d["kind"] == "ConfigMap")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["namespace"] == "kubegate-system"
    assert json.loads(cm["data"]["kubegate.json"]) == _dashboard()
    moved = helm_template("metrics.grafanaDashboard.enabled=true", "metrics.grafanaDashboard.namespace=monitoring")
    cm = next(d for d in yaml.safe_load_all(moved) if d and d["kind"] == "ConfigMap")
    assert cm["metadata"]["namespace"] == "monitoring"


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ("operator.replicas=many", "/operator/replicas"),
        ("operator.bogus=1", "bogus"),
        ("operator.logLevel=verbose", "/operator/logLevel"),
        ("operator.logLevel=error", "/operator/logLevel"),  # kopf has no error-only level
        ("operator.logFormat=xml", "/operator/logFormat"),
        ("gateway.create=true", "operator.watchNamespaces"),  # with a namespace list that misses the release's
        ("gateway.name=Not_A_Name", "/gateway/name"),
        ("metrics.serviceMonitor.interval=often", "/metrics/serviceMonitor/interval"),
        ("metrics.grafanaDashboard.namespace=Monitoring", "/metrics/grafanaDashboard/namespace"),
        ("operator.image.pullPolicy=Sometimes", "/operator/image/pullPolicy"),
        ("operator.imagePullSecrets[0].secret=regcred", "/operator/imagePullSecrets/0"),
        ("imagePullSecrets[0].secret=regcred", "/imagePullSecrets/0"),
        ("nameOverride=Not_A_Name", "/nameOverride"),
        ("fullnameOverride=x_y", "/fullnameOverride"),
        ("operator.podLabels.team=null", "/operator/podLabels/team"),
        ("operator.extraEnv[0].value=x", "/operator/extraEnv/0"),  # no name
        ("operator.topologySpreadConstraints[0].maxSkew=0", "/operator/topologySpreadConstraints/0"),
        ("metrics.serviceMonitor.scrapeTimeout=soon", "/metrics/serviceMonitor/scrapeTimeout"),
        ("metrics.serviceMonitor.relabelings[0].action=explode", "/metrics/serviceMonitor/relabelings/0/action"),
        ("metrics.prometheusRule.bogus=1", "bogus"),
    ],
)
def test_bad_values_are_rejected_naming_the_field(value, field):
    res = run("helm", "template", "r", str(CHART), "--set", value, "--set", "operator.watchNamespaces={a}", check=False)
    assert res.returncode != 0
    assert field in res.stderr, res.stderr


def _alert_rules() -> list[dict]:
    doc = yaml.safe_load((CHART / "files" / "prometheus-rules.yaml").read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def _series_name(name: str, exported: dict[str, tuple[str, ...]]) -> str:
    """A histogram's _bucket/_sum/_count series belongs to the histogram's name."""
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and name[: -len(suffix)] in exported:
            return name[: -len(suffix)]
    return name


def test_alert_rules_use_only_metrics_and_labels_the_data_plane_exports():
    exported = _exported_metrics()
    rules = _alert_rules()
    assert {r["alert"] for r in rules} >= {
        "KubegateBudgetThresholdReached",
        "KubegateHighErrorRate",
        "KubegateHighRefusalRate",
        "KubegateAuditSpoolGrowing",
        "KubegatePolicyRefused",
        "KubegateRedisUnavailable",
        "KubegateRedisMemoryHigh",
        "KubegateRedisMemoryFull",
    }
    for rule in rules:
        expr = rule["expr"]
        names = {_series_name(n, exported) for n in re.findall(r"\bkubegate_\w+", expr)}
        assert names, f"{rule['alert']} uses no kubegate metric"
        for name in names:
            assert name in exported, f"{rule['alert']}: {name} is not exported by gateway_plugins"
        used = set(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)\s*\"", expr))
        for grouping in re.findall(r"by \(([^)]*)\)", expr):
            used |= {x.strip() for x in grouping.split(",")}
        known = TARGET_LABELS.union(*(exported[n] for n in names))
        assert used <= known, f"{rule['alert']}: labels {used - known} are not on {names}"
        # Label values matched literally must be values the code emits, or the alert can never fire.
        for label, value in re.findall(r"(outcome|reason)=\"([^\"]+)\"", expr):
            allowed = _REFUSAL_REASONS if label == "reason" else _OUTCOMES
            assert value in allowed, f"{rule['alert']}: {label}={value!r} is never exported"
        assert rule["labels"]["severity"] in {"info", "warning", "critical"}
        assert rule["annotations"]["summary"]


def _outcomes() -> set[str]:
    from gateway_plugins import metrics

    return set(metrics.OUTCOMES) | {"written", "spooled", "dropped", "recovered"}  # the audit writer's outcomes


_OUTCOMES = _outcomes()


def _refusal_reasons() -> frozenset[str]:
    from gateway_plugins import metrics

    return metrics._REASONS


_REFUSAL_REASONS = _refusal_reasons()


def test_prometheus_rule_is_off_by_default_and_renders_the_rules_file():
    assert "PrometheusRule" not in helm_template()
    rendered = helm_template(
        "metrics.prometheusRule.enabled=true",
        "metrics.prometheusRule.labels.release=prom",
        "metrics.prometheusRule.additionalLabels.team=platform",
    )
    (rule,) = [d for d in yaml.safe_load_all(rendered) if d and d["kind"] == "PrometheusRule"]
    assert rule["metadata"]["labels"]["release"] == "prom"
    assert rule["metadata"]["namespace"] == "kubegate-system"
    rendered_rules = [r for g in rule["spec"]["groups"] for r in g["rules"]]
    source = _alert_rules()
    assert [r["alert"] for r in rendered_rules] == [r["alert"] for r in source]
    for got, want in zip(rendered_rules, source, strict=True):
        assert got["expr"] == want["expr"] and got["annotations"] == want["annotations"]
        # Extra labels are added, never over an alert's own severity.
        assert got["labels"] == {"team": "platform", **want["labels"]}


def test_dashboard_has_namespace_gateway_tenant_variables_used_by_every_panel():
    dash = _dashboard()
    names = [v["name"] for v in dash["templating"]["list"]]
    assert names[:1] == ["datasource"] and {"namespace", "gateway", "tenant"} <= set(names)
    for panel in dash["panels"]:
        for target in panel["targets"]:
            for selector in re.findall(r"kubegate_\w+\{([^}]*)\}", target["expr"]):
                assert 'namespace=~"$namespace"' in selector and 'service=~"$gateway"' in selector, panel["title"]
            assert "kubegate_" in target["expr"]


def test_dashboard_has_latency_panels_for_request_upstream_and_first_token():
    exprs = " ".join(t["expr"] for p in _dashboard()["panels"] for t in p["targets"])
    for metric in (
        "kubegate_request_duration_seconds_bucket",
        "kubegate_upstream_duration_seconds_bucket",
        "kubegate_time_to_first_token_seconds_bucket",
    ):
        assert "histogram_quantile(0.95, sum by (le" in exprs and metric in exprs, metric


def _docs(*values: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(helm_template(*values)) if d]


def test_name_and_fullname_overrides():
    named = _docs("nameOverride=gate", "metrics.prometheusRule.enabled=true")
    deploy = next(d for d in named if d["kind"] == "Deployment")
    assert deploy["metadata"]["name"] == "r-gate-operator"
    assert deploy["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] == "gate"
    assert deploy["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"] == "gate"
    full = _docs("fullnameOverride=kg", "metrics.prometheusRule.enabled=true")
    names = {d["metadata"]["name"] for d in full}
    assert {"kg-operator", "kg-alerts"} <= names, names
    assert not any(n.startswith("r-") for n in names), names


def test_pod_conventions_reach_the_operator_pod():
    deploy = next(d for d in _docs(*non_default()) if d["kind"] == "Deployment")
    pod = deploy["spec"]["template"]
    spec = pod["spec"]
    assert pod["metadata"]["labels"]["team"] == "platform"
    assert spec["imagePullSecrets"] == [{"name": "mirror"}, {"name": "regcred"}]
    assert spec["priorityClassName"] == "system-cluster-critical"
    (spread,) = spec["topologySpreadConstraints"]
    assert spread["topologyKey"] == "topology.kubernetes.io/zone"
    # No labelSelector given: the operator's own pods, not none (a null selector matches nothing).
    assert spread["labelSelector"]["matchLabels"] == deploy["spec"]["selector"]["matchLabels"]
    (container,) = spec["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["HTTPS_PROXY"] == "http://proxy.internal:3128" and env["LITELLM_LOCAL_MODEL_COST_MAP"] == "True"
    # Security contexts replaced as a whole, by values.
    custom = next(
        d
        for d in _docs("operator.securityContext.runAsUser=1234", "operator.podSecurityContext.fsGroup=99")
        if d["kind"] == "Deployment"
    )["spec"]["template"]["spec"]
    assert custom["securityContext"]["fsGroup"] == 99
    assert custom["containers"][0]["securityContext"]["runAsUser"] == 1234


def test_service_monitor_scrape_timeout_and_relabelings():
    sm = next(d for d in _docs(*non_default()) if d["kind"] == "ServiceMonitor")
    (endpoint,) = sm["spec"]["endpoints"]
    assert endpoint["scrapeTimeout"] == "10s"
    # The metrics Service is <gateway>-metrics: the first relabeling gives `service` the gateway's name back.
    assert endpoint["relabelings"] == [
        {"sourceLabels": ["__meta_kubernetes_service_label_kubegate_dev_gateway"], "targetLabel": "service"},
        {"targetLabel": "cluster", "replacement": "prod-eu"},
    ]
    assert sm["spec"]["selector"]["matchLabels"]["kubegate.dev/component"] == "metrics"
    assert endpoint["port"] == "metrics"
    assert (
        "scrapeTimeout"
        not in next(d for d in _docs("metrics.serviceMonitor.enabled=true") if d["kind"] == "ServiceMonitor")["spec"][
            "endpoints"
        ][0]
    )
