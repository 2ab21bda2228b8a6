"""The field inventory covers the official SDKs' whole request surface, and what it says is what happens.

The SDKs are the pinned ``openai`` and ``anthropic`` packages: an upgrade that adds a request field fails
``test_every_sdk_request_field_has_a_fate`` until the field is forwarded (a body model), normalized or refused
with a reason (``gateway_plugins/contract/inventory.py``).
"""

from __future__ import annotations

import copy

import pytest
from openai.types.chat import ChatCompletionMessage, ParsedChatCompletionMessage
from openai.types.chat.chat_completion_message_function_tool_call import ChatCompletionMessageFunctionToolCall
from openai.types.responses import ResponseFunctionToolCall, ResponseOutputMessage, ResponseReasoningItem

from gateway_plugins.contract import inventory
from gateway_plugins.contract.routes import ENDPOINTS
from gateway_plugins.contract.validate import ContractError, check
from gateway_plugins.policy.schema import RequestLimits
from tests.contract.classify import fate
from tests.contract.field_paths import sdk_paths

BY_NAME = {e.name: e for e in ENDPOINTS}
LIMITS = RequestLimits()
SDK = sdk_paths()


@pytest.mark.parametrize("endpoint", sorted(SDK))
def test_every_sdk_request_field_has_a_fate(endpoint):
    assert len(SDK[endpoint]) > 5, "the SDK walk found no fields: field_paths is broken"
    missing = [p for p in SDK[endpoint] if fate(endpoint, p) is None]
    assert not missing, f"{len(missing)} {endpoint} fields with no fate in the inventory: {missing[:20]}"


def test_the_inventory_has_no_rule_for_a_field_the_sdks_do_not_have():
    """A stale rule (a field renamed upstream) would otherwise document and refuse nothing."""
    tolerated = {"client_metadata", "provider_specific_fields", "parsed", "reasoning_content", "thinking_blocks"}
    tolerated |= {"index", "name", "annotations", "logprobs", "eager_input_streaming", "betas", "mcp_servers"}
    # Fields of the newer SDKs pinned in .venv-clients (openai 3.x), checked by the test below.
    tolerated |= {"async", "access_programs", "image", "external_web_access"}
    for table in (inventory.NORMALIZED, inventory.POLICY, inventory.REFUSED):
        for endpoint, rules in table.items():
            if endpoint == "anthropic_count_tokens":
                continue  # a copy of the Messages rules: the fields count_tokens lacks are never sent to it
            for pattern in rules:
                leaf = pattern.rsplit(".", 1)[-1].split("[", 1)[0]
                if leaf in tolerated or "*}" in pattern:
                    continue  # answer-only fields, and runtime types the SDKs spell as an untagged union
                regex = inventory.compile_pattern(pattern)
                assert any(regex.match(p) for p in SDK[endpoint]), f"{endpoint}: {pattern} matches no SDK field"


def accept(endpoint: str, body: dict) -> dict:
    check(BY_NAME[endpoint], body, 100, LIMITS)
    return body


def refuse(endpoint: str, body: dict) -> ContractError:
    with pytest.raises(ContractError) as info:
        check(BY_NAME[endpoint], body, 100, LIMITS)
    return info.value


def test_chat_history_built_from_the_sdks_own_answer_objects_is_accepted():
    """openai-python's ``messages.append(completion.choices[0].message)``: the SDK serializes every field the
    answer had, including the answer-only ones (``annotations``, ``audio``, ``parsed``) and LiteLLM's own."""
    call = ChatCompletionMessageFunctionToolCall(
        id="call_1", type="function", function={"name": "lookup", "arguments": '{"q": "x"}'}
    )
    plain = ChatCompletionMessage(role="assistant", content="hi", annotations=[], audio=None, refusal=None)
    tools = ChatCompletionMessage(role="assistant", content=None, tool_calls=[call])
    parsed = ParsedChatCompletionMessage(role="assistant", content='{"a": 1}', parsed=None, annotations=[])
    extra = {**plain.model_dump(), "provider_specific_fields": {"refusal": None}, "reasoning_content": None}
    messages = [{"role": "user", "content": "q"}]
    for message in (plain, tools, parsed):
        messages.append(message.model_dump(mode="json"))
    messages += [extra, {"role": "tool", "tool_call_id": "call_1", "content": "r", "name": "lookup"}]
    body = accept("chat_completions", {"model": "m", "messages": messages})
    for message in body["messages"]:
        assert not {"annotations", "audio", "parsed", "provider_specific_fields", "reasoning_content"} & set(message)
    assert "name" not in body["messages"][-1]


def test_responses_stateless_history_from_the_sdks_output_items_is_accepted():
    """``input += response.output``: output messages carry ``annotations``/``logprobs``, calls a ``caller``."""
    message = ResponseOutputMessage.model_validate(
        {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "status": "completed",
            "phase": "final_answer",
            "content": [{"type": "output_text", "text": "hi", "annotations": [], "logprobs": []}],
        }
    )
    call = ResponseFunctionToolCall.model_validate(
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}", "id": "fc_1", "status": "completed"}
    )
    reasoning = ResponseReasoningItem.model_validate(
        {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "c2lnbmVk"}
    )
    items = [{"role": "user", "content": "q"}] + [i.model_dump(mode="json") for i in (message, reasoning, call)]
    items.append({"type": "function_call_output", "call_id": "c1", "output": "r"})
    body = accept(
        "responses",
        {
            "model": "m",
            "input": items,
            # LlamaIndex's and the Agents SDK's defaults
            "include": [],
            "previous_response_id": None,
            "metadata": None,
            "truncation": "disabled",
            "store": False,
            "reasoning": {"effort": "none"},
            "prompt_cache_key": "k",
        },
    )
    assert not {"include", "previous_response_id", "metadata", "truncation", "store"} & set(body)
    assert "annotations" not in body["input"][1]["content"][0]


def test_claude_code_style_messages_are_accepted():
    body = {
        "model": "m",
        "max_tokens": 32000,
        "metadata": {"user_id": "user_abc"},
        "system": [{"type": "text", "text": "You are", "cache_control": {"type": "ephemeral", "ttl": "1h"}}],
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "tools": [
            {"name": "Read", "description": "d", "input_schema": {"type": "object"}, "defer_loading": True},
        ],
        "context_management": {"edits": [{"type": "clear_thinking_20251015"}]},
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}]},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "plan", "signature": "c2ln/+=="},
                    {"type": "tool_use", "id": "t1", "name": "Read", "input": {"p": "x"}},
                ],
            },
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "ok"}]},
        ],
    }
    sent = accept("anthropic_messages", copy.deepcopy(body))
    assert not {"metadata", "context_management"} & set(sent)
    assert "defer_loading" not in sent["tools"][0]
    assert sent["messages"][1]["content"][0] == body["messages"][1]["content"][0]  # byte-exact thinking


@pytest.mark.parametrize(
    ("endpoint", "pattern"),
    [(e, p) for e, rules in inventory.REFUSED.items() for p in rules if "." not in p and "[" not in p],
)
def test_each_refused_top_level_field_is_refused_with_its_reason_and_fix(endpoint, pattern):
    base = {
        "chat_completions": {"model": "m", "messages": [{"role": "user", "content": "x"}]},
        "completions": {"model": "m", "prompt": "x"},
        "embeddings": {"model": "m", "input": "x"},
        "responses": {"model": "m", "input": "x"},
        "anthropic_messages": {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]},
        "anthropic_count_tokens": {"model": "m", "messages": [{"role": "user", "content": "x"}]},
    }[endpoint]
    rule = inventory.REFUSED[endpoint][pattern]
    err = refuse(endpoint, {**base, pattern: {"unexpected": 1}})
    assert (err.status, err.code) == (400, "unsupported_field")
    assert err.param.startswith(pattern)
    assert rule.why in err.message and rule.fix in err.message


def test_docs_contract_md_holds_the_generated_inventory():
    from tests.contract import gen_contract_inventory as gen

    doc = gen.DOC.read_text()
    assert gen.render(doc) == doc, (
        "docs/contract.md's field inventory is stale: run "
        """PYTHONSAFEPATH=1 .venv/bin/python -c 'import runpy, sys; sys.path.append("."); """
        """runpy.run_module("tests.contract.gen_contract_inventory", run_name="__main__")'"""
    )


@pytest.mark.parametrize(
    ("endpoint", "body", "kind"),
    [
        (
            "responses",
            {"model": "m", "input": "x", "tools": [{"type": "web_search", "external_web_access": False}]},
            "web_search",
        ),
        (
            "anthropic_messages",
            {
                "model": "m",
                "max_tokens": 5,
                "messages": [{"role": "user", "content": "x"}],
                "tools": [{"type": "web_fetch_20250910", "name": "web_fetch", "max_uses": 2}],
            },
            "web_fetch",
        ),
        (
            "chat_completions",
            {"model": "m", "messages": [{"role": "user", "content": "x"}], "web_search_options": {}},
            None,
        ),
        (
            "chat_completions",
            {
                "model": "m",
                "messages": [{"role": "user", "content": "x"}],
                "web_search_options": {"search_context_size": "low"},
            },
            "web_search",
        ),
    ],
)
def test_hosted_tools_are_dropped_unless_the_tenant_enables_them(endpoint, body, kind):
    from gateway_plugins.contract.validate import apply_hosted_tools

    enabled = accept(endpoint, copy.deepcopy(body))
    assert apply_hosted_tools(endpoint, enabled, [kind] if kind else []) == []
    dropped = accept(endpoint, copy.deepcopy(body))
    assert apply_hosted_tools(endpoint, dropped, []) == ([kind] if kind else [])
    assert "tools" not in dropped and "web_search_options" not in dropped


def test_a_request_forcing_a_hosted_tool_the_tenant_has_not_enabled_is_refused():
    from gateway_plugins.contract.validate import apply_hosted_tools

    body = accept(
        "responses",
        {"model": "m", "input": "x", "tools": [{"type": "web_search"}], "tool_choice": {"type": "web_search"}},
    )
    with pytest.raises(ContractError) as info:
        apply_hosted_tools("responses", body, [])
    assert info.value.param == "tool_choice" and "hostedTools" in info.value.message


def test_the_newest_pinned_sdks_request_fields_have_a_fate_too():
    """The real-clients environment pins newer SDKs (openai 3.x) than the proxy's lock: their fields count too."""
    import json
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    python = root / ".venv-clients" / "bin" / "python"
    assert python.exists(), "scripts/ensure-clients.sh builds .venv-clients (scripts/test.sh runs it)"
    code = "import json, sys; sys.path.append(sys.argv[1]); from tests.contract.field_paths import sdk_paths; "
    code += "print(json.dumps(sdk_paths()))"
    out = subprocess.run(
        [str(python), "-c", code, str(root)],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
        env={"PYTHONSAFEPATH": "1", "PATH": "/usr/bin:/bin"},
    ).stdout
    newest = json.loads(out)
    missing = {e: [p for p in paths if fate(e, p) is None] for e, paths in newest.items()}
    missing = {e: p[:10] for e, p in missing.items() if p}
    assert not missing, f"fields of the newest pinned SDKs with no fate in the inventory: {missing}"


def test_thinking_text_is_analysed_and_opaque_blobs_are_not():
    """Thinking sent back is text like any other (masked if it holds PII); the signature, encrypted reasoning and
    redacted thinking are the upstream's opaque blobs: never rewritten, or the upstream's check fails."""
    from gateway_plugins.contract.text import text_slots

    body = accept(
        "anthropic_messages",
        {
            "model": "m",
            "max_tokens": 5,
            "messages": [
                {"role": "user", "content": "q"},
                {
                    "role": "assistant",
                    "content": [
                        {"type": "thinking", "thinking": "mail bob@example.org", "signature": "QUJDRA=="},
                        {"type": "redacted_thinking", "data": "RUZHSA=="},
                    ],
                },
                {"role": "user", "content": "again"},
            ],
        },
    )
    found = text_slots(body)
    texts = [c[k] for c, k in found.slots]
    assert "mail bob@example.org" in texts
    assert "QUJDRA==" not in texts and "RUZHSA==" not in texts
    reasoning = accept(
        "responses",
        {"model": "m", "input": [{"type": "reasoning", "id": "rs", "summary": [], "encrypted_content": "RU5D"}]},
    )
    assert "RU5D" not in [c[k] for c, k in text_slots(reasoning).slots]
