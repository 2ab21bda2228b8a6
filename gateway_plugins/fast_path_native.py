"""The fast path's Responses streams and Anthropic Messages (JSON, SSE and errors), in each API's own shapes.

``gateway_plugins.fast_path`` serves the request up to the Router's answer; what differs per API from there on is
here. Streams are written by LiteLLM's own generators for these routes (``async_data_generator`` with its Responses
stream errors; ``async_sse_data_generator`` with its ``message_start`` model restamp and Anthropic ping keepalive)
and answered through its ``create_response`` (a first frame that is an error becomes a JSON error; a client leaving
before the first frame cancels the upstream call): the frames, the stream error events and the disconnect
bookkeeping (``incomplete`` audit, partial-stream billing) are LiteLLM's handler's, byte for byte, without its
request processing. A Messages error is rendered as LiteLLM's ``/v1/messages`` handler renders it (Anthropic's
envelope); the front door's Anthropic error wrapper then writes it with kubegate's code, as for every error there.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

MESSAGES = "anthropic_messages"
RESPONSES = "aresponses"
COMPLETIONS = "atext_completion"
EMBEDDINGS = "aembedding"


async def stream(
    scope: dict, receive: Any, send: Any, data: dict, user: Any, response: Any, client_model: Any, headers: dict
) -> None:
    """Answer a Responses or Messages stream as LiteLLM's handler does for ``data``'s route type."""
    import litellm
    from litellm.proxy import proxy_server
    from litellm.proxy.common_request_processing import (
        ProxyBaseLLMRequestProcessing,
        _should_return_raw_model_name,
        create_response,
    )

    request = Request(scope, receive)
    route_type = data["_kubegate_route_type"]
    logging = proxy_server.proxy_logging_obj
    if route_type == MESSAGES:
        from litellm.proxy.common_utils.sse_keepalive import wrap_sse_stream_with_keepalive_pings

        logging_obj = data.get("litellm_logging_obj")
        if logging_obj is not None:
            # A stream failing after the client left still reaches the failure hook (settle, audit).
            ProxyBaseLLMRequestProcessing(data=data)._arm_detached_stream_failure_hook(
                logging_obj=logging_obj, user_api_key_dict=user, proxy_logging_obj=logging
            )
        restamp = None if _should_return_raw_model_name(data) else client_model
        frames = ProxyBaseLLMRequestProcessing.async_sse_data_generator(
            response=response,
            user_api_key_dict=user,
            request_data=data,
            proxy_logging_obj=logging,
            request=request,
            restamp_model=restamp if isinstance(restamp, str) and restamp else None,
        )
        frames = wrap_sse_stream_with_keepalive_pings(
            stream=frames, ping_interval_seconds=litellm.anthropic_sse_ping_interval_seconds
        )
    elif route_type == COMPLETIONS:
        from litellm.proxy.proxy_server import select_data_generator

        frames = select_data_generator(response=response, user_api_key_dict=user, request_data=data, request=request)
    else:
        from litellm.proxy.proxy_server import select_data_generator

        frames = select_data_generator(
            response=response, user_api_key_dict=user, request_data=data, request=request, responses_stream_errors=True
        )
        # Code-interpreter containers a stream creates are registered to the caller, as LiteLLM's handler does.
        frames = ProxyBaseLLMRequestProcessing._wrap_responses_stream_for_container_ownership(
            original_stream_response=response, wrapped_generator=frames, user_api_key_dict=user
        )
    answer = await create_response(generator=frames, media_type="text/event-stream", headers=headers, request=request)
    await answer(scope, receive, send)


def with_logging_object(data: dict) -> dict:
    """``data`` with the logging object LiteLLM's request processing creates (``function_setup``)."""
    from datetime import datetime

    import litellm

    logging_obj, data = litellm.utils.function_setup(
        original_function=MESSAGES, rules_obj=litellm.utils.Rules(), start_time=datetime.now(), **data
    )
    data["litellm_logging_obj"] = logging_obj
    return data


def messages_payload(response: Any) -> Any:
    """A Messages answer as LiteLLM's handler returns it (``usage.total_tokens`` stripped where configured)."""
    import litellm
    from litellm.proxy.anthropic_endpoints.endpoints import _strip_total_tokens_from_anthropic_response

    if litellm.strip_anthropic_total_tokens:
        _strip_total_tokens_from_anthropic_response(response)
    return response


async def messages_error(exc: Exception, data: dict, user: Any) -> tuple[int, dict, dict]:
    """LiteLLM's ``/v1/messages`` error path: its failure hooks (kubegate's among them), then Anthropic's envelope
    with the status, message and headers its handler gives. Returns (status, body, headers)."""
    from fastapi import HTTPException
    from litellm.anthropic_interface.exceptions import AnthropicExceptionMapping
    from litellm.proxy import proxy_server
    from litellm.proxy._types import ProxyException
    from litellm.proxy.common_request_processing import proxy_exception_from_http_exception
    from litellm.proxy.common_utils.openai_error_payload import (
        error_status_code,
        openai_error_param,
        openai_error_type,
        with_litellm_call_id,
    )

    call_id = data.get("litellm_call_id")
    await proxy_server.proxy_logging_obj.post_call_failure_hook(
        user_api_key_dict=user, original_exception=exc, request_data=data
    )
    if isinstance(exc, ProxyException):
        proxy_exc = with_litellm_call_id(exc, call_id)
    elif isinstance(exc, HTTPException):
        proxy_exc = proxy_exception_from_http_exception(exc, {})
    else:
        status = error_status_code(exc, 500)
        proxy_exc = ProxyException(
            message=getattr(exc, "message", f"{exc}"),
            type=openai_error_type(exc, status),
            param=openai_error_param(exc),
            code=status,
        )
    code = proxy_exc.code
    status = int(code) if code is not None and str(code).isdigit() else 500
    body: dict = dict(
        AnthropicExceptionMapping.transform_to_anthropic_error(status_code=status, raw_message=proxy_exc.message)
    )
    if proxy_exc.provider_specific_fields:
        body["error"] = {**body["error"], "provider_specific_fields": proxy_exc.provider_specific_fields}
    return status, body, dict(proxy_exc.headers or {})


def completion_metadata(meta: Any, user: Any) -> dict:
    """The ``metadata`` LiteLLM's completions and embeddings handlers send on: the client's (a copy), plus the key's
    ids it has."""
    out = dict(meta) if isinstance(meta, dict) else {}
    for attr, name in (
        ("user_id", "user_api_key_user_id"),
        ("team_id", "user_api_key_team_id"),
        ("org_id", "user_api_key_org_id"),
        ("organization_alias", "user_api_key_org_alias"),
        ("agent_id", "agent_id"),
    ):
        value = getattr(user, attr, None)
        if value is not None:
            out[name] = value
    return out


async def completions_error(exc: Exception, data: dict, user: Any) -> Any:
    """LiteLLM's ``/v1/completions`` error path: its failure hooks, then the ``ProxyException`` its handler raises
    (the caller renders it as LiteLLM's exception handler does)."""
    from litellm.proxy import proxy_server
    from litellm.proxy._types import ProxyException
    from litellm.proxy.common_request_processing import request_litellm_call_id
    from litellm.proxy.common_utils.openai_error_payload import litellm_call_id_headers

    await proxy_server.proxy_logging_obj.post_call_failure_hook(
        user_api_key_dict=user, original_exception=exc, request_data=data
    )
    return ProxyException(
        message=getattr(exc, "message", f"{exc}"),
        type=getattr(exc, "type", "None"),
        param=getattr(exc, "param", "None"),
        headers=litellm_call_id_headers(request_litellm_call_id(data)),
        openai_code=getattr(exc, "code", None),
        code=getattr(exc, "status_code", 500),
    )
