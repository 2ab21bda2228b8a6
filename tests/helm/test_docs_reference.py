"""Docs that must stay true: every metric and refusal code is in docs/reference.md; the architecture picture is
what docs/src/architecture.py draws; the README shows the report screenshot."""

from __future__ import annotations

import importlib.util
import re

from tests.helm.test_static import _exported_metrics
from tests.helm.tools import ROOT

REFERENCE = ROOT / "docs" / "reference.md"


def test_every_exported_metric_is_documented():
    doc = REFERENCE.read_text()
    documented = set(re.findall(r"`(kubegate_\w+)`", doc))
    exported = {n for n in _exported_metrics() if not n.endswith(("_created", "_bucket", "_sum", "_count"))}
    # prometheus-client registers counters under both `x` and `x_total`; the series name is `x_total`.
    series = {n for n in exported if (n + "_total") not in exported}
    assert series - documented == set(), f"metrics missing from docs/reference.md: {series - documented}"


def test_every_refusal_code_is_documented():
    from gateway_plugins import metrics

    doc = REFERENCE.read_text()
    missing = {code for code in metrics.REFUSAL_REASONS if f"`{code}`" not in doc}
    assert not missing, f"refusal codes missing from docs/reference.md: {missing}"


def test_architecture_svg_is_generated_from_its_source():
    spec = importlib.util.spec_from_file_location("architecture", ROOT / "docs" / "src" / "architecture.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert (ROOT / "docs" / "architecture.svg").read_text() == module.draw(), (
        "docs/architecture.svg is stale: run python docs/src/architecture.py"
    )


def test_readme_shows_the_report_screenshot_and_links_the_new_docs():
    readme = (ROOT / "README.md").read_text()
    assert "](docs/report.png)" in readme and (ROOT / "docs" / "report.png").stat().st_size > 10_000
    for doc in ("troubleshooting.md", "reference.md", "providers.md", "operations.md", "architecture.svg"):
        assert f"docs/{doc}" in readme, doc
        assert (ROOT / "docs" / doc).exists(), doc
    assert (ROOT / "CHANGELOG.md").exists() and "Upgrade notes" in (ROOT / "CHANGELOG.md").read_text()
