"""The structured finders (gateway_plugins/pii/structured.py) on the shapes issue #21 found missed, and mask_request's
handling of what they find: unions over overlaps, near misses under block."""

from __future__ import annotations

import pytest
from litellm.proxy._types import ProxyException

from gateway_plugins import pii
from gateway_plugins.context import RequestContext
from gateway_plugins.pii.structured import find_cards, find_phones, find_ssns
from gateway_plugins.policy.schema import PiiPolicy, Tenant


def found(finder, text: str, min_score: float = 0.5) -> list[str]:
    return [text[s:e] for s, e, score in finder(text) if score >= min_score]


@pytest.mark.parametrize(
    "card",
    [
        "501811524492",  # Maestro 12
        "4955726783747885775",  # Visa 19
        "4228858827689",  # Visa 13
        "2239092668587849",  # Mastercard 2-series
        "2720 9900 0000 0007",
        "379877352947448",  # Amex
        "30049318243301",  # Diners 14
        "180000552301113",  # JCB 15
        "3569273151072899",  # JCB 16
        "6543785915031097",  # Discover
        "4111.1111.1111.1111",
        "4111-1111-1111-1111",
    ],
)
def test_cards_of_every_brand_and_length(card):
    assert found(find_cards, f"pay with {card} today") == [card]


def test_card_followed_by_other_groups_and_luhn_failures():
    assert found(find_cards, "4111 1111 1111 1111 123 09/27") == ["4111 1111 1111 1111"]
    # Luhn fails: not masked; next to "card" it is a near miss (refused under block, below any mask threshold).
    assert found(find_cards, "order 4111 1111 1111 1112 shipped") == []
    assert [round(s, 1) for _, _, s in find_cards("card 4111 1111 1111 1112")] == [0.3]


def test_ssns_with_and_without_separators():
    assert found(find_ssns, "SSN 123456789") == ["123456789"]
    assert found(find_ssns, "my social security number is 123 45 6789") == ["123 45 6789"]
    assert found(find_ssns, "ref 123-45-6789") == ["123-45-6789"]
    assert found(find_ssns, "order 123456789 shipped") == []  # 9 bare digits, no SSN word
    assert found(find_ssns, "SSN 666-12-3456") == []  # never issued: a near miss only
    assert find_ssns("SSN 666-12-3456")[0][2] < 0.5


@pytest.mark.parametrize(
    "phone",
    [
        "(212) 555-0199",  # US
        "212.555.0199",
        "020 7946 0958",  # GB
        "030 12345678",  # DE
        "01 42 68 53 00",  # FR
        "612 345 678",  # ES mobile
        "912 345 678",  # ES landline
        "06 12345678",  # NL
        "06-12345678",
        "347 123 4567",  # IT mobile
        "02 1234 5678",  # IT Milan
        "+41 44 668 18 00",
        "+44(0)115 4960914",
        "0044 20 7946 0958",
    ],
)
def test_national_and_international_phone_formats(phone):
    assert found(find_phones, f"numbers: {phone} ok") == [phone]


def test_phone_extensions_and_trailing_digits():
    assert found(find_phones, "call 650-752-7354x549 now") == ["650-752-7354x549"]
    assert found(find_phones, "call 212.555.0199 ext. 12 now") == ["212.555.0199 ext. 12"]
    assert found(find_phones, "Call (212) 555-0199 24/7") == ["(212) 555-0199"]
    # A local number without area code, named by a phone word.
    assert found(find_phones, "Phone: 439 4166") == ["439 4166"]


def test_dates_amounts_and_ids_are_not_phones():
    for text in ("at 2024-02-09 03:31", "total 7365.60", "ref 827077201", "version 1.2.3", "zip 94105-1234"):
        assert found(find_phones, text) == [], text


def ctx_for(**policy) -> RequestContext:
    tenant = Tenant(id="t", pii=PiiPolicy(**policy))
    return RequestContext(request_id="r", tenant=tenant, key_id="k", requested_model="m", call_type="acompletion")


async def test_a_near_miss_of_a_blocked_type_is_refused_and_of_a_masked_type_forwarded():
    text = "my card is 4111 1111 1111 1112 thanks"
    with pytest.raises(ProxyException) as info:
        await pii.mask_request(ctx_for(entities={"CREDIT_CARD": "block"}), _chat(text), "acompletion", None)
    assert info.value.openai_code == "pii_blocked"
    data = _chat(text)
    await pii.mask_request(ctx_for(entities={"CREDIT_CARD": "mask"}), data, "acompletion", None)
    assert data["messages"][0]["content"] == text


async def test_overlapping_ner_span_never_leaves_part_of_a_phone():
    # spaCy tags part of a French number as DATE_TIME; the phone wins and the union is masked.
    ctx = ctx_for(entities={"PHONE_NUMBER": "mask", "DATE_TIME": "mask"})
    data = _chat("Appelez le +33 3 80 12 34 56 demain")
    await pii.mask_request(ctx, data, "acompletion", None)
    out = data["messages"][0]["content"]
    assert "80" not in out and "12 34 56" not in out and "<PHONE_NUMBER_1>" in out


def _chat(text: str) -> dict:
    return {"model": "m", "messages": [{"role": "user", "content": text}]}
