"""The request bodies a tenant may send, one strict model per endpoint: the closed contract.

Strict means: unknown fields are refused (``extra="forbid"``), types are not coerced (``strict=True``:
``"5"`` is not an integer), and enumerations are closed. The validated dict is forwarded as it is, so
what reaches LiteLLM is exactly what these models describe. Fields that steer LiteLLM rather than the
model (``fallbacks``, ``api_base``, ``api_key``, ``extra_headers``, ``extra_body``, ``metadata``,
``mock_response``, ``caching``, ``num_retries``, ``litellm_*`` ...) are not in any model, so they are
refused by construction, as is anything added to LiteLLM or the OpenAI API later.

Deliberately absent OpenAI fields: ``store``/``metadata`` (stateful, and LiteLLM reads ``metadata`` as its
own routing input), ``audio``/``modalities`` (audio output is not inspected), ``prediction``,
``web_search_options``, ``service_tier``; token-array prompts and inputs (text that PII analysis cannot
read). ``docs/contract.md`` lists what each endpoint accepts.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Number = Annotated[float, Field(allow_inf_nan=False)]
# Function and tool names: what OpenAI accepts; they are still PII-analysed like any other text.
FunctionName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
TokenId = Annotated[str, Field(pattern=r"^[0-9]{1,9}$")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


# -- content parts ----------------------------------------------------------------------------------


class TextPart(Strict):
    type: Literal["text"]
    text: str


class ImageUrl(Strict):
    url: str
    detail: Literal["auto", "low", "high"] | None = None


class ImagePart(Strict):
    type: Literal["image_url"]
    image_url: ImageUrl


class InputAudio(Strict):
    data: str
    format: Literal["wav", "mp3"]


class AudioPart(Strict):
    type: Literal["input_audio"]
    input_audio: InputAudio


class FileRef(Strict):
    file_data: str | None = None
    file_id: str | None = None
    filename: str | None = None


class FilePart(Strict):
    type: Literal["file"]
    file: FileRef


UserPart = Annotated[TextPart | ImagePart | AudioPart | FilePart, Field(discriminator="type")]
# Part types PII analysis cannot read: refused unless the tenant's PII policy allows them.
UNINSPECTABLE_PARTS = frozenset({"image_url", "input_audio", "file"})


# -- messages ---------------------------------------------------------------------------------------


class FunctionCall(Strict):
    name: FunctionName
    arguments: str


class ToolCall(Strict):
    id: str = Field(min_length=1, max_length=256)
    type: Literal["function"]
    function: FunctionCall


class SystemMessage(Strict):
    role: Literal["system"]
    content: str | list[TextPart]
    name: str | None = None


class DeveloperMessage(Strict):
    role: Literal["developer"]
    content: str | list[TextPart]
    name: str | None = None


class UserMessage(Strict):
    role: Literal["user"]
    content: str | list[UserPart]
    name: str | None = None


class AssistantMessage(Strict):
    role: Literal["assistant"]
    content: str | list[TextPart] | None = None
    name: str | None = None
    refusal: str | None = None
    tool_calls: list[ToolCall] | None = None
    function_call: FunctionCall | None = None


class ToolMessage(Strict):
    role: Literal["tool"]
    content: str | list[TextPart]
    tool_call_id: str = Field(min_length=1, max_length=256)


class FunctionMessage(Strict):
    role: Literal["function"]
    content: str | None
    name: FunctionName


Message = Annotated[
    SystemMessage | DeveloperMessage | UserMessage | AssistantMessage | ToolMessage | FunctionMessage,
    Field(discriminator="role"),
]


# -- tools and formats ------------------------------------------------------------------------------


class FunctionDef(Strict):
    name: FunctionName
    description: str | None = None
    # A JSON schema: free-form, so every string in it (descriptions, enum values, property names) is text
    # to PII analysis; its depth is bounded by the Gateway's request limits.
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(Strict):
    type: Literal["function"]
    function: FunctionDef


class NamedFunction(Strict):
    name: FunctionName


class NamedToolChoice(Strict):
    type: Literal["function"]
    function: NamedFunction


class JsonSchemaFormat(Strict):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class TextFormat(Strict):
    type: Literal["text"]


class JsonObjectFormat(Strict):
    type: Literal["json_object"]


class JsonSchemaResponseFormat(Strict):
    type: Literal["json_schema"]
    json_schema: JsonSchemaFormat


ResponseFormat = Annotated[TextFormat | JsonObjectFormat | JsonSchemaResponseFormat, Field(discriminator="type")]


class StreamOptions(Strict):
    include_usage: bool | None = None


Stop = str | Annotated[list[str], Field(max_length=4)]


# -- endpoints --------------------------------------------------------------------------------------


class _Sampling(Strict):
    model: str = Field(min_length=1, max_length=253)
    max_tokens: int | None = Field(default=None, ge=1)
    n: int | None = Field(default=None, ge=1)
    temperature: Number | None = Field(default=None, ge=0, le=2)
    top_p: Number | None = Field(default=None, ge=0, le=1)
    frequency_penalty: Number | None = Field(default=None, ge=-2, le=2)
    presence_penalty: Number | None = Field(default=None, ge=-2, le=2)
    logit_bias: dict[TokenId, Annotated[Number, Field(ge=-100, le=100)]] | None = None
    seed: int | None = None
    stop: Stop | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    user: str | None = Field(default=None, max_length=256)


class ChatCompletionRequest(_Sampling):
    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    response_format: ResponseFormat | None = None
    tools: list[Tool] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    functions: list[FunctionDef] | None = None
    function_call: Literal["none", "auto"] | NamedFunction | None = None
    reasoning_effort: Literal["minimal", "low", "medium", "high"] | None = None


class CompletionRequest(_Sampling):
    # Token-id prompts are refused: PII analysis cannot read them.
    prompt: str | Annotated[list[str], Field(min_length=1)]
    suffix: str | None = None
    best_of: int | None = Field(default=None, ge=1)
    echo: bool | None = None
    logprobs: int | None = Field(default=None, ge=0, le=5)


class EmbeddingRequest(Strict):
    model: str = Field(min_length=1, max_length=253)
    input: str | Annotated[list[str], Field(min_length=1)]
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: int | None = Field(default=None, ge=1, le=65_536)
    user: str | None = Field(default=None, max_length=256)
