"""openai-python's default flows: chat (multi-turn, tool loop, streaming, structured output), embeddings,
the Responses API (stateless history, function-tool loop) and legacy completions."""

from __future__ import annotations

import json

from _flow import BASE_URL, EMBEDDING_MODEL, KEY, OPENAI_MODEL, run
from openai import OpenAI
from pydantic import BaseModel

client = OpenAI(base_url=BASE_URL + "/v1", api_key=KEY, max_retries=0, timeout=120)

CHAT_TOOL = {
    "type": "function",
    "function": {
        "name": "lookup",
        "description": "Looks a word up.",
        "parameters": {"type": "object", "properties": {"echo": {"type": "string"}}, "required": ["echo"]},
    },
}
RESPONSES_TOOL = {"type": "function", **CHAT_TOOL["function"]}


def lookup(echo: str) -> str:
    return f"{echo} is a word"


def chat_multi_turn() -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hi."}]
    completion = client.chat.completions.create(model=OPENAI_MODEL, messages=messages)
    messages.append(completion.choices[0].message)  # the SDK's message object itself, as the docs show
    messages.append({"role": "user", "content": "Again."})
    completion = client.chat.completions.create(model=OPENAI_MODEL, messages=messages)
    assert completion.choices[0].message.content, completion


def chat_tool_loop() -> None:
    messages = [{"role": "user", "content": "Look up 'kubegate'."}]
    choice = "required"  # forced the first time: the echo calls a tool only when told to
    for _ in range(4):
        completion = client.chat.completions.create(
            model=OPENAI_MODEL, messages=messages, tools=[CHAT_TOOL], tool_choice=choice
        )
        message = completion.choices[0].message
        messages.append(message)
        if not message.tool_calls:
            break
        for call in message.tool_calls:
            result = lookup(**json.loads(call.function.arguments))
            messages.append({"role": "tool", "tool_call_id": call.id, "content": result})
        choice = "auto"
    else:
        raise AssertionError("the tool loop did not end")
    assert len(messages) >= 4, f"the model never called the tool: {messages}"
    assert message.content, message


def chat_stream() -> None:
    stream = client.chat.completions.create(
        model=OPENAI_MODEL, messages=[{"role": "user", "content": "Count to three."}], stream=True
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text, "no streamed text"


class City(BaseModel):
    name: str
    country: str


def chat_parse() -> None:
    # The echo fills a json_schema answer's strings with the prompt: the SDK parses it into the model.
    completion = client.chat.completions.parse(
        model=OPENAI_MODEL, messages=[{"role": "user", "content": "Paris"}], response_format=City
    )
    assert completion.choices[0].message.parsed == City(name="Paris", country="Paris"), completion


def embeddings() -> None:
    result = client.embeddings.create(model=EMBEDDING_MODEL, input="kubegate")  # base64 by default
    assert result.data and len(result.data[0].embedding) > 0, result


def responses_history() -> None:
    history: list = [{"role": "user", "content": "Say hi."}]
    response = client.responses.create(model=OPENAI_MODEL, input=history)
    history += response.output  # stateless: the output items go back as input
    history.append({"role": "user", "content": "Again."})
    response = client.responses.create(model=OPENAI_MODEL, input=history)
    assert response.output_text, response


def responses_tool_loop() -> None:
    items: list = [{"role": "user", "content": "Look up 'kubegate'."}]
    choice = "required"
    for _ in range(4):
        response = client.responses.create(model=OPENAI_MODEL, input=items, tools=[RESPONSES_TOOL], tool_choice=choice)
        items += response.output
        calls = [item for item in response.output if item.type == "function_call"]
        if not calls:
            break
        for call in calls:
            output = lookup(**json.loads(call.arguments))
            items.append({"type": "function_call_output", "call_id": call.call_id, "output": output})
        choice = "auto"
    else:
        raise AssertionError("the tool loop did not end")
    assert any(getattr(i, "type", None) == "function_call" for i in items), f"no tool call: {items}"
    assert response.output_text, response


def completions_stream() -> None:
    stream = client.completions.create(model=OPENAI_MODEL, prompt="Say hi.", max_tokens=16, stream=True)
    text = "".join(chunk.choices[0].text for chunk in stream if chunk.choices)
    assert text, "no streamed text"


if __name__ == "__main__":
    run(globals())
