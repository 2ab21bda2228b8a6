"""anthropic-python's default flows: a tool loop, streaming, prompt caching, extended thinking over two turns,
metadata, token counting and the beta Messages API."""

from __future__ import annotations

from _flow import ANTHROPIC_MODEL, BASE_URL, KEY, run
from anthropic import Anthropic

client = Anthropic(base_url=BASE_URL, api_key=KEY, max_retries=0, timeout=120)

TOOL = {
    "name": "lookup",
    "description": "Looks a word up.",
    "input_schema": {"type": "object", "properties": {"echo": {"type": "string"}}, "required": ["echo"]},
}


def lookup(echo: str) -> str:
    return f"{echo} is a word"


def tool_loop() -> None:
    messages: list = [{"role": "user", "content": "Look up 'kubegate'."}]
    choice = {"type": "any"}  # forced the first time: the echo calls a tool only when told to
    for _ in range(4):
        response = client.messages.create(
            model=ANTHROPIC_MODEL, max_tokens=1024, messages=messages, tools=[TOOL], tool_choice=choice
        )
        messages.append({"role": "assistant", "content": response.content})
        if response.stop_reason != "tool_use":
            break
        results = [
            {"type": "tool_result", "tool_use_id": block.id, "content": lookup(**block.input)}
            for block in response.content
            if block.type == "tool_use"
        ]
        messages.append({"role": "user", "content": results})
        choice = {"type": "auto"}
    else:
        raise AssertionError("the tool loop did not end")
    assert len(messages) >= 4, f"the model never called the tool: {messages}"


def stream() -> None:
    with client.messages.stream(
        model=ANTHROPIC_MODEL, max_tokens=1024, messages=[{"role": "user", "content": "Count to three."}]
    ) as events:
        text = "".join(events.text_stream)
        final = events.get_final_message()
    assert text and final.content, final


def cache_control() -> None:
    response = client.messages.create(
        model=ANTHROPIC_MODEL,
        max_tokens=1024,
        system=[{"type": "text", "text": "You answer briefly.", "cache_control": {"type": "ephemeral"}}],
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "A long document.", "cache_control": {"type": "ephemeral"}},
                    {"type": "text", "text": "Summarise it."},
                ],
            }
        ],
    )
    assert response.content, response


def thinking() -> None:
    messages: list = [{"role": "user", "content": "Think, then say hi."}]
    config = {"type": "enabled", "budget_tokens": 1024}
    response = client.messages.create(model=ANTHROPIC_MODEL, max_tokens=2048, thinking=config, messages=messages)
    messages.append({"role": "assistant", "content": response.content})  # thinking blocks go back as they came
    messages.append({"role": "user", "content": "Again."})
    response = client.messages.create(model=ANTHROPIC_MODEL, max_tokens=2048, thinking=config, messages=messages)
    assert response.content, response


def metadata() -> None:
    response = client.messages.create(
        model=ANTHROPIC_MODEL,
        max_tokens=1024,
        metadata={"user_id": "user-1234"},
        messages=[{"role": "user", "content": "Say hi."}],
    )
    assert response.content, response


def count_tokens() -> None:
    count = client.messages.count_tokens(
        model=ANTHROPIC_MODEL, system="Be brief.", messages=[{"role": "user", "content": "Say hi."}], tools=[TOOL]
    )
    assert count.input_tokens > 0, count


def beta_messages() -> None:
    response = client.beta.messages.create(
        model=ANTHROPIC_MODEL, max_tokens=1024, messages=[{"role": "user", "content": "Say hi."}]
    )
    assert response.content, response


if __name__ == "__main__":
    run(globals())
