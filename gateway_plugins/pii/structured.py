"""Finders for the numeric structured types: payment cards, US SSNs, phone numbers.

Pure functions over a (normalized) text returning ``(start, end, score)``. They replace Presidio's own card,
SSN and phone recognizers, which miss what people actually send (Maestro 12-digit, Visa 19-digit and
Mastercard 2-series cards, cards with dots, 9-digit SSNs, national phone formats, extensions) and whose phone
recognizer runs python-phonenumbers' matcher over the whole text once per region (most of the analysis time on
digit-dense text). Here a cheap regex finds candidate digit runs first, and phonenumbers only looks at those.

Scores: >= :data:`SURE` when the value is valid (Luhn and a card brand's prefix and length; an SSN's issued
ranges; a phone number valid in a numbering plan or named by a context word); :data:`NEAR_MISS` when it only
looks like one (a card-shaped run with a failing Luhn sum next to the word "card"; an SSN-shaped run outside
the issued ranges next to "SSN"). Near misses are below every masking threshold: they only refuse requests
whose policy blocks the type (see ``engine.BLOCK_FLOOR``).
"""

from __future__ import annotations

import bisect
import re
from functools import lru_cache

import phonenumbers

SURE = 0.9
LIKELY = 0.6
NEAR_MISS = 0.3

# Context words (lower case: matched on the lower-cased text), looked for in a few dozen characters before (and
# for phones after) a candidate.
_CARD_CONTEXT = re.compile(
    r"\b(?:card|cards|cc|credit|debit|visa|master ?card|amex|american express|maestro|discover|diners|jcb|"
    r"unionpay|payment|pan|expiry|expires|exp|cvv|cvc)\b"
)
_SSN_CONTEXT = re.compile(r"\b(?:ssn|ssns|social security|social sec|ss ?#|ss no|ss number|tin|itin|tax ?id)\b")
_PHONE_CONTEXT = re.compile(
    r"\b(?:phone|phones|telephone|tel|cell|cellphone|mobile|mob|call|called|calling|ring|dial|fax|office|desk|"
    r"direct|landline|whatsapp|sms|text me|texts|message|messages|voicemail|answering|registered|reach|contact|contacts|hotline|extension|ext|handy|telefon|tél|"
    r"téléphone|portable|móvil|teléfono|cellulare|telefono|mobiel|telefoon)\b"
)


class _Context:
    """Where a text's context words are, found in one pass on first need: each candidate then costs a bisect
    instead of a regex search (digit-dense text has hundreds of candidates)."""

    __slots__ = ("_ends", "_pattern", "_starts", "_text")

    def __init__(self, pattern: re.Pattern[str], text: str) -> None:
        self._pattern, self._text = pattern, text
        self._starts: list[int] | None = None
        self._ends: list[int] = []

    def near(self, start: int, end: int, before: int = 48, after: int = 0) -> bool:
        if self._starts is None:
            # The patterns are lower case and case-sensitive (4x faster than IGNORECASE); lower() keeps offsets
            # unless a character lower-cases to two (rare: then the slow way).
            lowered = self._text.lower()
            if len(lowered) == len(self._text):
                found = [(m.start(), m.end()) for m in self._pattern.finditer(lowered)]
            else:
                found = [(m.start(), m.end()) for m in re.finditer(self._pattern.pattern, self._text, re.I)]
            self._starts = [s for s, _ in found]
            self._ends = [e for _, e in found]
        # A word ending within ``before`` characters before the candidate ...
        i = bisect.bisect_right(self._ends, start)
        if i and self._ends[i - 1] >= start - before:
            return True
        # ... or starting within ``after`` characters after it.
        j = bisect.bisect_left(self._starts, end)
        return after > 0 and j < len(self._starts) and self._starts[j] <= end + after


# ---------------------------------------------------------------------------------------------- cards

# A digit run, optionally grouped by one kind of separator (space, dash or dot) throughout: 4-4-4-4, 4-6-5 for
# Amex, 4-4-4-4-3 for Visa 19. Unambiguous (each \\d+ ends at a non-digit), so it cannot backtrack badly.
_CARD_RUN = re.compile(r"(?<![\d.,-])\d+(?:([ .-])\d+(?:\1\d+)*)?")


def luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def card_brand(digits: str) -> bool:
    """Whether ``digits`` has the prefix and length of an issued card brand (IIN ranges, 12-19 digits)."""
    n = len(digits)
    if not 12 <= n <= 19:
        return False
    p2, p4, p6 = int(digits[:2]), int(digits[:4]), int(digits[:6])
    if digits[0] == "4":  # Visa (13, 16, 19; Visa Electron 16)
        return n in (13, 16, 19)
    if 51 <= p2 <= 55 or 2221 <= p4 <= 2720:  # Mastercard, 2-series included
        return n == 16
    if p2 in (34, 37):  # Amex
        return n == 15
    if 2200 <= p4 <= 2204:  # Mir
        return 16 <= n <= 19
    if p4 in (1800, 2131):  # JCB 15
        return n == 15
    if 3500 <= p4 <= 3599:  # JCB (3528-3589 issued; generators and test ranges use all of 35xx)
        return 16 <= n <= 19
    if 300 <= p6 // 1000 <= 305 or p4 == 3095 or p2 in (36, 38, 39):  # Diners Club
        return 14 <= n <= 19
    if digits[0] in "56":  # Maestro (50, 56-69), Discover (6011, 644-649, 65), UnionPay (62), RuPay (60, 65)
        return n >= 12
    if p2 in (81, 82) or digits[:3] == "508":  # RuPay
        return n == 16
    return False


def find_cards(text: str) -> list[tuple[int, int, float]]:
    out = []
    near = _Context(_CARD_CONTEXT, text).near
    for m in _CARD_RUN.finditer(text):
        raw = m.group(0)
        digits = raw.replace(m.group(1), "") if m.group(1) else raw
        if len(digits) < 12:
            continue
        start, end = m.start(), m.end()
        if len(digits) > 19:
            out += _cards_in_long_run(text, m, raw)
            continue
        valid = luhn(digits)
        context = near(start, end)
        if valid and card_brand(digits):
            # A bare 12-13 digit number is more often something else; it still masks (above 0.5).
            score = SURE if (context or len(digits) >= 14 or m.group(1)) else LIKELY
            out.append((start, end, score))
        elif valid and context:
            out.append((start, end, SURE))
        elif context and len(digits) >= 13:
            # A mistyped or made-up number next to "card": not masked, but a block policy refuses it.
            out.append((start, end, NEAR_MISS))
    return out


def _cards_in_long_run(text: str, m: re.Match[str], raw: str) -> list[tuple[int, int, float]]:
    """Grouped runs longer than a card (a card followed by a CVV or a date): cards made of whole groups."""
    sep = m.group(1)
    if not sep:
        return []
    groups, pos = [], m.start()
    for g in raw.split(sep):
        groups.append((pos, pos + len(g), g))
        pos += len(g) + 1
    out = []
    i = 0
    while i < len(groups):
        found = False
        for j in range(len(groups), i, -1):
            digits = "".join(g[2] for g in groups[i:j])
            if 12 <= len(digits) <= 19 and luhn(digits) and card_brand(digits):
                out.append((groups[i][0], groups[j - 1][1], SURE))
                i, found = j, True
                break
        if not found:
            i += 1
    return out


# ---------------------------------------------------------------------------------------------- SSNs

_SSN_FORMATTED = re.compile(r"(?<![\d-])(\d{3})([- .])(\d{2})\2(\d{4})(?![\d-])")
_SSN_BARE = re.compile(r"(?<![\d-])(\d{3})(\d{2})(\d{4})(?![\d-])")


def ssn_issued(area: str, group: str, serial: str) -> bool:
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


def find_ssns(text: str) -> list[tuple[int, int, float]]:
    out = []
    near = _Context(_SSN_CONTEXT, text).near
    for pattern, formatted in ((_SSN_FORMATTED, True), (_SSN_BARE, False)):
        for m in pattern.finditer(text):
            area, group, serial = m.group(1), m.group(3 if formatted else 2), m.group(4 if formatted else 3)
            context = near(m.start(), m.end(), before=64)
            if ssn_issued(area, group, serial):
                if (formatted and (context or m.group(2) == "-")) or context:
                    out.append((m.start(), m.end(), SURE))
                # A bare 9-digit number without the word SSN is an order number far more often: not flagged.
            elif context:
                out.append((m.start(), m.end(), NEAR_MISS))
    return out


# ---------------------------------------------------------------------------------------------- phones

# Regions whose national formats (no country code) are recognised without a context word; numbers with a
# country code (+CC or 00CC) are recognised for every region.
NATIONAL_REGIONS = ("US", "GB", "DE", "FR", "ES", "IT", "NL", "CA", "AU", "BE", "CH", "AT")

# A phone-shaped run: an optional +CC / 00, digit groups (an area code in parentheses, a "(0)") separated by
# at most one of space . - /, then an optional extension.
_PHONE_RUN = re.compile(
    r"(?<![\w+])(?<!\d:)(?:\+ ?)?(?:\(\s?\d{1,5}\s?\)[ .\-]?)?\d{1,6}(?:[ .\-/]?(?:\(\d{1,5}\)|\d{1,8})){0,7}"
    r"(?P<ext>(?i:\s*(?:x|ext\.?|extn\.?|extension|#)\s?\d{1,6}\b))?"
)
_DAY_OR_MONTH = r"(?:0?[1-9]|[12]\d|3[01])"
_DATE_PREFIX = re.compile(
    rf"^(?:\d{{4}}[-/.]{_DAY_OR_MONTH}[-/.]{_DAY_OR_MONTH}|{_DAY_OR_MONTH}[-/.]{_DAY_OR_MONTH}[-/.](?:\d{{4}}|\d{{2}}))"
    r"(?![-/.]?\d)"
)
_GROUP_SPLIT = re.compile(r"[ .\-/]")


def _national_shape(digits: str, region: str) -> bool:
    """A cheap superset of the region's national numbering plan (length and leading digits)."""
    n, first = len(digits), digits[0]
    if region in ("US", "CA"):
        return (n == 10 and first in "23456789") or (n == 11 and first == "1")
    if region == "ES":
        return n == 9 and first in "6789"
    if region == "IT":
        return (first == "0" and 6 <= n <= 11) or (first == "3" and 9 <= n <= 11)
    if region in ("FR", "NL", "BE", "CH"):
        return first == "0" and 9 <= n <= 10
    if region == "AU":
        return first == "0" and n == 10
    return first == "0" and 6 <= n <= 14  # GB, DE, AT


@lru_cache(maxsize=16384)
def _valid_phone(candidate: str) -> bool:
    """Valid in some numbering plan: with a country code, any; without one, one of NATIONAL_REGIONS."""
    try:
        if candidate.startswith(("+", "00")):
            # With a country code, a possible length is enough: the + says phone number (fictional ranges
            # such as the UK's 0115 496 0xxx drama numbers included).
            number = phonenumbers.parse("+" + candidate[2:] if candidate[0] == "0" else candidate, None)
            return phonenumbers.is_possible_number(number)
        digits = re.sub(r"\D", "", candidate)
        for region in NATIONAL_REGIONS:
            if _national_shape(digits, region) and phonenumbers.is_valid_number(phonenumbers.parse(candidate, region)):
                return True
    except phonenumbers.NumberParseException:
        return False
    return False


def _shape(candidate: str) -> int:
    """The candidate's digit count if it could be a phone number at all, else 0."""
    digits = sum(map(str.isdigit, candidate))
    return digits if 6 <= digits <= 15 else 0


# An amount or a decimal ("7365.60", "1.284,50"): never a phone, whatever the context.
_AMOUNT = re.compile(r"\d{1,3}(?:[.,]\d{3})*[.,]\d{1,2}|\d+[.,]\d{1,2}")


def _valid_ok(candidate: str) -> bool:
    digits = _shape(candidate)
    if digits < 7:
        return False
    if candidate[0] != "+" and not candidate.startswith("00"):
        # A bare digit run without a trunk 0 is more often an id or an amount: only 10+ digits count. And
        # without a trunk 0, only US/CA (10-11 digits), ES and IT mobiles (9-11) have national numbers.
        lead = next(c for c in candidate if c.isdigit())
        if lead != "0" and (digits not in (9, 10, 11) or (candidate.isdigit() and digits < 10)):
            return False
        # Nor a first group of 5+ digits without a trunk 0 (an area code is shorter): "85836 4429" is a
        # building number and a street number, a ZIP+4, an id.
        first = _GROUP_SPLIT.split(candidate.lstrip("("), maxsplit=1)[0].rstrip(")")
        if lead != "0" and len(first) >= 5 and first != candidate:
            return False
    return _valid_phone(candidate)


def _context_ok(context: _Context, candidate: str, start: int, end: int) -> bool:
    # A context word makes any grouped 6-15 digit run a phone (local numbers without area code, formats of
    # countries outside NATIONAL_REGIONS); a bare digit run needs 7 digits.
    digits = _shape(candidate)
    return bool(digits) and (digits >= 7 or not candidate.isdigit()) and context.near(start, end, before=40, after=12)


def find_phones(text: str) -> list[tuple[int, int, float]]:
    out = []
    context = _Context(_PHONE_CONTEXT, text)
    for m in _PHONE_RUN.finditer(text):
        start, end = m.span()
        if end - start < 6:
            continue  # fewer than 6 digits: most runs in digit-dense text end here
        ext = m.group("ext")
        number_end = m.start("ext") if ext else end
        number = text[start:number_end]
        if number.isdigit():
            # Fast path for plain digit runs (ids, references): only a trunk 0 or 10+ digits make one a
            # national number; otherwise only a context word can.
            n = len(number)
            if n < 7 or n > 15:
                continue
            if number[0] != "0" and n < 10:
                if context.near(start, number_end, before=40, after=12):
                    out.append((start, end, SURE))
                continue
        else:
            number = number.rstrip(" .-/")
            date = _DATE_PREFIX.match(number) if number[0] not in "(+" else None
            if date:
                # "2024-05-17 12" is a date and an hour: what follows a date is analysed on its own.
                rest = number[date.end() :]
                start += date.end() + (len(rest) - len(rest.lstrip(" .-/")))
                number = rest.lstrip(" .-/")
            if len(number) < 6 or (("." in number or "," in number) and _AMOUNT.fullmatch(number)):
                continue
        found = _longest_phone(context, number, start)
        if found is not None:
            s, e, score = found
            # An extension belongs to the number it follows: masked with it.
            if ext and e == start + len(number):
                e = end
            out.append((s, e, score))
    return out


def _longest_phone(context: _Context, number: str, start: int) -> tuple[int, int, float] | None:
    """The whole run if it is a valid phone, else its longest valid prefix of whole groups ("(212) 555-0199
    24/7"), else the whole run if a context word names it a phone."""
    if _valid_ok(number):
        return start, start + len(number), LIKELY
    cuts = [m.start() for m in _GROUP_SPLIT.finditer(number)]
    for cut in reversed(cuts[-6:]):
        prefix = number[:cut].rstrip(" .-/")
        if _valid_ok(prefix):
            score = SURE if _context_ok(context, prefix, start, start + len(prefix)) else LIKELY
            return start, start + len(prefix), score
    if _context_ok(context, number, start, start + len(number)):
        return start, start + len(number), SURE
    return None


# ---------------------------------------------------------------------------------------------- IBANs

# Country code, check digits, then 11-30 letters/digits, grouped by spaces or dashes or not at all. Presidio's
# own recognizer misses an IBAN after some words ("Wire it to ES48..."); this one trims the run to the longest
# prefix with a valid mod-97 check.
_IBAN_RUN = re.compile(r"\b[A-Z]{2}\d{2}(?:[ -]?[A-Z0-9]){11,34}")
_IBAN_CONTEXT = re.compile(r"\b(?:iban|account|acct|bank|wire|transfer|sepa)\b")


def iban_valid(compact: str) -> bool:
    if not 15 <= len(compact) <= 34:
        return False
    moved = compact[4:] + compact[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


def find_ibans(text: str) -> list[tuple[int, int, float]]:
    out = []
    near = _Context(_IBAN_CONTEXT, text).near
    for m in _IBAN_RUN.finditer(text):
        raw = m.group(0)
        # Positions in raw where each compact character ends: try the longest candidate first.
        ends = [i + 1 for i, c in enumerate(raw) if c not in " -"]
        compact = raw.replace(" ", "").replace("-", "")
        for n in range(len(compact), 14, -1):
            if iban_valid(compact[:n]):
                out.append((m.start(), m.start() + ends[n - 1], SURE))
                break
        else:
            if near(m.start(), m.end()):
                out.append((m.start(), m.end(), NEAR_MISS))
    return out


# ---------------------------------------------------------------------------------------------- IP addresses

# Presidio's IP recognizer runs three large regexes over the whole text (a third of the analysis time on
# digit-dense text); these candidates are cheap to find and ``ipaddress`` decides.
_IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?!\d|\.\d)")
_IPV6 = re.compile(
    r"(?<![0-9A-Za-z:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:(?:\d{1,3}\.){3}\d{1,3}|[0-9A-Fa-f]{1,4})?(?![0-9A-Za-z:]|\.\d)"
)


def find_ips(text: str) -> list[tuple[int, int, float]]:
    import ipaddress

    out = []
    if "." in text:
        for m in _IPV4.finditer(text):
            if all(int(octet) <= 255 for octet in m.group(0).split(".")):
                out.append((m.start(), m.end(), SURE))
    if "::" in text or text.count(":") >= 2:
        for m in _IPV6.finditer(text):
            candidate = m.group(0)
            if candidate.count(":") < 2 or (candidate.count(":") < 7 and "::" not in candidate):
                continue  # "12:30:05" and the like: an IPv6 address has 8 groups or a "::"
            try:
                ipaddress.IPv6Address(candidate)
            except ValueError:
                continue
            if candidate != "::":
                out.append((m.start(), m.end(), SURE))
    return out


# ---------------------------------------------------------------------------------------------- e-mail

# Anchored on each "@": Presidio's single e-mail regex starts a backtracking attempt at every word of the text,
# about as costly as all other structured finders together. Same shape: a local part of atext characters and
# dots, a domain of at least two labels of word characters and hyphens.
_LOCAL = re.compile(r"[!#$%&'*+\-/=?^_`{|}~\w][!#$%&'*+\-/=?^_`{|}~.\w]{0,63}$")
_DOMAIN = re.compile(r"\w+(?:-+\w+)*(?:\.\w+(?:-+\w+)*)+")


def make_email_finder(valid_domain):
    """An e-mail finder; ``valid_domain(address)`` decides whether the domain ends in a public suffix."""

    def find_emails(text: str) -> list[tuple[int, int, float]]:
        out = []
        at = text.find("@")
        while at != -1:
            local = _LOCAL.search(text, max(0, at - 64), at)
            domain = _DOMAIN.match(text, at + 1)
            if local is not None and domain is not None:
                start = local.start()
                # A local part never starts or ends with a dot: "see.jane@..." is fine, ".jane@" starts after it.
                while text[start] == ".":
                    start += 1
                end = domain.end()
                if text[at - 1] != "." and valid_domain(text[start:end]):
                    out.append((start, end, SURE))
                at = text.find("@", end)
            else:
                at = text.find("@", at + 1)
        return out

    return find_emails
