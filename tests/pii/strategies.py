"""Hypothesis strategies: valid values of each structured type, and the obfuscations a client can apply to them.

Used in-process (tests/pii/test_obfuscation.py, many examples) and through a real proxy
(tests/dataplane/test_pii_obfuscation_proxy.py, a few). A leak check compares alphanumeric cores: what reaches
the upstream, normalized and stripped of separators, must not contain the value's core.
"""

from __future__ import annotations

import contextlib
import json
import re

from hypothesis import strategies as st

from gateway_plugins.pii.normalize import INVISIBLE, normalize
from gateway_plugins.pii.structured import luhn

_digits = st.integers(0, 9).map(str)


def _luhn_complete(prefix: str, length: int, body: str) -> str:
    partial = (prefix + body)[: length - 1]
    return next(partial + d for d in "0123456789" if luhn(partial + d))


CARD_BRANDS = [
    ("4", 16),
    ("4", 13),
    ("4", 19),
    ("51", 16),
    ("55", 16),
    ("2221", 16),
    ("2720", 16),
    ("34", 15),
    ("37", 15),
    ("6011", 16),
    ("65", 19),
    ("3528", 16),
    ("36", 14),
    ("5018", 12),
    ("6759", 19),
]


@st.composite
def cards(draw) -> str:
    prefix, length = draw(st.sampled_from(CARD_BRANDS))
    body = "".join(draw(st.lists(_digits, min_size=length, max_size=length)))
    number = _luhn_complete(prefix, length, body)
    sep = draw(st.sampled_from(["", " ", "-", "."]))
    return sep.join(number[i : i + 4] for i in range(0, length, 4)) if sep else number


@st.composite
def ssns(draw) -> str:
    area = draw(st.integers(1, 899).filter(lambda a: a != 666))
    group, serial = draw(st.integers(1, 99)), draw(st.integers(1, 9999))
    sep = draw(st.sampled_from(["-", " ", ".", ""]))
    return f"{area:03d}{sep}{group:02d}{sep}{serial:04d}"


# Valid numbering-plan numbers per region, written the way each country writes them.
PHONE_FORMATS = [
    lambda d: f"({d(2, 9)}{d(0, 8)}{d(0, 9)}) {d(2, 9)}{d(0, 9)}{d(0, 9)}-{d(0, 9)}{d(0, 9)}{d(0, 9)}{d(0, 9)}",
    lambda d: f"+1 212 {d(2, 9)}{d(0, 9)}{d(0, 9)} {d(0, 9)}{d(0, 9)}{d(0, 9)}{d(0, 9)}",
    lambda d: f"+44 20 7{d(0, 9)}{d(0, 9)}{d(0, 9)} {d(0, 9)}{d(0, 9)}{d(0, 9)}{d(0, 9)}",
    lambda d: f"07700 9{d(0, 9)}{d(0, 9)}{d(0, 9)}{d(0, 9)}{d(0, 9)}",
    lambda d: f"030 {d(1, 9)}{d(0, 9)}{d(0, 9)}{d(0, 9)}{d(0, 9)}{d(0, 9)}{d(0, 9)}",
    lambda d: f"01 {d(1, 9)}{d(0, 9)} {d(0, 9)}{d(0, 9)} {d(0, 9)}{d(0, 9)} {d(0, 9)}{d(0, 9)}",
    lambda d: f"+34 6{d(0, 9)}{d(0, 9)} {d(0, 9)}{d(0, 9)}{d(0, 9)} {d(0, 9)}{d(0, 9)}{d(0, 9)}",
    lambda d: f"+39 3{d(2, 9)}{d(0, 9)} {d(0, 9)}{d(0, 9)}{d(0, 9)} {d(0, 9)}{d(0, 9)}{d(0, 9)}{d(0, 9)}",
    lambda d: f"06-{d(1, 9)}{d(0, 9)}{d(0, 9)}{d(0, 9)}{d(0, 9)}{d(0, 9)}{d(0, 9)}{d(0, 9)}",
]


@st.composite
def phones(draw) -> str:
    fmt = draw(st.sampled_from(PHONE_FORMATS))
    number = fmt(lambda lo, hi: str(draw(st.integers(lo, hi))))
    if draw(st.booleans()) and number[0] in "(+":
        number = number.replace(" ", ".").replace("-", ".").replace("(", "").replace(")", "")
    return number


@st.composite
def emails(draw) -> str:
    local = draw(st.from_regex(r"[a-z]{2,8}(\.[a-z]{2,8})?", fullmatch=True))
    host = draw(st.from_regex(r"[a-z]{3,10}", fullmatch=True))
    return f"{local}@{host}.{draw(st.sampled_from(['com', 'org', 'net', 'de', 'io', 'co.uk']))}"


@st.composite
def ibans(draw) -> str:
    country, bban = draw(
        st.sampled_from(
            [
                ("DE", lambda: "".join(draw(st.lists(_digits, min_size=18, max_size=18)))),
                ("FR", lambda: "".join(draw(st.lists(_digits, min_size=23, max_size=23)))),
                ("GB", lambda: "NWBK" + "".join(draw(st.lists(_digits, min_size=14, max_size=14)))),
            ]
        )
    )
    body = bban()
    check = 98 - int("".join(str(int(c, 36)) for c in body + country + "00")) % 97
    iban = f"{country}{check:02d}{body}"
    return " ".join(iban[i : i + 4] for i in range(0, len(iban), 4)) if draw(st.booleans()) else iban


@st.composite
def ipv4s(draw) -> str:
    first = draw(st.integers(11, 223).filter(lambda a: a not in (127, 169, 172, 192)))
    return ".".join(
        str(x) for x in (first, draw(st.integers(0, 255)), draw(st.integers(0, 255)), draw(st.integers(1, 254)))
    )


# (entity, values, sentence): the sentence names the value as people do, so the test is about obfuscation.
TYPED = [
    ("EMAIL_ADDRESS", emails(), "Please write to {} about it."),
    ("PHONE_NUMBER", phones(), "My phone is {} after six."),
    ("CREDIT_CARD", cards(), "Charge card {} for the renewal."),
    ("US_SSN", ssns(), "My SSN is {} for the form."),
    ("IBAN_CODE", ibans(), "Wire it to IBAN {} please."),
    ("IP_ADDRESS", ipv4s(), "The host {} is down."),
]
values = st.sampled_from(TYPED).flatmap(lambda t: st.tuples(st.just(t[0]), t[1], st.just(t[2])))


def fullwidth(value: str, picks: list[bool]) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if p and "!" <= c <= "~" else c for c, p in zip(value, picks, strict=False))


def zero_width(value: str, at: list[int], chars: list[str]) -> str:
    out = list(value)
    for pos, ch in sorted(zip(at, chars, strict=False), reverse=True):
        out.insert(1 + pos % max(1, len(value) - 1), ch)
    return "".join(out)


def json_escaped(value: str, picks: list[bool]) -> str:
    """``value`` as it appears inside string-encoded JSON, with some characters written as \\uXXXX."""
    return "".join(f"\\u{ord(c):04x}" if p else c for c, p in zip(value, picks, strict=False)) + value[len(picks) :]


OBFUSCATIONS = ["plain", "fullwidth", "zero_width", "json_escape", "split_parts", "split_messages"]
invisible = st.sampled_from(sorted(INVISIBLE))


@st.composite
def obfuscated_bodies(draw) -> tuple[str, str, dict]:
    """(entity, value, chat body) with ``value`` obfuscated one way."""
    entity, value, sentence = draw(values)
    how = draw(st.sampled_from(OBFUSCATIONS))
    picks = draw(st.lists(st.booleans(), min_size=len(value), max_size=len(value)))
    before, after = sentence.split("{}")
    if how in ("plain", "fullwidth", "zero_width"):
        shown = value
        if how == "fullwidth":
            shown = fullwidth(value, picks)
        elif how == "zero_width":
            n = draw(st.integers(1, 3))
            shown = zero_width(
                value,
                draw(st.lists(st.integers(0, 99), min_size=n, max_size=n)),
                draw(st.lists(invisible, min_size=n, max_size=n)),
            )
        body = {"model": "echo", "messages": [{"role": "user", "content": before + shown + after}]}
    elif how == "json_escape":
        args = '{"note": "' + before + json_escaped(value, picks) + after + '"}'
        body = {
            "model": "echo",
            "messages": [
                {"role": "user", "content": "Send it."},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "send", "arguments": args}}],
                },
                {"role": "tool", "tool_call_id": "c1", "content": "ok"},
            ],
        }
    else:
        cut = draw(st.integers(1, len(value) - 1))
        first, second = before + value[:cut], value[cut:] + after
        if how == "split_parts":
            parts = [{"type": "text", "text": first}, {"type": "text", "text": second}]
            body = {"model": "echo", "messages": [{"role": "user", "content": parts}]}
        else:
            body = {
                "model": "echo",
                "messages": [{"role": "user", "content": first}, {"role": "user", "content": second}],
            }
    return entity, value, body


_STRUCTURAL = frozenset({"model", "role", "type", "id", "name", "tool_call_id", "object", "finish_reason"})
_NOT_CORE = re.compile(r"[^0-9A-Za-z@]")


def core(text: str) -> str:
    return _NOT_CORE.sub("", text)


def leaked(value: str, sent: object) -> bool:
    """Whether ``value`` can be read in what was sent: its texts joined, escapes decoded, separators ignored."""
    texts: list[str] = []

    def walk(v: object) -> None:
        if isinstance(v, str):
            texts.append(v)
            # String-encoded JSON (tool arguments): its strings too, as the model reads them.
            if v[:1] in "{[":
                with contextlib.suppress(ValueError):
                    walk(json.loads(v))
        elif isinstance(v, dict):
            # Only free text: a role or a tool name between two halves of a split value would hide it.
            for k, x in v.items():
                if k not in _STRUCTURAL:
                    walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)

    walk(sent)
    return core(value) in core(normalize("".join(texts)).text)
