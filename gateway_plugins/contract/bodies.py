"""The request bodies a tenant may send, one strict model per endpoint: the closed contract.

Strict means: unknown fields are refused (``extra="forbid"``), types are not coerced (``strict=True``:
``"5"`` is not an integer), and enumerations are closed. The validated dict is forwarded as it is, so
what reaches LiteLLM is exactly what these models describe. Fields that steer LiteLLM rather than the
model (``fallbacks``, ``api_base``, ``api_key``, ``extra_headers``, ``extra_body``, ``metadata``,
``mock_response``, ``caching``, ``num_retries``, ``litellm_*`` ...) are not in any model, so they are
refused by construction, as is anything added to LiteLLM or the OpenAI API later.

What the official SDKs send that these models do not describe is classified in
:mod:`gateway_plugins.contract.inventory`: normalized away before validation (response-only fields a client
echoes back as history, values equal to the default), or refused with a reason and a fix. ``docs/contract.md``
is generated from that inventory and these models.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag

Number = Annotated[float, Field(allow_inf_nan=False)]
# Function and tool names: what OpenAI accepts; they are still PII-analysed like any other text.
FunctionName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
TokenId = Annotated[str, Field(pattern=r"^[0-9]{1,9}$")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class _Hosted(BaseModel):
    # An upstream-hosted tool's settings pass as sent (every string in them is still PII-analysed); whether the
    # tenant may use it at all is the Tenant's ``hostedTools`` (``validate.apply_hosted_tools``).
    model_config = ConfigDict(extra="allow", strict=True, frozen=True)


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


class RefusalPart(Strict):
    type: Literal["refusal"]
    refusal: str


AssistantPart = Annotated[TextPart | RefusalPart, Field(discriminator="type")]


class AssistantMessage(Strict):
    role: Literal["assistant"]
    content: str | list[AssistantPart] | None = None
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
    include_obfuscation: bool | None = None


Stop = str | Annotated[list[str], Field(max_length=4)]
ReasoningEffort = Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"]
# ``auto``/``default`` are normalized away (they are the default); ``flex`` costs less than the route's prices.
# ``priority``, ``scale`` and ``fast`` are billed above them, so a budget could not reserve enough: refused.
ServiceTier = Literal["flex"]
PromptCacheKey = Annotated[str, Field(max_length=1024)]


class WebSearchOptions(BaseModel):
    # The chat API's hosted web search (``Tenant.hostedTools``: web_search); its settings pass as sent.
    model_config = ConfigDict(extra="allow", strict=True, frozen=True)


class Prediction(Strict):
    type: Literal["content"]
    content: str | list[TextPart]


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
    reasoning_effort: ReasoningEffort | None = None
    verbosity: Literal["low", "medium", "high"] | None = None
    prediction: Prediction | None = None
    prompt_cache_key: PromptCacheKey | None = None
    prompt_cache_retention: Literal["in_memory", "24h"] | None = None
    safety_identifier: str | None = Field(default=None, max_length=256)
    service_tier: ServiceTier | None = None
    web_search_options: WebSearchOptions | None = None


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


# -- OpenAI Responses API (/v1/responses) -----------------------------------------------------------
#
# Stateless only: ``store`` must be false, and ``previous_response_id``, ``conversation``, ``background``,
# ``prompt`` (stored prompts), ``include`` and hosted tools (file search, vector stores, web search,
# code interpreter, computer use, MCP, image generation) are refused, because each would keep tenant
# data in the gateway or upstream, or fetch content no guarantee covers.


class InputText(Strict):
    type: Literal["input_text"]
    text: str


class OutputText(Strict):
    # Replayed assistant output: its ``annotations`` and ``logprobs`` are answer-only and normalized away.
    type: Literal["output_text"]
    text: str


class OutputRefusal(Strict):
    type: Literal["refusal"]
    refusal: str


ResponseInputPart = Annotated[InputText | OutputText | OutputRefusal, Field(discriminator="type")]
ItemStatus = Literal["in_progress", "completed", "incomplete"]


class ResponseMessage(Strict):
    type: Literal["message"] | None = None
    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[ResponseInputPart]
    id: str | None = Field(default=None, max_length=256)
    status: ItemStatus | None = None
    phase: Literal["commentary", "final_answer"] | None = None


class ResponseFunctionCall(Strict):
    type: Literal["function_call"]
    call_id: str = Field(min_length=1, max_length=256)
    name: FunctionName
    arguments: str
    namespace: FunctionName | None = None
    id: str | None = Field(default=None, max_length=256)
    status: ItemStatus | None = None


class ResponseFunctionCallOutput(Strict):
    type: Literal["function_call_output"]
    call_id: str = Field(min_length=1, max_length=256)
    output: str | list[InputText]
    id: str | None = Field(default=None, max_length=256)
    status: ItemStatus | None = None


class ResponseCustomToolCall(Strict):
    type: Literal["custom_tool_call"]
    call_id: str = Field(min_length=1, max_length=256)
    name: FunctionName
    input: str
    namespace: FunctionName | None = None
    id: str | None = Field(default=None, max_length=256)


class ResponseCustomToolCallOutput(Strict):
    type: Literal["custom_tool_call_output"]
    call_id: str = Field(min_length=1, max_length=256)
    output: str | list[InputText]
    id: str | None = Field(default=None, max_length=256)


class ResponseWebSearchCall(_Hosted):
    # History of an enabled hosted web search (``input += response.output``); dropped with the tool otherwise.
    type: Literal["web_search_call"]


class SummaryText(Strict):
    type: Literal["summary_text"]
    text: str


class ReasoningText(Strict):
    type: Literal["reasoning_text"]
    text: str


# The upstream's own encrypted reasoning, sent back so a stateless client keeps a reasoning model's chain of
# thought (``include: ["reasoning.encrypted_content"]``). Opaque: only the upstream that made it can read it.
EncryptedBlob = Annotated[str, Field(max_length=1_048_576, pattern=r"^[A-Za-z0-9+/=_\-]*$")]


class ResponseReasoningItem(Strict):
    type: Literal["reasoning"]
    id: str | None = Field(default=None, max_length=256)
    summary: list[SummaryText]
    content: list[ReasoningText] | None = None
    encrypted_content: EncryptedBlob | None = None
    status: ItemStatus | None = None


def _item_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        kind = value.get("type", "message")
        return kind if isinstance(kind, str) else None
    return None


ResponseInputItem = Annotated[
    Annotated[ResponseMessage, Tag("message")]
    | Annotated[ResponseFunctionCall, Tag("function_call")]
    | Annotated[ResponseFunctionCallOutput, Tag("function_call_output")]
    | Annotated[ResponseCustomToolCall, Tag("custom_tool_call")]
    | Annotated[ResponseCustomToolCallOutput, Tag("custom_tool_call_output")]
    | Annotated[ResponseReasoningItem, Tag("reasoning")]
    | Annotated[ResponseWebSearchCall, Tag("web_search_call")],
    Discriminator(_item_kind),
]


class ResponseFunctionTool(Strict):
    type: Literal["function"]
    name: FunctionName
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class GrammarFormat(Strict):
    type: Literal["grammar"]
    syntax: Literal["lark", "regex"]
    definition: str


ResponseCustomToolFormat = Annotated[TextFormat | GrammarFormat, Field(discriminator="type")]


class ResponseCustomTool(Strict):
    # A free-form tool (Codex's ``apply_patch``): the model writes its input as text, optionally in a grammar.
    type: Literal["custom"]
    name: FunctionName
    description: str | None = None
    format: ResponseCustomToolFormat | None = None


class ResponseNamespaceTool(Strict):
    # A named group of function tools the client runs (Codex's sub-agent tools); calls name it in ``namespace``.
    type: Literal["namespace"]
    name: FunctionName
    description: str | None = None
    tools: list[Annotated[ResponseFunctionTool | ResponseCustomTool, Field(discriminator="type")]]


# Hosted tool types by what they do (the policy's ``HostedTool``), per API.
RESPONSES_HOSTED = {
    "web_search": "web_search",
    "web_search_preview": "web_search",
    "web_search_2025_08_26": "web_search",
    "web_search_preview_2025_03_11": "web_search",
    "code_interpreter": "code_execution",
}
ANTHROPIC_HOSTED_PREFIXES = {
    "web_search_": "web_search",
    "web_fetch_": "web_fetch",
    "code_execution_": "code_execution",
}


class ResponseHostedTool(_Hosted):
    type: Literal[
        "web_search", "web_search_preview", "web_search_2025_08_26", "web_search_preview_2025_03_11", "code_interpreter"
    ]


ResponseTool = Annotated[
    ResponseFunctionTool | ResponseCustomTool | ResponseNamespaceTool | ResponseHostedTool,
    Field(discriminator="type"),
]


class ResponseNamedFunction(Strict):
    type: Literal["function", "custom"]
    name: FunctionName


class ResponseHostedToolChoice(Strict):
    # Forces a hosted tool: served only for a Tenant that enables it (``validate.apply_hosted_tools``).
    type: Literal["web_search", "web_search_preview", "web_search_2025_08_26", "code_interpreter"]


class ResponseJsonSchemaFormat(Strict):
    type: Literal["json_schema"]
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    description: str | None = None
    schema_: dict[str, Any] = Field(alias="schema")
    strict: bool | None = None


ResponseTextFormat = Annotated[TextFormat | JsonObjectFormat | ResponseJsonSchemaFormat, Field(discriminator="type")]


class ResponseTextConfig(Strict):
    format: ResponseTextFormat | None = None
    verbosity: Literal["low", "medium", "high"] | None = None


class ReasoningConfig(Strict):
    effort: ReasoningEffort | None = None
    summary: Literal["auto", "concise", "detailed"] | None = None


class ResponsesStreamOptions(Strict):
    include_obfuscation: bool | None = None


# What a stateless client needs back (its reasoning, and logprobs); the other values fetch hosted-tool output.
ResponseInclude = Literal["reasoning.encrypted_content", "message.output_text.logprobs"]


class ResponsesRequest(Strict):
    model: str = Field(min_length=1, max_length=253)
    input: str | Annotated[list[ResponseInputItem], Field(min_length=1)]
    instructions: str | None = None
    max_output_tokens: int | None = Field(default=None, ge=1)
    temperature: Number | None = Field(default=None, ge=0, le=2)
    top_p: Number | None = Field(default=None, ge=0, le=1)
    tools: list[ResponseTool] | None = None
    tool_choice: Literal["none", "auto", "required"] | ResponseNamedFunction | ResponseHostedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    max_tool_calls: int | None = Field(default=None, ge=1)
    text: ResponseTextConfig | None = None
    reasoning: ReasoningConfig | None = None
    include: list[ResponseInclude] | None = None
    stream: bool | None = None
    stream_options: ResponsesStreamOptions | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    truncation: Literal["auto"] | None = None
    prompt_cache_key: PromptCacheKey | None = None
    prompt_cache_retention: Literal["in_memory", "24h"] | None = None
    safety_identifier: str | None = Field(default=None, max_length=256)
    service_tier: ServiceTier | None = None
    user: str | None = Field(default=None, max_length=256)


# -- Anthropic Messages API (/v1/messages) ----------------------------------------------------------
#
# ``metadata`` (``user_id``) is normalized away: LiteLLM reads ``metadata`` on this route as its own input.
# Server tools, images and documents are not accepted (see the inventory).


class CacheControl(Strict):
    # Prompt caching: a breakpoint, and how long the upstream keeps the prefix (Anthropic's own default 5m).
    type: Literal["ephemeral"]
    ttl: Literal["5m", "1h"] | None = None


class AnthropicText(Strict):
    type: Literal["text"]
    text: str
    cache_control: CacheControl | None = None


class AnthropicToolUse(Strict):
    type: Literal["tool_use"]
    id: str = Field(min_length=1, max_length=256)
    name: FunctionName
    # The model's arguments: free-form JSON whose every string (and key) is text.
    input: dict[str, Any]
    cache_control: CacheControl | None = None


class AnthropicToolResult(Strict):
    type: Literal["tool_result"]
    tool_use_id: str = Field(min_length=1, max_length=256)
    content: str | list[AnthropicText] | None = None
    is_error: bool | None = None
    cache_control: CacheControl | None = None


class AnthropicThinking(Strict):
    # The model's own thinking, sent back byte-exact: the upstream checks ``signature`` against ``thinking``.
    type: Literal["thinking"]
    thinking: str
    signature: EncryptedBlob


class AnthropicRedactedThinking(Strict):
    type: Literal["redacted_thinking"]
    data: EncryptedBlob


AnthropicBlock = Annotated[
    AnthropicText | AnthropicToolUse | AnthropicToolResult | AnthropicThinking | AnthropicRedactedThinking,
    Field(discriminator="type"),
]


class AnthropicMessage(Strict):
    role: Literal["user", "assistant"]
    content: str | Annotated[list[AnthropicBlock], Field(min_length=1)]


class AnthropicTool(Strict):
    type: Literal["custom"] | None = None
    name: FunctionName
    description: str | None = None
    input_schema: dict[str, Any]
    cache_control: CacheControl | None = None
    strict: bool | None = None


class AnthropicServerTool(_Hosted):
    type: str = Field(pattern=r"^(web_search|web_fetch|code_execution)_[0-9]{8}$")
    name: FunctionName


def _tool_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        return "custom" if value.get("type") in (None, "custom") else "server"
    return None


AnthropicAnyTool = Annotated[
    Annotated[AnthropicTool, Tag("custom")] | Annotated[AnthropicServerTool, Tag("server")],
    Discriminator(_tool_kind),
]


class AnthropicToolChoiceAuto(Strict):
    type: Literal["auto", "any", "none"]
    disable_parallel_tool_use: bool | None = None


class AnthropicToolChoiceTool(Strict):
    type: Literal["tool"]
    name: FunctionName
    disable_parallel_tool_use: bool | None = None


def _choice_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        return "tool" if value.get("type") == "tool" else "auto"
    return None


AnthropicToolChoice = Annotated[
    Annotated[AnthropicToolChoiceAuto, Tag("auto")] | Annotated[AnthropicToolChoiceTool, Tag("tool")],
    Discriminator(_choice_kind),
]


class ThinkingEnabled(Strict):
    type: Literal["enabled"]
    budget_tokens: int = Field(ge=1)
    display: Literal["summarized", "omitted"] | None = None


class ThinkingAdaptive(Strict):
    type: Literal["adaptive"]
    display: Literal["summarized", "omitted"] | None = None


class ThinkingDisabled(Strict):
    type: Literal["disabled"]


Thinking = Annotated[ThinkingEnabled | ThinkingAdaptive | ThinkingDisabled, Field(discriminator="type")]


class _MessagesInput(Strict):
    """What both ``/v1/messages`` and ``/v1/messages/count_tokens`` read."""

    model: str = Field(min_length=1, max_length=253)
    messages: Annotated[list[AnthropicMessage], Field(min_length=1)]
    system: str | list[AnthropicText] | None = None
    tools: list[AnthropicAnyTool] | None = None
    tool_choice: AnthropicToolChoice | None = None
    thinking: Thinking | None = None
    cache_control: CacheControl | None = None


class MessagesRequest(_MessagesInput):
    max_tokens: int = Field(ge=1)
    stop_sequences: Annotated[list[str], Field(max_length=8)] | None = None
    temperature: Number | None = Field(default=None, ge=0, le=1)
    top_p: Number | None = Field(default=None, ge=0, le=1)
    top_k: int | None = Field(default=None, ge=0)
    stream: bool | None = None
    service_tier: Literal["standard_only"] | None = None


class CountTokensRequest(_MessagesInput):
    pass


# Fields refused with a reason of their own rather than "not accepted": the stateful and hosted features
# a tenant is most likely to try, so the error says why.
REFUSED_BECAUSE = {
    "previous_response_id": "stateful responses are not kept by this gateway; send the conversation as input",
    "conversation": "stateful conversations are not kept by this gateway; send the conversation as input",
    "background": "background responses are not available on this gateway (they are kept server-side)",
    "store": "stored responses would keep tenant data upstream (only store=false is accepted, on /v1/responses)",
    "prompt": "stored prompts are not available on this gateway",
    "include": "included extras (stored or hosted content) are not available on this gateway",
    "metadata": "metadata is not accepted by this gateway",
}
