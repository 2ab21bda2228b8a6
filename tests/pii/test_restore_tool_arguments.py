"""Chat tool-call arguments are JSON text: an original restored into them is JSON-escaped, whole or streamed in
any split, so a quote, backslash or control character in an original never breaks the client's JSON."""

from __future__ import annotations

import itertools
import json

from hypothesis import given
from hypothesis import strategies as st
from litellm.types.utils import ChatCompletionDeltaToolCall, Delta, Function, ModelResponseStream, StreamingChoices

from gateway_plugins.pii.restore import Restorer, StreamRestorer, restore_whole

TOKEN = "<PERSON_1>"
originals = st.text(min_size=1, max_size=20)


def _args(prefix: str) -> str:
    return json.dumps({"name": TOKEN, "note": prefix + TOKEN})


@given(original=originals, prefix=st.text(max_size=5))
def test_whole_answer_arguments_stay_json(original: str, prefix: str):
    response = {
        "choices": [
            {
                "message": {
                    "content": f"hi {TOKEN}",
                    "tool_calls": [{"function": {"name": "f", "arguments": _args(prefix)}}],
                    "function_call": {"name": "g", "arguments": _args(prefix)},
                }
            }
        ]
    }
    restore_whole(Restorer({TOKEN: original}), response)
    message = response["choices"][0]["message"]
    assert message["content"] == f"hi {original}"  # plain text: the original itself
    for holder in (message["tool_calls"][0]["function"], message["function_call"]):
        assert json.loads(holder["arguments"]) == {"name": original, "note": prefix + original}


def _chunk(piece: str, *, finish: bool) -> ModelResponseStream:
    call = ChatCompletionDeltaToolCall(index=0, function=Function(arguments=piece, name=None))
    delta = Delta(content=None, tool_calls=[call])
    return ModelResponseStream(
        choices=[StreamingChoices(index=0, delta=delta, finish_reason="tool_calls" if finish else None)]
    )


@given(
    original=originals, prefix=st.text(max_size=5), cuts=st.lists(st.integers(min_value=0, max_value=60), max_size=6)
)
def test_streamed_arguments_stay_json_in_any_split(original: str, prefix: str, cuts: list[int]):
    text = _args(prefix)
    bounds = sorted({0, len(text), *(min(c, len(text)) for c in cuts)})
    pieces = [text[a:b] for a, b in itertools.pairwise(bounds)]
    stream = StreamRestorer(Restorer({TOKEN: original}))
    out = ""
    for i, piece in enumerate(pieces):
        chunk = stream.process(_chunk(piece, finish=i == len(pieces) - 1))
        for call in chunk.choices[0].delta.tool_calls or ():
            out += call.function.arguments or ""
    assert json.loads(out) == {"name": original, "note": prefix + original}
