"""LlamaIndex's default flow: ``OpenAIResponses`` chat over two turns (a model name LlamaIndex knows)."""

from __future__ import annotations

from _flow import BASE_URL, KEY, OPENAI_MODEL, run
from llama_index.core.llms import ChatMessage
from llama_index.llms.openai import OpenAIResponses


def responses_chat() -> None:
    llm = OpenAIResponses(model=OPENAI_MODEL, api_base=BASE_URL + "/v1", api_key=KEY, max_retries=0)
    messages = [ChatMessage(role="user", content="Say hi.")]
    answer = llm.chat(messages)
    messages += [answer.message, ChatMessage(role="user", content="Again.")]
    answer = llm.chat(messages)
    assert answer.message.content, answer


if __name__ == "__main__":
    run(globals())
