"""The request contract without a proxy: what it accepts, what it refuses (naming the field), and that the
deny-by-default text walk finds every planted PII value wherever the body carries it."""

from __future__ import annotations

import copy

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway_plugins.contract import inventory
from gateway_plugins.contract.routes import CHAT, COMPLETIONS, EMBEDDINGS, ENDPOINTS, TENANT_ROUTES
from gateway_plugins.contract.text import text_slots
from gateway_plugins.contract.validate import ContractError, check, check_for_tenant
from gateway_plugins.pii.engine import Span
from gateway_plugins.pii.transform import PiiState, blocked_types, count_detections, rewrite
from gateway_plugins.policy.schema import ModelMeta, PiiAction, PiiPolicy, RequestLimits, Tenant
from tests.contract.strategies import BODIES, chat_body

LIMITS = RequestLimits()
BY_NAME = {e.name: e for e in ENDPOINTS}
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Fields that steer LiteLLM or the upstream rather than the model: never taken from a tenant.
STEERING = [
    "fallbacks",
    "api_key",
    "api_base",
    "base_url",
    "api_version",
    "extra_headers",
    "extra_body",
    "metadata",
    "litellm_metadata",
    "mock_response",
    "caching",
    "cache",
    "num_retries",
    "timeout",
    "context_window_fallback_dict",
    "litellm_call_id",
    "user_config",
    "model_list",
    "tags",
    "guardrails",
    "deployment_id",
    "custom_llm_provider",
    "input_cost_per_token",
    "store",
    "service_tier",
]


def accept(endpoint, body):
    return check(endpoint, body, len(str(body)), LIMITS)


def refuse(endpoint, body) -> ContractError:
    with pytest.raises(ContractError) as info:
        accept(endpoint, body)
    return info.value


@pytest.mark.parametrize("name", sorted(BODIES))
@SETTINGS
@given(data=st.data())
def test_generated_bodies_are_accepted_and_every_planted_value_is_text(name, data):
    body, planted = data.draw(BODIES[name]())
    endpoint = BY_NAME[name]
    accept(endpoint, body)
    found = text_slots(body, endpoint.fields)
    texts = [c[k] for c, k in found.slots] + found.keys
    for value in planted:
        assert any(value in t for t in texts), f"{value!r} is not analysed"


@pytest.mark.parametrize("name", sorted(BODIES))
@SETTINGS
@given(data=st.data(), field=st.sampled_from(STEERING) | st.from_regex(r"\A[a-z_]{1,20}\Z"))
def test_any_field_outside_the_contract_is_refused_by_name(name, data, field):
    endpoint = BY_NAME[name]
    body, _ = data.draw(BODIES[name]())
    if field in endpoint.fields:
        return
    value = data.draw(st.sampled_from(["x", 1, ["a"], {"k": "v"}, None, True]))
    body[field] = value
    found = inventory.match(inventory.NORMALIZED, name, field)
    if value is None or (found is not None and found[1].drops(value)):
        # The inventory's normalization (a null is the default; ``metadata`` is a tag): dropped, never forwarded.
        accept(endpoint, body)
        assert field not in body
        return
    err = refuse(endpoint, body)
    assert (err.status, err.code, err.param) == (400, "unsupported_field", field)


@SETTINGS
@given(data=st.data(), field=st.from_regex(r"\A[a-z_]{1,20}\Z"))
def test_unknown_nested_fields_are_refused_with_their_path(data, field):
    body, _ = data.draw(chat_body())
    target = body["messages"][-1]
    if field in ("role", "content", "name"):
        return
    target[field] = "x"
    err = refuse(CHAT, body)
    assert err.param == f"messages[{len(body['messages']) - 1}].{field}"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_tokens", -5),
        ("max_tokens", 0),
        ("max_tokens", "100"),
        ("max_tokens", 1.5),
        ("max_tokens", True),
        ("n", 0),
        ("temperature", "hot"),
        ("temperature", 3),
        ("stream", "yes"),
        ("messages", []),
        ("messages", "hello"),
        ("model", 5),
        ("logit_bias", {"not-a-token": 1}),
    ],
)
def test_wrong_types_and_ranges_are_refused_naming_the_field(field, value):
    body = {"model": "echo", "messages": [{"role": "user", "content": "hi"}], field: value}
    err = refuse(CHAT, body)
    assert err.status == 400 and err.param.split("[")[0].split(".")[0] == field
    assert repr(value) not in err.message or isinstance(value, (int, float))


@pytest.mark.parametrize("body", [[1, 2], "text", 5, None, True])
def test_a_body_that_is_not_an_object_is_refused(body):
    err = refuse(CHAT, body)
    assert (err.status, err.code) == (400, "invalid_body")


def test_token_array_prompts_and_inputs_are_refused():
    assert refuse(COMPLETIONS, {"model": "echo", "prompt": [1, 2, 3]}).param.startswith("prompt")
    assert refuse(EMBEDDINGS, {"model": "echo", "input": [[1, 2]]}).param.startswith("input")


def test_sizes_are_bounded_before_validation():
    limits = RequestLimits(max_messages=3, max_string_chars=100, max_json_depth=6, max_n=2)
    many = {"model": "echo", "messages": [{"role": "user", "content": "x"}] * 4}
    with pytest.raises(ContractError) as info:
        check(CHAT, many, 10, limits)
    assert (info.value.code, info.value.param) == ("too_many_items", "messages")
    long = {"model": "echo", "messages": [{"role": "user", "content": "x" * 101}]}
    with pytest.raises(ContractError) as info:
        check(CHAT, long, 10, limits)
    assert (info.value.status, info.value.param) == (413, "messages[0].content")
    deep: dict = {"type": "object"}
    for _ in range(10):
        deep = {"type": "object", "properties": {"p": deep}}
    nested = {
        "model": "echo",
        "messages": [{"role": "user", "content": "x"}],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": deep}}],
    }
    with pytest.raises(ContractError) as info:
        check(CHAT, nested, 10, limits)
    assert info.value.code == "request_too_deep"
    with pytest.raises(ContractError) as info:
        check(CHAT, {"model": "echo", "messages": [{"role": "user", "content": "x"}], "n": 3}, 10, limits)
    assert info.value.param == "n"


def test_contract_facts_bound_the_output():
    body = {"model": "echo", "prompt": ["a", "b"], "max_tokens": 7, "n": 2, "best_of": 3}
    facts = accept(COMPLETIONS, body)
    assert (facts.choices, facts.max_tokens) == (3, 7)


def test_tenant_rules_uninspectable_content_and_model_maximum():
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    body = {"model": "echo", "messages": [{"role": "user", "content": [{"type": "text", "text": "see"}, image]}]}
    accept(CHAT, body)
    models = {"echo": ModelMeta(name="echo", max_output_tokens=50)}
    masked = Tenant(id="t", pii=PiiPolicy())
    with pytest.raises(ContractError) as info:
        check_for_tenant(body, masked, models)
    assert (info.value.code, info.value.param) == ("content_not_inspectable", "messages[0].content[1]")
    check_for_tenant(body, Tenant(id="t", pii=PiiPolicy(allow_uninspectable_content=True)), models)
    check_for_tenant(body, Tenant(id="t"), models)  # no PII policy: nothing to vouch for
    with pytest.raises(ContractError) as info:
        check_for_tenant({**body, "max_tokens": 51}, Tenant(id="t"), models)
    assert info.value.param == "max_tokens"


def test_structural_words_in_free_form_schemas_are_still_text():
    body = {
        "model": "echo",
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "f",
                    "parameters": {"type": "jane@example.org", "properties": {"bob@example.org": {"type": "string"}}},
                },
            }
        ],
    }
    found = text_slots(copy.deepcopy(body), CHAT.fields)
    texts = [c[k] for c, k in found.slots]
    assert "jane@example.org" in texts and "bob@example.org" in found.keys
    assert "user" not in texts and "function" not in texts and "echo" not in texts


def test_routes_are_exact_and_each_has_its_contract():
    assert ("POST", "/models/gpt-4o:generateContent") not in TENANT_ROUTES
    for (method, path), endpoint in TENANT_ROUTES.items():
        assert endpoint.method == method and path.startswith("/")
        assert (endpoint.body is None) == (method == "GET")


def test_the_strictest_action_of_overlapping_types_applies():
    actions = {"CREDIT_CARD": PiiAction.MASK, "PHONE_NUMBER": PiiAction.BLOCK, "US_SSN": PiiAction.REDACT}
    span = Span(0, 4, "CREDIT_CARD", 0.9, ("PHONE_NUMBER",))
    assert blocked_types([(span,)], actions) == ["PHONE_NUMBER"]
    assert count_detections([(span,)], actions) == {"CREDIT_CARD": 1, "PHONE_NUMBER": 1}
    redacted = Span(0, 4, "CREDIT_CARD", 0.9, ("US_SSN",))
    assert rewrite("1234 rest", (redacted,), actions, PiiState(tenant_id="t")) == " rest"


def test_the_reservation_covers_every_output_limit_that_may_leave():
    """#24: chat forwards both max_tokens and max_completion_tokens, and LiteLLM raises a Messages request's
    max_tokens to the Responses API's minimum (16) on its way to an openai/ deployment."""
    both = {"model": "echo", "messages": [{"role": "user", "content": "x"}], "max_completion_tokens": 1}
    assert accept(CHAT, {**both, "max_tokens": 4096}).max_tokens == 4096
    small = {"model": "echo", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}
    assert accept(BY_NAME["anthropic_messages"], small).max_tokens == 16
    assert accept(BY_NAME["responses"], {"model": "echo", "input": "x", "max_output_tokens": 20}).max_tokens == 20
