"""docs/crd-reference.md is generated from the chart CRDs and must not drift; docs only link to real files."""

from __future__ import annotations

import re

from tests.helm import gen_crd_reference
from tests.helm.tools import ROOT


def test_crd_reference_is_up_to_date():
    assert gen_crd_reference.OUT.read_text() == gen_crd_reference.render(), (
        "docs/crd-reference.md is stale: run python -m tests.helm.gen_crd_reference"
    )


def test_crd_reference_covers_every_kind_and_spec_field():
    doc = gen_crd_reference.OUT.read_text()
    for kind in ("LLMGateway", "ModelRoute", "Tenant", "Budget"):
        assert f"## {kind} (`kubegate.dev/v1alpha1`)" in doc
    for field in ("spec.redis.mode", "spec.deployments[].region", "spec.pii", "spec.thresholds[].action"):
        assert f"`{field}`" in doc


def test_docs_reference_existing_repo_paths():
    for doc in (ROOT / "docs").glob("*.md"):
        for path in re.findall(r"`((?:examples|charts|tests|operator|images)/[\w./-]+)`", doc.read_text()):
            assert (ROOT / path).exists(), f"{doc.name} mentions missing {path}"
