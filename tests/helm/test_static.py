"""Checks that need no cluster: pinned image bases, chart/package versions, values schema, helm lint."""

from __future__ import annotations

import re
import tomllib

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
    "operator.watchNamespaces={team-a,team-b}",
    "serviceAccount.name=kg-op",
)


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


def test_helm_lint_default_and_non_default_values():
    run("helm", "lint", "--strict", str(CHART))
    sets = [a for s in NON_DEFAULT for a in ("--set", s)]
    run("helm", "lint", "--strict", str(CHART), *sets)


def test_non_default_values_render_optional_objects():
    kinds = [d["kind"] for d in yaml.safe_load_all(helm_template(*NON_DEFAULT)) if d]
    for kind in ("Gateway", "ModelRoute", "ServiceMonitor", "ConfigMap"):
        assert kind in kinds
    defaults = [d["kind"] for d in yaml.safe_load_all(helm_template()) if d]
    assert "Gateway" not in defaults and "ServiceMonitor" not in defaults


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


def test_dashboard_is_valid_json_with_tenant_panels():
    import json

    dash = json.loads((CHART / "dashboards" / "kubegate.json").read_text())
    exprs = " ".join(t["expr"] for p in dash["panels"] for t in p["targets"])
    for metric in ("kubegate_requests_total", "kubegate_cost_usd_total", "kubegate_refusals_total"):
        assert metric in exprs


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ("operator.replicas=many", "/operator/replicas"),
        ("operator.bogus=1", "bogus"),
        ("operator.logLevel=verbose", "/operator/logLevel"),
        ("gateway.name=Not_A_Name", "/gateway/name"),
        ("metrics.serviceMonitor.interval=often", "/metrics/serviceMonitor/interval"),
        ("operator.image.pullPolicy=Sometimes", "/operator/image/pullPolicy"),
    ],
)
def test_bad_values_are_rejected_naming_the_field(value, field):
    res = run("helm", "template", "r", str(CHART), "--set", value, check=False)
    assert res.returncode != 0
    assert field in res.stderr, res.stderr
