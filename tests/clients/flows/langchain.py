"""LangChain's default flows: ``ChatOpenAI`` (Chat Completions and the Responses API) over two turns,
``OpenAIEmbeddings`` (it sends token arrays) and ``ChatAnthropic`` with a tool loop through ``bind_tools``."""

from __future__ import annotations

from _flow import ANTHROPIC_MODEL, BASE_URL, EMBEDDING_MODEL, KEY, OPENAI_MODEL, run
from langchain_anthropic import ChatAnthropic
from langchain_core.messages import HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI, OpenAIEmbeddings


@tool
def lookup(echo: str) -> str:
    """Looks a word up."""
    return f"{echo} is a word"


def _two_turns(llm) -> None:
    messages = [HumanMessage("Say hi.")]
    messages.append(llm.invoke(messages))
    messages.append(HumanMessage("Again."))
    answer = llm.invoke(messages)
    assert answer.content, answer


def chat_openai() -> None:
    _two_turns(ChatOpenAI(model=OPENAI_MODEL, base_url=BASE_URL + "/v1", api_key=KEY, max_retries=0))


def chat_openai_responses() -> None:
    llm = ChatOpenAI(model=OPENAI_MODEL, base_url=BASE_URL + "/v1", api_key=KEY, max_retries=0, use_responses_api=True)
    _two_turns(llm)


def openai_embeddings() -> None:
    embeddings = OpenAIEmbeddings(model=EMBEDDING_MODEL, base_url=BASE_URL + "/v1", api_key=KEY, max_retries=0)
    vectors = embeddings.embed_documents(["kubegate", "gateway"])
    assert len(vectors) == 2 and all(vectors), vectors
    assert embeddings.embed_query("kubegate"), "no query vector"


def chat_anthropic_tools() -> None:
    llm = ChatAnthropic(model=ANTHROPIC_MODEL, base_url=BASE_URL, api_key=KEY, max_retries=0)
    messages = [HumanMessage("Look up 'kubegate'.")]
    answer = llm.bind_tools([lookup], tool_choice="lookup").invoke(messages)  # forced: the echo needs it
    assert answer.tool_calls, f"no tool call: {answer}"
    messages.append(answer)
    for call in answer.tool_calls:
        messages.append(ToolMessage(lookup.invoke(call["args"]), tool_call_id=call["id"]))
    answer = llm.bind_tools([lookup]).invoke(messages)
    assert answer.content and not answer.tool_calls, answer


if __name__ == "__main__":
    run(globals())
