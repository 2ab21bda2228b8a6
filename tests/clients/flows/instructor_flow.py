"""instructor's default flow (TOOLS mode): a response model whose validator fails the first time, so instructor
sends the error back and asks again. Runs in .venv-clients-instructor (its own lock)."""

from __future__ import annotations

import instructor
from _flow import BASE_URL, KEY, OPENAI_MODEL, run
from openai import OpenAI
from pydantic import BaseModel, field_validator

attempts: list[str] = []


class Lookup(BaseModel):
    echo: str

    @field_validator("echo")
    @classmethod
    def fails_once(cls, value: str) -> str:
        attempts.append(value)
        if len(attempts) == 1:
            raise ValueError("say it again")
        return value


def tools_retry() -> None:
    client = instructor.from_openai(OpenAI(base_url=BASE_URL + "/v1", api_key=KEY, max_retries=0, timeout=120))
    result = client.chat.completions.create(
        model=OPENAI_MODEL,
        response_model=Lookup,
        max_retries=2,
        messages=[{"role": "user", "content": "Look up 'kubegate'."}],
    )
    assert len(attempts) == 2 and result.echo, (attempts, result)


if __name__ == "__main__":
    run(globals())
