"""Restore in Responses API event streams and Anthropic SSE: a token split across events is restored, only a
tail that may still become a token is held back, and it is released as one more delta before the block ends."""

from __future__ import annotations

import json

from litellm.types.llms.openai import OutputTextDeltaEvent, OutputTextDoneEvent

from gateway_plugins.pii.restore import Restorer
from gateway_plugins.pii.restore_events import AnthropicStreamRestorer, ResponsesStreamRestorer, restore_deep

ORIGINALS = {"<EMAIL_ADDRESS_1>": "jane.roe@example.org", "<PERSON_1>": 'O"Brien'}
TEXT = "to <EMAIL_ADDRESS_1> from <PERSON_1>!"
RESTORED = 'to jane.roe@example.org from O"Brien!'


def pieces(text: str, size: int = 5) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def delta(text: str) -> OutputTextDeltaEvent:
    return OutputTextDeltaEvent(
        type="response.output_text.delta", item_id="m", output_index=0, content_index=0, delta=text
    )


def test_responses_deltas_hold_back_only_a_possible_token_prefix():
    sr = ResponsesStreamRestorer(Restorer(ORIGINALS))
    sent = ""
    for piece in pieces(TEXT):
        for event in sr.process(delta(piece)):
            sent += event.delta
        # Everything up to the last "<" that could still open a token has gone out, restored.
        received = TEXT[: TEXT.index(piece) + len(piece)]
        held = received[received.rfind("<") :] if "<" in received and ">" not in received[received.rfind("<") :] else ""
        assert sent == Restorer(ORIGINALS).replace(received[: len(received) - len(held)])
    done = OutputTextDoneEvent(
        type="response.output_text.done", item_id="m", output_index=0, content_index=0, text=TEXT
    )
    out = sr.process(done)
    assert out[-1].text == RESTORED and sent + "".join(e.delta for e in out[:-1]) == RESTORED


def test_responses_tail_is_released_before_the_done_event():
    sr = ResponsesStreamRestorer(Restorer(ORIGINALS))
    first = sr.process(delta("mail <EMAIL_AD"))
    assert [e.delta for e in first] == ["mail "]
    done = OutputTextDoneEvent(
        type="response.output_text.done", item_id="m", output_index=0, content_index=0, text="mail <EMAIL_AD"
    )
    out = sr.process(done)
    assert [getattr(e, "delta", None) for e in out] == ["<EMAIL_AD", None]
    assert sr.finish() == []


def frame(kind: str, data: dict) -> bytes:
    return f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n".encode()


def parse(raw: bytes) -> list[dict]:
    return [json.loads(line[5:]) for line in raw.split(b"\n") if line.startswith(b"data:")]


def test_anthropic_sse_text_and_tool_json_restored_even_across_partial_chunks():
    sr = AnthropicStreamRestorer(Restorer(ORIGINALS))
    args = json.dumps({"to": "<EMAIL_ADDRESS_1>", "who": "<PERSON_1>"})
    stream = b"".join(
        [frame("message_start", {"message": {"content": []}})]
        + [frame("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": p}}) for p in pieces(TEXT)]
        + [frame("content_block_stop", {"index": 0})]
        + [
            frame("content_block_delta", {"index": 1, "delta": {"type": "input_json_delta", "partial_json": p}})
            for p in pieces(args)
        ]
        + [frame("content_block_stop", {"index": 1}), frame("message_stop", {})]
    )
    out = b""
    for i in range(0, len(stream), 37):  # chunk boundaries anywhere, mid-event included
        for chunk in sr.process(stream[i : i + 37]):
            out += chunk
    for chunk in sr.finish():
        out += chunk
    events = parse(out)
    text = "".join(e["delta"]["text"] for e in events if e.get("delta", {}).get("type") == "text_delta")
    partial = "".join(
        e["delta"]["partial_json"] for e in events if e.get("delta", {}).get("type") == "input_json_delta"
    )
    assert text == RESTORED
    # Inside JSON the original is escaped as JSON: the arguments still parse.
    assert json.loads(partial) == {"to": "jane.roe@example.org", "who": 'O"Brien'}
    kinds = [e["type"] for e in events]
    assert kinds[-1] == "message_stop" and kinds.count("content_block_stop") == 2
    # Every block's deltas come before its stop event.
    assert max(i for i, e in enumerate(events) if e.get("index") == 0 and e["type"] == "content_block_delta") < (
        kinds.index("content_block_stop")
    )


def test_whole_answers_are_restored_in_every_string_including_tool_arguments():
    answer = {
        "content": [
            {"type": "text", "text": TEXT},
            {"type": "tool_use", "id": "t", "name": "n", "input": {"to": "<EMAIL_ADDRESS_1>"}},
        ],
        "output": [{"type": "function_call", "arguments": json.dumps({"who": "<PERSON_1>"})}],
    }
    restore_deep(Restorer(ORIGINALS), answer)
    assert answer["content"][0]["text"] == RESTORED
    assert answer["content"][1]["input"] == {"to": "jane.roe@example.org"}
    assert json.loads(answer["output"][0]["arguments"]) == {"who": 'O"Brien'}
