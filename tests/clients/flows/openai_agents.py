"""openai-agents' default flow: ``Runner.run_sync`` with a function tool and an in-memory ``SQLiteSession`` over
two turns, the Responses API model against the gateway."""

from __future__ import annotations

from _flow import BASE_URL, KEY, OPENAI_MODEL, run
from agents import (
    Agent,
    ModelSettings,
    OpenAIResponsesModel,
    Runner,
    SQLiteSession,
    function_tool,
    set_default_openai_client,
    set_tracing_disabled,
)
from openai import AsyncOpenAI


@function_tool
def lookup(echo: str) -> str:
    """Looks a word up."""
    return f"{echo} is a word"


def runner_session() -> None:
    client = AsyncOpenAI(base_url=BASE_URL + "/v1", api_key=KEY, max_retries=0, timeout=120)
    set_default_openai_client(client, use_for_tracing=False)
    set_tracing_disabled(True)
    agent = Agent(
        name="Assistant",
        instructions="Use the lookup tool.",
        tools=[lookup],
        model=OpenAIResponsesModel(model=OPENAI_MODEL, openai_client=client),
        # Forced once (the echo calls a tool only when told to); the SDK resets it after the tool ran.
        model_settings=ModelSettings(tool_choice="required"),
    )
    session = SQLiteSession("conversation-1")
    first = Runner.run_sync(agent, "Look up 'kubegate'.", session=session)
    assert first.final_output, first
    second = Runner.run_sync(agent, "And 'gateway'?", session=session)
    assert second.final_output, second


if __name__ == "__main__":
    run(globals())
