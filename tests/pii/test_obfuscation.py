"""Obfuscated values of every structured type never leave ``mask_request`` readable (in-process, many examples).

Values are valid by construction (Luhn, mod-97, numbering plans, SSN ranges) and obfuscated one way each:
fullwidth characters, zero-width and bidi characters inside, JSON \\u escapes inside tool-call arguments, split
across two content parts or two messages, dots in digit runs. The same through a real proxy, with fewer
examples: tests/dataplane/test_pii_obfuscation_proxy.py.
"""

from __future__ import annotations

import base64
import copy

import pytest
from hypothesis import HealthCheck, given, settings
from litellm.proxy._types import ProxyException

from gateway_plugins import pii
from gateway_plugins.context import RequestContext
from gateway_plugins.policy.schema import DEFAULT_PII_ENTITIES, PiiPolicy, Tenant
from tests.pii.strategies import leaked, obfuscated_bodies, values

MASK_ALL = Tenant(id="obf", pii=PiiPolicy(entities=dict(DEFAULT_PII_ENTITIES), timeout_ms=60000))


def ctx_for(tenant: Tenant) -> RequestContext:
    return RequestContext(request_id="r", tenant=tenant, key_id="k", requested_model="m", call_type="acompletion")


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(obfuscated_bodies())
async def test_obfuscated_values_are_masked(case):
    entity, value, body = case
    data = copy.deepcopy(body)
    await pii.mask_request(ctx_for(MASK_ALL), data, "acompletion", None)
    assert not leaked(value, data), (entity, value, data)


@settings(max_examples=150, deadline=None)
@given(values)
async def test_pii_in_base64_is_refused_not_forwarded(case):
    _entity, value, sentence = case
    blob = base64.b64encode(sentence.format(value).encode()).decode()
    data = {"model": "m", "messages": [{"role": "user", "content": f"Decode this: {blob}"}]}
    with pytest.raises(ProxyException) as info:
        await pii.mask_request(ctx_for(MASK_ALL), data, "acompletion", None)
    assert info.value.openai_code == "content_not_inspectable"
    assert value not in info.value.message and blob not in info.value.message


async def test_pii_in_base64_is_replaced_whole_when_uninspectable_content_is_allowed():
    tenant = Tenant(id="b64", pii=PiiPolicy(allow_uninspectable_content=True))
    blob = base64.b64encode(b"mail me at leak.me@example.org today").decode()
    data = {"model": "m", "messages": [{"role": "user", "content": f"Decode this: {blob} please"}]}
    await pii.mask_request(ctx_for(tenant), data, "acompletion", None)
    assert data["messages"][0]["content"] == "Decode this: <EMAIL_ADDRESS_1> please"


async def test_base64_without_pii_and_binary_base64_pass():
    blob = base64.b64encode(b"just a harmless sentence about the weather").decode()
    binary = base64.b64encode(bytes(range(0, 256, 7))).decode()
    text = f"Decode {blob} and {binary}"
    data = {"model": "m", "messages": [{"role": "user", "content": text}]}
    await pii.mask_request(ctx_for(MASK_ALL), data, "acompletion", None)
    assert data["messages"][0]["content"] == text
