"""NER as the proxy runs it: the trimmed spaCy pipeline, windows of long texts, languages, ORGANIZATION's context.

Real spaCy model (the one the image ships), real Presidio; no timing is asserted (bench/bench_pii.py measures).
"""

from __future__ import annotations

import itertools

import pytest
import spacy
from hypothesis import given, settings
from hypothesis import strategies as st
from litellm.proxy._types import ProxyException

from gateway_plugins import pii
from gateway_plugins.context import RequestContext
from gateway_plugins.pii import engine
from gateway_plugins.policy.schema import IMAGE_NER_MODELS, PiiPolicy, Tenant

MODEL = IMAGE_NER_MODELS["en"]
PROSE = (
    "Maria Lopez met Daniel Andreasen of SJW Group in Berlin on Tuesday. She worked at Welbilt Inc. in Paris "
    "before she moved to Madrid, and Jamie Echevarria still calls her from Toronto every week. "
)


def _ctx(**policy) -> RequestContext:
    tenant = Tenant(id="ner", pii=PiiPolicy(**policy))
    return RequestContext(request_id="r", tenant=tenant, key_id="k", requested_model="m", call_type="acompletion")


def test_the_trimmed_pipeline_finds_the_same_entities_as_the_full_one():
    full = spacy.load(MODEL)
    trimmed = engine.ENGINES.nlp(MODEL).nlp["en"]
    assert trimmed.pipe_names == ["ner"], trimmed.pipe_names
    text = PROSE * 20
    assert [(e.start_char, e.end_char, e.label_) for e in trimmed(text).ents] == [
        (e.start_char, e.end_char, e.label_) for e in full(text).ents
    ]


@settings(max_examples=200, deadline=None)
@given(
    st.integers(engine.WINDOW_CHARS + 1, 4 * engine.WINDOW_CHARS),
    st.lists(st.tuples(st.integers(1, 400), st.sampled_from(" \n")), min_size=1, max_size=40),
)
def test_windows_cover_the_text_with_overlap(size, words):
    # Words of these lengths, cycled, up to ``size`` characters: long words leave no whitespace near an edge.
    text = ""
    while len(text) < size:
        text += "".join("a" * n + sep for n, sep in words)
    text = text[:size]
    wins = engine.windows(text)
    assert wins[0][0] == 0 and wins[-1][1] == len(text)
    for (s1, e1), (s2, e2) in itertools.pairwise(wins):
        assert e1 - s1 <= engine.WINDOW_CHARS and s2 > s1
        assert e1 - s2 >= engine.WINDOW_OVERLAP - engine._EDGE_SLACK, (s1, e1, s2, e2)


@pytest.mark.parametrize("shift", range(0, 40, 7))
def test_names_at_window_edges_are_masked_whole_with_offsets_right(shift):
    """A long prompt (over 16 KB, several windows) with names everywhere, window edges included: every name's
    characters are masked, exactly where they are in the original."""
    engine.CACHE.clear()
    text = "x" * shift + " " + PROSE * (3 * engine.WINDOW_CHARS // len(PROSE))
    spans = engine.analyze_texts([text], PiiPolicy(entities={"PERSON": "mask", "LOCATION": "mask"}))[0]
    for name in ("Maria Lopez", "Daniel Andreasen", "Berlin", "Madrid", "Toronto"):
        at = text.find(name)
        while at != -1:
            assert any(s.start <= at and at + len(name) <= s.end for s in spans), (name, at)
            at = text.find(name, at + 1)
    assert all(text[s.start : s.end].strip() == text[s.start : s.end] for s in spans)


async def test_a_language_list_with_a_language_without_a_model_fails_closed():
    ctx = _ctx(languages=["en", "de"], entities={"PERSON": "mask"})
    with pytest.raises(ProxyException) as info:
        await pii.mask_request(ctx, {"messages": [{"role": "user", "content": "Hallo Frau Schneider"}]}, "x", None)
    assert str(info.value.code) == "503" and info.value.openai_code == "pii_unavailable"
    assert "Schneider" not in str(ctx.decisions)


async def test_a_language_list_decides_the_models_and_structured_types_need_none():
    assert engine.ner_models(PiiPolicy(languages=["en"], entities={"PERSON": "mask"})) == (MODEL,)
    assert engine.ner_models(PiiPolicy(languages=["de", "fr"])) == ()
    assert engine.ner_models(PiiPolicy(language="de", languages=["en"], entities={"PERSON": "mask"})) == (MODEL,)
    ctx = _ctx(languages=["de", "fr"])
    data = {"messages": [{"role": "user", "content": "Schreiben Sie an jane.roe@example.org, Frau Schneider."}]}
    await pii.mask_request(ctx, data, "x", None)
    assert data["messages"][0]["content"] == "Schreiben Sie an <EMAIL_ADDRESS_1>, Frau Schneider."


def test_a_language_list_changes_the_cache_fingerprint():
    a = PiiPolicy(entities={"PERSON": "mask"})
    assert engine.fingerprint(a) != engine.fingerprint(PiiPolicy(entities={"PERSON": "mask"}, languages=["en", "fr"]))


def test_acronyms_spacy_calls_organizations_are_kept_by_the_tenants_allow_list():
    """spaCy tags acronyms as organisations ("IBAN", "ATM"): the tenant's allowList (Presidio's allow list) keeps
    them in clear, while the same policy still masks a real organisation and the names around it."""
    engine.CACHE.clear()
    text = "Jamie Echevarria of Welbilt Inc. asked which IBAN the ATM in Berlin uses."
    policy = PiiPolicy(entities={"ORGANIZATION": "mask", "PERSON": "mask"}, allow_list=["IBAN", "ATM"])
    found = {text[s.start : s.end] for s in engine.analyze_texts([text], policy)[0]}
    assert "IBAN" not in found and "ATM" not in found, found
    assert {"Jamie Echevarria", "Welbilt Inc."} <= found, found


def test_every_image_model_is_installed_and_hash_pinned_in_the_proxy_lock():
    """IMAGE_NER_MODELS is what the CRD and the operator accept languages against: each model must really be in
    the proxy image, pinned by hash."""
    import re
    from pathlib import Path

    import spacy.util

    lock = (Path(__file__).resolve().parents[2] / "requirements-proxy.lock").read_text()
    for lang, model in IMAGE_NER_MODELS.items():
        assert spacy.util.is_package(model), (lang, model)
        dist = model.replace("_", "-")
        pinned = re.search(rf"^{re.escape(dist)}==[^\s]+ \\\n(\s+--hash=sha256:[0-9a-f]{{64}}.*\n)+", lock, re.M)
        assert pinned, f"{dist} is not pinned with a hash in requirements-proxy.lock"
