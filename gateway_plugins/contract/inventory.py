"""Every request field the official SDKs can send, and what kubegate does with it: one table.

A field is

* **forwarded** when the endpoint's body model (:mod:`gateway_plugins.contract.bodies`) describes it; every
  string in it is PII-analysed (:mod:`gateway_plugins.contract.text`). Forwarded fields are not listed here:
  the models are their source of truth.
* **normalized** (:data:`NORMALIZED`): dropped before validation, always (answer-only fields a client echoes
  back as history, client-side tags) or when its value is the API's default (``include: []``, ``store:
  false``, ``truncation: "disabled"``). Any top-level ``null`` is the default too.
* **policy-controlled** (:data:`POLICY`): upstream-hosted tools, forwarded for the Tenants that list them in
  ``spec.hostedTools`` and dropped from other tenants' requests (clients offer them by default).
* **refused** (:data:`REFUSED`): answered ``400 unsupported_field`` with why and what to do instead.

``tests/contract/test_inventory.py`` walks the pinned ``openai`` and ``anthropic`` SDKs' request types and fails
on any field path none of these classifies, so an SDK upgrade surfaces every new field; ``docs/contract.md``
is generated from this table and the models.

Paths use the SDK walk's notation (``tests/contract/field_paths.py``): ``messages[].{role=assistant}.audio``.
A rule covers its subtree; ``*`` matches within one segment; an object's ``{type=...}``/``{role=...}`` segment may
be left out of a pattern.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

ABSENT = object()


@dataclass(frozen=True, slots=True)
class Rule:
    why: str
    fix: str = ""
    # Normalized rules: the values dropped as the API's default (``ABSENT``: always dropped).
    defaults: tuple[Any, ...] | object = ABSENT

    def drops(self, value: Any) -> bool:
        return self.defaults is ABSENT or any(value == d and type(value) is type(d) for d in self.defaults)


def _always(why: str) -> Rule:
    return Rule(why)


def _default(why: str, *values: Any) -> Rule:
    return Rule(why, defaults=values)


_ANSWER_ONLY = "part of the answer, not of a request: dropped when a client sends an answer back as history"
_TAG_ONLY = "a client-side tag the model never reads (LiteLLM would read `metadata` as its own routing input)"
_STATEFUL_FIX = "send the whole conversation as `input` (stateless: `input += response.output`)"
_HOSTED = (
    "this hosted tool keeps data upstream or runs content outside every kubegate guarantee (PII, residency, "
    "audit); only web search, web fetch and code execution can be enabled (Tenant `spec.hostedTools`)"
)
_HOSTED_FIX = "use a function tool your client runs"
_TIER = "billed above the ModelRoute's prices, which the budget reserves"
_UNINSPECTABLE = "PII analysis cannot read this content"
_STORED = "kept by the upstream between requests, outside every kubegate guarantee"
_CACHE_HINT = "an explicit cache breakpoint; the upstream caches request prefixes by itself (`prompt_cache_key`)"
_TOKENS = "these token ids are outside the tokenizer's vocabulary, so they cannot be read as text"
# Not dropped: rewritten by ``gateway_plugins.contract.token_ids`` before the rules run.
_DECODED = "token ids are decoded to text (OpenAI's tokenizer, bundled with LiteLLM) so PII analysis reads them"
_ACCOUNT = "upstream account and billing fields are the platform's, not a tenant's"

# -- normalized: dropped before validation ------------------------------------------------------------------

NORMALIZED: dict[str, dict[str, Rule]] = {
    "chat_completions": {
        "messages[].{role=assistant}.annotations": _always(_ANSWER_ONLY),
        "messages[].{role=assistant}.audio": _default(_ANSWER_ONLY, None),
        "messages[].{role=assistant}.parsed": _always(_ANSWER_ONLY),
        "messages[].{role=assistant}.provider_specific_fields": _always(_ANSWER_ONLY),
        "messages[].{role=assistant}.reasoning_content": _always(_ANSWER_ONLY),
        "messages[].{role=assistant}.thinking_blocks": _always(_ANSWER_ONLY),
        "messages[].{role=assistant}.tool_calls": _default("an empty list is no tool call", []),
        "messages[].{role=assistant}.tool_calls[].index": _always(_ANSWER_ONLY + " (stream accumulators keep it)"),
        "messages[].{role=assistant}.tool_calls[].provider_specific_fields": _always(_ANSWER_ONLY),
        "messages[].{role=assistant}.tool_calls[].function.provider_specific_fields": _always(_ANSWER_ONLY),
        "messages[].{role=tool}.name": _always("not a field of tool messages in the API (instructor adds it)"),
        "metadata": _always(_TAG_ONLY),
        "store": _default("not storing is the default", False),
        "modalities": _default("text output is the default", ["text"]),
        "service_tier": _default("the default tier", "auto", "default"),
        "stream_options": _default("no stream options", {}),
        "web_search_options": _default("no web search is the default", {}),
        "messages[].content[].prompt_cache_breakpoint": _always(_CACHE_HINT),
        "prediction.content[].prompt_cache_breakpoint": _always(_CACHE_HINT),
    },
    "completions": {
        "stream_options": _default("no stream options", {}),
        "prompt[][]": Rule(_DECODED),
    },
    "embeddings": {"input[][]": Rule(_DECODED)},
    "responses": {
        "input[].{type=message}.content[].{type=output_text}.annotations": _always(_ANSWER_ONLY),
        "input[].{type=message}.content[].{type=output_text}.logprobs": _always(_ANSWER_ONLY),
        "input[].{type=function_call}.caller": _default("a direct call is the default", None, {"type": "direct"}),
        "input[].{type=function_call_output}.caller": _default(
            "a direct call is the default", None, {"type": "direct"}
        ),
        "input[].{type=custom_tool_call}.caller": _default("a direct call is the default", None, {"type": "direct"}),
        "input[].{type=custom_tool_call_output}.caller": _default(
            "a direct call is the default", None, {"type": "direct"}
        ),
        "input[].{type=reasoning}.encrypted_content": _default("no encrypted reasoning", None),
        "input[].{type=reasoning}.content": _default("no reasoning text", None),
        "include": _default("nothing extra included is the default", []),
        "metadata": _always(_TAG_ONLY),
        "client_metadata": _always(_TAG_ONLY + " (Codex)"),
        "store": _default("not storing is the default on this gateway", False),
        "truncation": _default("no truncation is the default", "disabled"),
        "service_tier": _default("the default tier", "auto", "default"),
        "tools[].{type=function}.defer_loading": _default("loading every tool is the default", False),
        "tools[].{type=custom}.defer_loading": _default("loading every tool is the default", False),
        "tools[].{type=namespace}.tools[].defer_loading": _default("loading every tool is the default", False),
        "tools[].async": _default("a synchronous call is the default", False),
        "tools[].{type=namespace}.tools[].async": _default("a synchronous call is the default", False),
        "input[].async": _default("a synchronous call is the default", False),
        "reasoning.generate_summary": _default("no summary is the default", None),
        "input[].{type=message}.content[].prompt_cache_breakpoint": _always(_CACHE_HINT),
    },
    "anthropic_messages": {
        "metadata": _always(_TAG_ONLY + "; Anthropic uses `user_id` only for abuse detection"),
        "messages[].content[].{type=text}.citations": _default(_ANSWER_ONLY, None, []),
        "system[].{type=text}.citations": _default(_ANSWER_ONLY, None, []),
        "tools[].defer_loading": _always("tool search is not offered: every tool is loaded, which is the default"),
        "tools[].eager_input_streaming": _always("a streaming hint; the tool's input arrives whole either way"),
        "context_management": _always(
            "server-side context editing is a beta the gateway does not pass on; the conversation is sent whole"
        ),
        "service_tier": _default("the default tier", "auto"),
        "container": _default("no container", None),
        "mcp_servers": _default("no MCP servers", []),
    },
}
NORMALIZED["anthropic_count_tokens"] = {
    k: v for k, v in NORMALIZED["anthropic_messages"].items() if k.split(".")[0] not in ("metadata", "service_tier")
}

# -- policy-controlled: forwarded for the Tenants that enable them, dropped from the others' requests -----------

_POLICY = Rule(
    "an upstream-hosted tool: it fetches or runs content outside kubegate's PII, residency and audit guarantees, "
    "so it is forwarded only for Tenants that list it in `spec.hostedTools` and dropped from other requests",
    "list it in the Tenant's `spec.hostedTools` (web_search, web_fetch, code_execution)",
)
POLICY: dict[str, dict[str, Rule]] = {
    "chat_completions": {"web_search_options": _POLICY},
    "responses": {
        "tools[].{type=web_search*}": _POLICY,
        "tools[].{type=code_interpreter}": _POLICY,
        "input[].{type=web_search_call}": _POLICY,
        # the SDK's untyped web search variant
        "tools[].filters": _POLICY,
        "tools[].search_content_types": _POLICY,
        "tools[].search_context_size": _POLICY,
        "tools[].user_location": _POLICY,
        "tools[].external_web_access": _POLICY,
    },
    "anthropic_messages": {
        "tools[].{type=web_search_*}": _POLICY,
        "tools[].{type=web_fetch_*}": _POLICY,
        "tools[].{type=code_execution_*}": _POLICY,
    },
}
POLICY["anthropic_count_tokens"] = POLICY["anthropic_messages"]

# -- refused, with a reason and a fix ------------------------------------------------------------------------

_COMMON_OPENAI: dict[str, Rule] = {
    "moderation": Rule("upstream moderation settings are not passed on by this gateway", "leave it unset"),
    "prompt_cache_options": Rule(
        "explicit cache options are not passed on yet", "use `prompt_cache_key` and `prompt_cache_retention`"
    ),
    "service_tier": Rule(_TIER, "leave it unset, or use `flex`"),
    "store": Rule(_STORED, "send `store: false` or leave it unset"),
}

REFUSED: dict[str, dict[str, Rule]] = {
    "chat_completions": {
        **_COMMON_OPENAI,
        "audio": Rule("audio output is not inspected for PII", "ask for text output"),
        "modalities": Rule("audio output is not inspected for PII", 'leave `modalities` unset or `["text"]`'),
        "messages[].{role=assistant}.audio": Rule(
            "an audio reference points to audio kept by the upstream", "send the transcript as text content"
        ),
        "messages[].{role=assistant}.tool_calls[].{type=custom}": Rule(
            "custom (free-form) tool calls are not accepted on chat completions", "use the Responses API"
        ),
        "tools[].{type=custom}": Rule(
            "custom (free-form) tools are not accepted on chat completions", "use the Responses API"
        ),
        "tool_choice.{type=custom}": Rule("custom tools are not accepted on chat completions", "use `function`"),
        "tool_choice.{type=allowed_tools}": Rule("`allowed_tools` is not passed on", "send only the tools allowed"),
        "messages[].{role=user}.content[].{type=image_url}": Rule(_UNINSPECTABLE, "enable `allowUninspectable`"),
    },
    "completions": {"prompt[][]": Rule(_TOKENS, "send ids the model's tokenizer knows, or text")},
    "embeddings": {"input[][]": Rule(_TOKENS, "send ids the model's tokenizer knows, or text")},
    "responses": {
        **_COMMON_OPENAI,
        "previous_response_id": Rule("responses are not kept by this gateway", _STATEFUL_FIX),
        "conversation": Rule("conversations are not kept by this gateway", _STATEFUL_FIX),
        "background": Rule("background responses are kept server-side", "send the request in the foreground"),
        "prompt": Rule("stored prompts are kept upstream", "send the prompt's text as `instructions`"),
        "context_management": Rule(
            "server-side compaction keeps an encrypted history the gateway cannot inspect", "leave it unset"
        ),
        "include": Rule(
            "only `reasoning.encrypted_content` and `message.output_text.logprobs` can be included; the other "
            "values return hosted-tool output",
            "ask only for those two",
        ),
        "reasoning.context": Rule("not passed on by this gateway", "leave it unset"),
        "access_programs": Rule("not passed on by this gateway", "leave it unset"),
        "image": Rule("image settings are not passed on: images are not inspected for PII", "leave it unset"),
        "tools[].async": Rule("asynchronous tool calls are not passed on by this gateway", "leave it unset"),
        "tools[].{type=namespace}.tools[].async": Rule("asynchronous tool calls are not passed on", "leave it unset"),
        "input[].async": Rule("asynchronous tool calls are not passed on by this gateway", "leave it unset"),
        "reasoning.mode": Rule("not passed on by this gateway", "leave it unset"),
        "tools[].{type=!function|custom|namespace}": Rule(_HOSTED, _HOSTED_FIX),
        "tools[].{type=namespace}.tools[].allowed_callers": Rule(
            "programmatic tool calling is hosted", "leave it unset"
        ),
        "tools[].{type=namespace}.tools[].defer_loading": Rule("tool search is hosted", "leave it unset"),
        "tools[].{type=namespace}.tools[].output_schema": Rule("not passed on by this gateway", "leave it unset"),
        "tools[].{type=function}.allowed_callers": Rule("programmatic tool calling is hosted", "leave it unset"),
        "tools[].{type=function}.output_schema": Rule("not passed on by this gateway", "leave it unset"),
        "tools[].{type=function}.defer_loading": Rule("tool search is hosted", "leave it unset"),
        "tools[].{type=custom}.allowed_callers": Rule("programmatic tool calling is hosted", "leave it unset"),
        "tools[].{type=custom}.defer_loading": Rule("tool search is hosted", "leave it unset"),
        "tool_choice.{type=!function|custom}": Rule(
            _HOSTED, "choose `auto`, `none`, `required` or a function or custom tool"
        ),
        "input[].{type=!message|function_call|function_call_output|custom_tool_call|custom_tool_call_output|reasoning|web_search_call}": Rule(
            "this input item belongs to a hosted tool, or references an item stored upstream", _STATEFUL_FIX
        ),
        "input[].{type=message}.content[].{type=input_image}": Rule(_UNINSPECTABLE, "send text"),
        "input[].{type=message}.content[].{type=input_file}": Rule(_UNINSPECTABLE, "send text"),
        "input[].{type=function_call_output}.output[]": Rule(_UNINSPECTABLE, "send the output as text"),
        "input[].{type=custom_tool_call_output}.output[]": Rule(_UNINSPECTABLE, "send the output as text"),
        "input[].{type=function_call_output}.name": Rule("not a field this gateway passes on", "leave it unset"),
        "input[].{type=function_call_output}.namespace": Rule("not a field this gateway passes on", "leave it unset"),
        "input[].{type=function_call}.caller": Rule("programmatic tool calling is hosted", "leave it unset"),
        "input[].{type=function_call_output}.caller": Rule("programmatic tool calling is hosted", "leave it unset"),
        "input[].{type=custom_tool_call}.caller": Rule("programmatic tool calling is hosted", "leave it unset"),
        "input[].{type=custom_tool_call_output}.caller": Rule("programmatic tool calling is hosted", "leave it unset"),
    },
    "anthropic_messages": {
        "container": Rule("code-execution containers are hosted by the upstream", "leave it unset"),
        "mcp_servers": Rule(_HOSTED, "run MCP tools in your client"),
        "diagnostics": Rule("not passed on by this gateway", "leave it unset"),
        "inference_geo": Rule(
            "the gateway chooses the region from the tenant's residency", "leave it unset; see the Tenant's regions"
        ),
        "output_config": Rule("not passed on by this gateway yet", "use a tool with `input_schema` for JSON output"),
        "speed": Rule(_TIER, "leave it unset"),
        "user_profile_id": Rule("upstream account fields are not passed on", "leave it unset"),
        "workspace_id": Rule("upstream account fields are not passed on", "leave it unset"),
        "service_tier": Rule(_TIER, "leave it unset, or use `standard_only`"),
        "tools[].{type=!custom}": Rule(_HOSTED, "use custom tools (name, description, input_schema) your client runs"),
        "tools[].input_examples": Rule("not passed on by this gateway", "put examples in the description"),
        "tools[].allowed_callers": Rule("programmatic tool calling is hosted", "leave it unset"),
        "messages[].content[].{type=!text|tool_use|tool_result|thinking|redacted_thinking}": Rule(
            "hosted-tool results, images, documents and search results are not inspected for PII",
            "send text, `tool_use` and `tool_result` blocks",
        ),
        "messages[].content[].{type=text}.citations": Rule("citations refer to documents", "send plain text"),
        "messages[].content[].{type=tool_use}.caller": Rule("programmatic tool calling is hosted", "leave it unset"),
        "messages[].content[].{type=tool_result}.content[]": Rule(_UNINSPECTABLE, "send text blocks"),
        "system[].{type=text}.citations": Rule("citations refer to documents", "send plain text"),
        "thinking.{type=between_tools}": Rule("not passed on by this gateway", "use `enabled` or `adaptive`"),
        "messages[].{role=system}": Rule("Anthropic has no system role in messages", "send it as `system`"),
        "mcp_servers[]": Rule(_HOSTED, "run MCP tools in your client"),
        "betas": Rule("beta features are chosen by the gateway", "leave it unset"),
        "billing_policy": Rule(_ACCOUNT, "leave it unset"),
        "fallback_credit_token": Rule(_ACCOUNT, "leave it unset"),
        "fallbacks": Rule("fallbacks are the ModelRoute's (`spec.fallbacks`)", "leave it unset"),
        "compaction": Rule("server-side compaction is not passed on", "leave it unset"),
        "thread": Rule("threads are kept by the upstream", "send the whole conversation as `messages`"),
        "thinking.block_binding": Rule("not passed on by this gateway", "leave it unset"),
        "messages[].content[].toolset_name": Rule("toolsets are hosted", "leave it unset"),
    },
}
REFUSED["anthropic_count_tokens"] = dict(REFUSED["anthropic_messages"])

# -- matching -----------------------------------------------------------------------------------------------

_TAG = r"(?:\.\{[^}]*\})?"


def _regex(pattern: str) -> re.Pattern[str]:
    out = "^"
    for i, seg in enumerate(pattern.split(".")):
        name, _, brackets = seg.partition("[")
        brackets = "[" + brackets if brackets else ""
        negated = re.fullmatch(r"\{(\w+)=!([\w|]+)\}", name)
        if negated:  # ``{type=!a|b}``: an object of any other type
            key, values = negated.groups()
            piece = r"\{" + key + "=(?!(?:" + values + r")\})[^}]*\}"
        else:
            piece = re.escape(name).replace(r"\*", r"[^.}]*") + re.escape(brackets)
        if name.startswith("{"):
            out += (r"\." if i else "") + piece
        else:
            out += (_TAG + r"\." if i else "") + piece
    return re.compile(out + _TAG + r"(?:$|[.\[])")


def compile_pattern(pattern: str, *, subtree: bool = True) -> re.Pattern[str]:
    regex = _regex(pattern)
    return regex if subtree else re.compile(regex.pattern.removesuffix(r"(?:$|[.\[])") + "$")


_COMPILED: dict[str, list[tuple[str, re.Pattern[str], Rule]]] = {}


def _rules(table: dict[str, dict[str, Rule]], endpoint: str) -> list[tuple[str, re.Pattern[str], Rule]]:
    key = f"{id(table)}:{endpoint}"
    found = _COMPILED.get(key)
    if found is None:
        # Longest pattern first: the most specific rule wins.
        items = sorted(table.get(endpoint, {}).items(), key=lambda kv: -len(kv[0]))
        found = _COMPILED[key] = [(p, _regex(p), r) for p, r in items]
    return found


def match(table: dict[str, dict[str, Rule]], endpoint: str, path: str) -> tuple[str, Rule] | None:
    for pattern, regex, rule in _rules(table, endpoint):
        if regex.match(path):
            return pattern, rule
    return None


def refusal(endpoint: str, path: str) -> Rule | None:
    found = match(REFUSED, endpoint, path)
    return found[1] if found else None
