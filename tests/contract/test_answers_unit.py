"""Answers in the official shapes and upstream errors without internals, as pure functions."""

from __future__ import annotations

from litellm.types.utils import ModelResponse

from gateway_plugins import answers
from gateway_plugins.upstream_errors import provider_message


def test_chat_answers_lose_litellms_own_fields_whole_and_streamed():
    whole = ModelResponse(choices=[{"message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}])
    whole.choices[0].message.provider_specific_fields = {"refusal": None}
    answers.official("chat_completions", "r1", whole)
    assert "provider_specific_fields" not in whole.model_dump_json()
    chunk = {"choices": [{"delta": {"content": "x", "provider_specific_fields": {}}, "provider_specific_fields": {}}]}
    answers.official_chunk("chat_completions", "r1", chunk)
    assert chunk == {"choices": [{"delta": {"content": "x"}}]}


def test_responses_and_messages_ids_are_the_request_id():
    response = {"id": "resp_bGl0ZWxsbTpjdXN0b21fbGxtX3Byb3ZpZGVy", "object": "response"}
    assert answers.official("responses", "abc", response)["id"] == "resp_abc"
    event = {"type": "response.completed", "response": {"id": "resp_bGl0ZWxsbQ=="}}
    assert answers.official_chunk("responses", "abc", event)["response"]["id"] == "resp_abc"
    sse = (
        b'event: message_start\ndata: {"type": "message_start", "message": {"id": "resp_bGl0", "type": "message"}}\n\n'
    )
    out = answers.official_chunk("anthropic_messages", "abc", sse)
    assert b'"id": "msg_abc"' in out and b"bGl0" not in out


def test_legacy_completion_chunks_always_carry_text_and_no_zero_usage():
    chunk = {"choices": [{"index": 0, "finish_reason": "stop"}], "usage": {"prompt_tokens": 0, "completion_tokens": 0}}
    answers.official_chunk("completions", "r", chunk)
    assert chunk == {"choices": [{"index": 0, "finish_reason": "stop", "text": ""}]}


def test_provider_messages_lose_litellms_prefix_tail_and_urls():
    class Failure(Exception):
        pass

    raw = (
        'litellm.BadRequestError: AnthropicException - {"type":"error","error":{"type":"invalid_request_error",'
        '"message":"max_tokens: 99999 > 64000"}}. Received Model Group=claude\nAvailable Model Group Fallbacks=None'
    )
    assert provider_message(Failure(raw)) == "max_tokens: 99999 > 64000"
    raw = "litellm.InternalServerError: OpenAIException - boom at https://eu.api.openai.com/v1. cooldown_list=['a/eu']"
    assert provider_message(Failure(raw)) == "boom at <url>"
