"""pydantic-ai's default flow: an ``Agent`` on ``AnthropicModel`` (provider with the gateway's base URL) calling a
tool."""

from __future__ import annotations

from _flow import ANTHROPIC_MODEL, BASE_URL, KEY, run
from pydantic_ai import Agent, RunContext
from pydantic_ai.models.anthropic import AnthropicModel
from pydantic_ai.providers.anthropic import AnthropicProvider
from pydantic_ai.settings import ModelSettings


def anthropic_agent_tool() -> None:
    model = AnthropicModel(ANTHROPIC_MODEL, provider=AnthropicProvider(base_url=BASE_URL, api_key=KEY))
    agent = Agent(model, instructions="Use the lookup tool.")
    called: list[str] = []

    @agent.tool_plain
    def lookup(echo: str) -> str:
        """Looks a word up."""
        called.append(echo)
        return f"{echo} is a word"

    def settings(ctx: RunContext) -> ModelSettings:
        # The tool forced on the first step only (the echo calls a tool only when told to).
        return {"max_retries": 0, **({"tool_choice": "required"} if ctx.run_step <= 1 else {})}

    result = agent.run_sync("Look up 'kubegate'.", model_settings=settings)
    assert called, f"the tool was never called: {result.all_messages()}"
    assert result.output, result


if __name__ == "__main__":
    run(globals())
