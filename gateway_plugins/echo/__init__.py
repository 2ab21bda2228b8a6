"""A tiny OpenAI- and Anthropic-compatible upstream that answers with what it received.

Used by tests, the bench and ``kubegate dev`` (when no provider key is configured), so a user sees exactly what
left the gateway. Raw ASGI on uvicorn (httptools + uvloop) to stay cheap at high rps. Run it with
``python -m gateway_plugins.echo_upstream`` (or ``python -m gateway_plugins.echo``). One module per API:
``chat`` (chat completions, completions, embeddings, models), ``responses``, ``messages``; ``common`` holds the
tool-call rule and signing, ``app`` the routes.

Endpoints: ``POST /v1/chat/completions``, ``POST /v1/responses`` (OpenAI's Responses API; LiteLLM also sends
Anthropic ``/v1/messages`` requests for ``openai/`` deployments here), ``POST /v1/messages`` (Anthropic), each
streaming and not; ``POST /v1/messages/count_tokens`` (``{"input_tokens": N}`` over tools, system and messages),
``POST /v1/completions``, ``POST /v1/embeddings``, ``GET /v1/models``; the ``/v1`` prefix is optional.

The answer is the last text of the request (a message, a tool result, the prompt), capped to the request's output
token limit (4 characters a token). Token counts are ``len(text) // 4``. Streams come in 7-character pieces, so a
placeholder such as ``<EMAIL_ADDRESS_1>`` is always split across events.

Tool calls, on all three APIs (rule in ``common.pick_tool``):

* the request has callable tools (OpenAI ``type: function``, Anthropic tools with an ``input_schema``) and
  ``tool_choice`` names one (that one), or is ``required``/``any`` (the first one the conversation has not called
  yet, else the last one: a forced loop such as pydantic-ai's function tools then its ``final_result`` ends), or
  is ``auto``/absent and the last message is the user's own (not a tool result) with ``call a tool`` or
  ``use the tool`` in its text (any case): the first one. ``none`` never calls.
* Arguments: ``{"echo": <text>}``; when the tool's JSON schema lists ``required`` properties, exactly those:
  strings the text (cut to ``maxLength``; ``date-time``/``date``/``time``/``uuid`` formats a valid constant),
  numbers 0, booleans false, arrays [], enums/consts their first value, objects their own required properties
  (``$ref`` to ``$defs`` followed), so a client's schema validation (instructor, pydantic-ai) passes.
* Chat: ``tool_calls`` with one ``call_<hex>`` call, ``content`` null, finish_reason ``tool_calls``; streamed as a
  first delta with index/id/name and empty arguments, then argument pieces. Responses: a ``function_call`` item
  (``fc_<hex>``, ``call_id`` ``call_<hex>``). Messages: a ``tool_use`` block, stop_reason ``tool_use``.
* After a tool result (chat ``role: tool``, a ``function_call_output``, a ``tool_result`` block) the answer is
  text echoing the tool output, unless ``tool_choice`` still forces a call.

Structured output (no tool call): chat ``response_format``, Responses ``text.format``, Anthropic ``output_format`` /
``output_config.format`` of type ``json_schema`` answer the schema filled as tool arguments are (a non-object
schema: its value); ``json_object`` answers ``{"echo": <text>}``.

Reasoning:

* Responses: with a ``reasoning`` object whose effort is not ``none``/``minimal`` (absent counts as asked), the
  output starts with ``{"type": "reasoning", "id": "rs_<hex>", "summary": []}``, plus ``encrypted_content`` (base64
  of a JSON payload and its HMAC-SHA256) when ``include`` has ``reasoning.encrypted_content``. ``include`` alone
  adds no item (LiteLLM's Messages-to-Responses adapter sends it on every request). A reasoning
  input item whose ``encrypted_content`` does not verify is answered 400 ``invalid_encrypted_content``
  (OpenAI-style). ``output_tokens_details.reasoning_tokens`` counts the hidden thought.
* Messages: with ``thinking`` ``{"type": "enabled", "budget_tokens": N}`` or ``{"type": "adaptive"}`` the content
  starts with ``{"type": "thinking", "thinking": "The user wrote: <text>\\nI will answer with exactly that.",
  "signature": base64 HMAC-SHA256 of the thinking text}`` (streamed as thinking_delta pieces then one
  signature_delta). Every ``thinking`` block sent back in ``messages`` must carry the signature of its exact text,
  else 400 ``{"type": "error", "error": {"type": "invalid_request_error", "message": "Invalid signature in thinking
  block"}}``; ``redacted_thinking`` blocks pass. The thought gets at most half of the output limit (and at most
  ``budget_tokens``), the answer the rest.
* The HMAC key is random per process; set ``KUBEGATE_ECHO_SECRET`` to share one between echo processes.

Cache usage:

* Chat: ``usage.prompt_tokens_details.cached_tokens`` = half the prompt tokens when ``prompt_cache_key`` is set.
  Responses: ``input_tokens_details.cached_tokens`` = half the input tokens with ``prompt_cache_key``, else 0.
* Messages, when any tool, system block or message block has ``cache_control``: the tokens of everything up to the
  last breakpoint (tools, then system, then messages) are ``cache_creation_input_tokens``, except the longest
  breakpoint prefix this process has seen before for the same model, which is ``cache_read_input_tokens``; the
  rest is ``input_tokens``. Seen prefixes are kept in a bounded LRU (4096 hashes).

Test helpers:

* ``GET /_received`` -> JSON list of ``{"path", "query", "headers", "body"}`` received (newest last);
  ``DELETE /_received`` clears it. Only the last ``--keep`` requests are kept.
* Fault injection by path prefix, so a LiteLLM deployment's ``api_base`` selects it:
  ``/status/<code>/v1/...`` answers with that HTTP status (OpenAI-style error body),
  ``/delay/<ms>/v1/...`` waits first; they combine (``/delay/50/status/429/v1``);
  ``/pace/<ms>/...`` waits that long between streamed frames.
* The same by request header (``x-echo-status``, ``x-echo-delay-ms``) when the client can set them.
* ``POST /_faults`` with ``{"status": 500, "count": 2}`` fails the next ``count`` model calls.
"""
