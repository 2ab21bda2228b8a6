"""Deterministic synthetic PII corpus: realistic prompts with known entity spans.

Values are generated to be *valid* (Luhn cards, mod-97 IBANs, SSNs in issued ranges, real
numbering-plan phone numbers) so recall measures the detector, not the generator.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

FIRST = [
    "Maria",
    "David",
    "Aisha",
    "Liam",
    "Sofia",
    "Kenji",
    "Olivia",
    "Mateo",
    "Priya",
    "Lukas",
    "Emma",
    "Noah",
    "Fatima",
    "Jonas",
    "Chloe",
    "Ivan",
    "Grace",
    "Omar",
    "Hannah",
    "Diego",
]
LAST = [
    "Gonzalez",
    "Smith",
    "Khan",
    "Murphy",
    "Rossi",
    "Tanaka",
    "Johnson",
    "Silva",
    "Patel",
    "Schneider",
    "Brown",
    "Nguyen",
    "Hassan",
    "Weber",
    "Martin",
    "Petrov",
    "Wilson",
    "Ali",
    "Fischer",
    "Lopez",
]
DOMAINS = ["example.com", "mail.example.org", "acme.io", "contoso.co.uk", "globex.de", "initech.net"]
US_AREAS = ["212", "415", "312", "646", "617", "303", "206", "512", "404", "718"]


@dataclass(frozen=True)
class Record:
    text: str
    gold: tuple[tuple[int, int, str], ...]  # (start, end, entity)


def luhn_complete(prefix: str, length: int, rng: random.Random) -> str:
    body = prefix + "".join(rng.choice("0123456789") for _ in range(length - len(prefix) - 1))
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            d -= 9 if d > 9 else 0
        total += d
    return body + str((10 - total % 10) % 10)


def card(rng: random.Random) -> str:
    kind = rng.choice(["visa", "mc", "amex"])
    if kind == "amex":
        n = luhn_complete(rng.choice(["34", "37"]), 15, rng)
        groups = [n[:4], n[4:10], n[10:]]
    else:
        n = luhn_complete("4" if kind == "visa" else str(rng.randint(51, 55)), 16, rng)
        groups = [n[i : i + 4] for i in range(0, 16, 4)]
    return rng.choice([" ", "-", ""]).join(groups)


def iban(rng: random.Random) -> str:
    country, bban = rng.choice(
        [
            ("DE", "".join(rng.choice("0123456789") for _ in range(18))),
            ("GB", "NWBK" + "".join(rng.choice("0123456789") for _ in range(14))),
            ("FR", "".join(rng.choice("0123456789") for _ in range(23))),
            ("NL", "ABNA" + "".join(rng.choice("0123456789") for _ in range(10))),
        ]
    )
    numeric = "".join(str(int(c, 36)) for c in bban + country + "00")
    check = 98 - int(numeric) % 97
    raw = f"{country}{check:02d}{bban}"
    if rng.random() < 0.5:
        return " ".join(raw[i : i + 4] for i in range(0, len(raw), 4))
    return raw


def ssn(rng: random.Random) -> str:
    while True:
        area = rng.choice([rng.randint(1, 665), rng.randint(667, 899)])
        group, serial = rng.randint(1, 99), rng.randint(1, 9999)
        digits = f"{area:03d}{group:02d}{serial:04d}"
        if len(set(digits)) > 2 and digits not in "0123456789" * 2:
            return rng.choice([f"{area:03d}-{group:02d}-{serial:04d}", f"{area:03d} {group:02d} {serial:04d}"])


def phone(rng: random.Random) -> str:
    a, e, n = rng.choice(US_AREAS), rng.randint(201, 989), rng.randint(0, 9999)
    fmt = rng.choice(["paren", "dash", "dot", "intl", "uk", "de"])
    if fmt == "paren":
        return f"({a}) {e} -{n:04d}".replace(" -", "-")
    if fmt == "dash":
        return f"{a}-{e}-{n:04d}"
    if fmt == "dot":
        return f"{a}.{e}.{n:04d}"
    if fmt == "intl":
        return f"+1 {a} {e} {n:04d}"
    if fmt == "uk":
        return f"+44 20 7{rng.randint(100, 999)} {rng.randint(1000, 9999)}"
    return f"+49 30 {rng.randint(2000000, 9999999)}"


def ip(rng: random.Random) -> str:
    if rng.random() < 0.6:
        return ".".join(str(rng.randint(1, 254)) for _ in range(4))
    groups = [f"{rng.randint(1, 0xFFFF):x}" for _ in range(8)]
    if rng.random() < 0.5:
        return ":".join(groups)
    return ":".join(groups[:3]) + "::" + ":".join(groups[6:])


def email(rng: random.Random, first: str, last: str) -> str:
    sep = rng.choice([".", "_", ""])
    return f"{first.lower()}{sep}{last.lower()}{rng.randint(1, 99) if rng.random() < 0.4 else ''}@{rng.choice(DOMAINS)}"


TEMPLATES = [
    "Hi, I'm {PERSON}. Please update my contact email to {EMAIL_ADDRESS} and my phone to {PHONE_NUMBER}.",
    "Draft a polite reply to {PERSON} ({EMAIL_ADDRESS}) saying the refund was issued to card {CREDIT_CARD}.",
    "Our server at {IP_ADDRESS} keeps timing out. Logs attached; ping me on {PHONE_NUMBER} if needed.",
    "Summarise this ticket: customer {PERSON}, SSN {US_SSN}, disputes a charge on {CREDIT_CARD}.",
    "Translate to German: 'Please transfer the deposit to IBAN {IBAN_CODE} before Friday.'",
    "Write SQL to find the user whose email is {EMAIL_ADDRESS} and who last logged in from {IP_ADDRESS}.",
    "Can you check whether {IBAN_CODE} is the right account for {PERSON}? The invoice total is 1,250.00 EUR.",
    "Fill in the form: name {PERSON}, social security number {US_SSN}, mobile {PHONE_NUMBER}.",
    "The firewall blocked {IP_ADDRESS} at 14:32 UTC on 2024-03-07; is that the VPN of {PERSON}?",
    "Explain why payment with {CREDIT_CARD} failed for order #48213 (3 items, version 2.4.1 of the app).",
]
NO_PII = [
    "Explain the difference between TCP and UDP in three sentences.",
    "Order #48213 shipped on 2024-03-07 with 3 items for a total of 1,250.00 EUR.",
    "Release 10.4.2 fixes bug 4411; upgrade from 10.3.9 by running make deploy.",
    "The meeting moved to 14:30 in room B-204; bring the Q3 numbers (growth 12.5%).",
    "Compute 1234 * 5678 and show the steps.",
]


def generate(n: int = 1200, seed: int = 20261123) -> list[Record]:
    rng = random.Random(seed)
    out: list[Record] = []
    for i in range(n):
        if i % 12 == 11:
            out.append(Record(rng.choice(NO_PII), ()))
            continue
        first, last = rng.choice(FIRST), rng.choice(LAST)
        values = {
            "PERSON": f"{first} {last}",
            "EMAIL_ADDRESS": email(rng, first, last),
            "PHONE_NUMBER": phone(rng),
            "CREDIT_CARD": card(rng),
            "IBAN_CODE": iban(rng),
            "US_SSN": ssn(rng),
            "IP_ADDRESS": ip(rng),
        }
        template = TEMPLATES[i % len(TEMPLATES)]
        text, gold, pos = "", [], 0
        while True:
            start = template.find("{", pos)
            if start < 0:
                text += template[pos:]
                break
            end = template.index("}", start)
            entity = template[start + 1 : end]
            text += template[pos:start]
            gold.append((len(text), len(text) + len(values[entity]), entity))
            text += values[entity]
            pos = end + 1
        out.append(Record(text, tuple(gold)))
    return out


def score(records: list[Record], predicted: list[tuple], entities: set[str]) -> dict[str, dict[str, float]]:
    """Recall and precision per entity type; a hit is a predicted span of the same type overlapping gold."""
    stats = {e: {"tp": 0, "fn": 0, "fp": 0} for e in entities}
    for record, spans in zip(records, predicted, strict=True):
        for start, end, entity in record.gold:
            if entity not in entities:
                continue
            hit = any(s.entity == entity and s.start < end and start < s.end for s in spans)
            stats[entity]["tp" if hit else "fn"] += 1
        for s in spans:
            if s.entity in stats and not any(
                e == s.entity and s.start < end and start < s.end for start, end, e in record.gold
            ):
                stats[s.entity]["fp"] += 1
    report = {}
    for e, st in stats.items():
        found = st["tp"] + st["fn"]
        claimed = st["tp"] + st["fp"]
        report[e] = {
            "n": found,
            "recall": st["tp"] / found if found else 1.0,
            "precision": st["tp"] / claimed if claimed else 1.0,
        }
    return report
