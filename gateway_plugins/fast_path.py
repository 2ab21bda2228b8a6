"""The fast path (issue #22): contract requests served by kubegate's hooks and the proxy's own Router, called
directly, instead of LiteLLM's route handlers and proxy layers: ``/v1/chat/completions``, ``/v1/responses``,
Anthropic's ``/v1/messages`` and ``/v1/completions``, JSON and SSE, and ``/v1/embeddings``. Chat streams are written
here; Responses, Messages and completions streams, Messages answers and Messages errors in their APIs' own shapes by
``gateway_plugins.fast_path_native``.

One intended difference: a completions stream's prompt tokens (its upstream reports none) are counted from the prompt
the upstream received, masked, as on every other route; LiteLLM's completions handler counts the client's prompt.

The front door (``gateway_plugins.contract.front_door``) calls :func:`app` in place of LiteLLM's ASGI app, with
the same ``scope``, replayed ``receive`` and filtered ``send``, once it has authenticated the tenant, checked the
contract and registered the request's context; its header filtering, request-id headers, Anthropic error
wrapper, cache capture and end-of-request bookkeeping work unchanged. On by default; ``KUBEGATE_FAST_PATH=0``
switches it off.

What LiteLLM's handler does for a request, and what is kept:

* the identity: the ``UserAPIKeyAuth`` kubegate's custom auth builds (``gateway_plugins.auth.identity``);
* the request data: the parsed body, the ``user_api_key_*`` metadata LiteLLM's chat handler adds, the call id
  (kubegate's request id: every callback finds the request's context by it) and the stream-usage option LiteLLM
  adds so a stream reports its tokens (``_stream_usage_tracking_updates``, same settings);
* ``KubegateHooks.async_pre_call_hook`` (limits, residency, PII), the call through LiteLLM's ``route_request``
  to the proxy's ``llm_router`` (retries, fallbacks, cooldowns, cost map; the Router runs kubegate's deployment
  filter, deployment hook and success/failure logging callbacks as ever), then the success hook (PII restore,
  official shapes) or the streaming-iterator hook, and the response-headers hook;
* the answer, written with orjson: LiteLLM's own serialisation of the response (chat:
  ``model_dump_with_preserved_fields``, ``exclude_unset``; chunks by its ``_serialize_streaming_chunk``; Responses:
  FastAPI's ``jsonable_encoder``, as its handler returns the object), the model restamped to the client's name as
  LiteLLM does, ``data: [DONE]`` at the end of a stream, a stream whose first frame is an error answered as JSON;
* errors: LiteLLM's own error path (``_handle_llm_api_exception``, which calls kubegate's failure hook and the
  response-headers hook) renders them exactly as its exception handler does.

What is skipped: FastAPI's routing and dependency injection, LiteLLM's auth plumbing, its request-data
enrichment and logging-object set-up before the hooks (the Router sets up its own), ProxyLogging's dispatch to
callbacks kubegate does not register, its per-request status bookkeeping and custom ``x-litellm-*`` headers
(the front door drops them anyway).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson
from pydantic import BaseModel

from gateway_plugins import fast_path_native, metrics
from gateway_plugins.context import RequestContext

log = logging.getLogger("kubegate.fast_path")

# Endpoint name -> LiteLLM's route type, for the endpoints the fast path serves.
ROUTE_TYPES = {
    "chat_completions": "acompletion",
    "completions": "atext_completion",
    "responses": "aresponses",
    "anthropic_messages": "anthropic_messages",
    "embeddings": "aembedding",
}

_SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


def handles(ctx: RequestContext) -> bool:
    return ctx.call_type in ROUTE_TYPES


def _hooks() -> Any:
    from gateway_plugins.hooks import proxy_handler_instance

    return proxy_handler_instance


async def app(scope: dict, receive: Any, send: Any) -> None:
    from gateway_plugins.auth import identity
    from gateway_plugins.contract.front_door import SCOPE_KEY

    ctx: RequestContext = scope[SCOPE_KEY]
    route_type = ROUTE_TYPES[ctx.call_type]
    metrics.FAST_PATH_REQUESTS.labels(ctx.call_type).inc()
    started = time.perf_counter()
    user = identity(ctx)
    metrics.STAGE_LATENCY.labels("auth").observe(time.perf_counter() - started)
    keys, body = scope["parsed_body"]
    data: dict = {k: body[k] for k in keys}
    client_model = data.get("model")
    if route_type in (fast_path_native.COMPLETIONS, fast_path_native.EMBEDDINGS):
        data["metadata"] = fast_path_native.completion_metadata(data.get("metadata"), user)
    elif route_type == "acompletion":
        # As LiteLLM's chat handler does (a client's metadata dict is kept; copied, the parsed body stays as sent).
        meta = data.get("metadata")
        data["metadata"] = {
            **(meta if isinstance(meta, dict) else {}),
            "user_api_key_user_id": user.user_id,
            "user_api_key_team_id": user.team_id,
        }
    data["litellm_call_id"] = ctx.request_id
    stream = data.get("stream") is True
    if stream:
        data.update(_stream_usage_updates(data, route_type, user))
    hooks = _hooks()
    if route_type == fast_path_native.MESSAGES:
        # The logging object LiteLLM's handler sets up before the call and the Router then uses: a Messages
        # stream the client leaves before its first event is billed from it (its answer carries none).
        data = fast_path_native.with_logging_object(data)
    try:
        data = await hooks.async_pre_call_hook(user, None, data, route_type)
        response = await _call_router(data, route_type, user)
    except Exception as exc:
        await _error(send, exc, data, user, route_type)
        return
    if stream or _is_stream(response):
        if route_type == "acompletion":
            await _stream(scope, receive, send, ctx, data, user, response, client_model)
        else:
            data["_kubegate_route_type"] = route_type
            headers = await _stream_headers(data, user, response, client_model)
            await fast_path_native.stream(scope, receive, send, data, user, response, client_model, headers)
        return
    try:
        response = await hooks.async_post_call_success_hook(data, user, response)
    except Exception as exc:
        await _error(send, exc, data, user, route_type)
        return
    _restamp_model(response, client_model, data, ctx)
    headers = await hooks.async_post_call_response_headers_hook(data, user, response) or {}
    if route_type == "anthropic_messages":
        response = fast_path_native.messages_payload(response)
    if isinstance(response, BaseModel) and route_type == "acompletion":
        from litellm.proxy.utils import model_dump_with_preserved_fields

        payload = model_dump_with_preserved_fields(response, exclude_unset=True)
    elif isinstance(response, BaseModel):
        # Other handlers return the object and FastAPI encodes it.
        from fastapi.encoders import jsonable_encoder

        payload = jsonable_encoder(response)
    else:
        payload = response
        if isinstance(payload, dict):
            payload.pop("_hidden_params", None)
    raw = orjson.dumps(payload, default=_default)
    out = [(b"content-length", str(len(raw)).encode()), (b"content-type", b"application/json")]
    out += [(k.encode("latin-1"), str(v).encode("latin-1")) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": 200, "headers": out})
    await send({"type": "http.response.body", "body": raw})


def _default(value: Any) -> Any:
    # What FastAPI's jsonable_encoder does for the odd non-JSON value a provider leaves in a response.
    from fastapi.encoders import jsonable_encoder

    return jsonable_encoder(value)


def _stream_usage_updates(data: dict, route_type: str, user: Any) -> Any:
    from litellm.proxy import proxy_server
    from litellm.proxy.common_request_processing import (
        _model_deployments_support_stream_options,
        _stream_usage_tracking_updates,
    )

    return _stream_usage_tracking_updates(
        data=data,
        general_settings=proxy_server.general_settings,
        route_type=route_type,
        supports_stream_options=lambda: _model_deployments_support_stream_options(
            model=data.get("model"), llm_router=proxy_server.llm_router, team_id=user.team_id
        ),
    )


async def _call_router(data: dict, route_type: str, user: Any) -> Any:
    from litellm.proxy import proxy_server
    from litellm.proxy.route_llm_request import route_request

    call = await route_request(
        data=data, llm_router=proxy_server.llm_router, user_model=None, route_type=route_type, user_api_key_dict=user
    )
    return await call


def _is_stream(response: Any) -> bool:
    from litellm.proxy.common_request_processing import ProxyBaseLLMRequestProcessing

    return ProxyBaseLLMRequestProcessing._is_streaming_response(None, response)  # type: ignore[arg-type]


def _restamp_model(response: Any, client_model: Any, data: dict, ctx: RequestContext) -> None:
    if not isinstance(client_model, str) or not client_model:
        return
    from litellm.proxy.common_request_processing import (
        _override_openai_response_model,
        _should_return_raw_model_name,
    )

    _override_openai_response_model(
        response_obj=response,
        requested_model=client_model,
        log_context=f"litellm_call_id={ctx.request_id}",
        return_raw_model_name=_should_return_raw_model_name(data),
    )


async def _error(send: Any, exc: Exception, data: dict, user: Any, route_type: str = "") -> None:
    """LiteLLM's own error path: its failure hooks (kubegate's among them), then its exception handler's body."""
    if route_type == fast_path_native.MESSAGES:
        status, body, headers = await fast_path_native.messages_error(exc, data, user)
        await _json(send, status, body, headers)
        return
    from litellm.proxy._types import ProxyException

    if route_type == fast_path_native.COMPLETIONS and not isinstance(exc, ProxyException):
        # kubegate's own refusals (a ProxyException) read as on every other route; the rest as LiteLLM's
        # completions handler answers them.
        proxy_exc = await fast_path_native.completions_error(exc, data, user)
        status = int(proxy_exc.code) if proxy_exc.code else 500
        await _json(send, status, {"error": proxy_exc.to_dict()}, proxy_exc.headers or {})
        return
    from litellm.proxy import proxy_server
    from litellm.proxy.common_request_processing import ProxyBaseLLMRequestProcessing

    try:
        await ProxyBaseLLMRequestProcessing(data=data)._handle_llm_api_exception(
            e=exc, user_api_key_dict=user, proxy_logging_obj=proxy_server.proxy_logging_obj
        )
    except ProxyException as proxy_exc:
        status = int(proxy_exc.code) if proxy_exc.code else 500
        await _json(send, status, {"error": proxy_exc.to_dict()}, proxy_exc.headers or {})
        return
    except Exception as other:  # HTTPException and the like: rendered as FastAPI would
        from fastapi import HTTPException

        if isinstance(other, HTTPException):
            await _json(send, other.status_code, {"detail": other.detail}, other.headers or {})
            return
        log.exception("fast path: unhandled error for request %s", data.get("litellm_call_id"))
        await _json(send, 500, {"error": {"message": "Internal Server Error"}}, {})
        return
    raise AssertionError("_handle_llm_api_exception always raises")  # pragma: no cover


async def _json(send: Any, status: int, payload: Any, headers: dict) -> None:
    raw = orjson.dumps(payload, default=_default)
    out = [(b"content-length", str(len(raw)).encode()), (b"content-type", b"application/json")]
    out += [(str(k).lower().encode("latin-1"), str(v).encode("latin-1")) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": out})
    await send({"type": "http.response.body", "body": raw})


async def _stream(
    scope: dict,
    receive: Any,
    send: Any,
    ctx: RequestContext,
    data: dict,
    user: Any,
    response: Any,
    client_model: Any,
) -> None:
    from litellm.proxy.common_request_processing import (
        LITELLM_HTTP_STATUS_CLIENT_DISCONNECTED,
        _buffer_first_chunk_honoring_disconnect,
        _ClientDisconnectedBeforeFirstChunk,
        _extract_error_from_sse_chunk,
        _parse_event_data_for_error,
    )
    from starlette.requests import Request
    from starlette.responses import StreamingResponse

    headers = await _stream_headers(data, user, response, client_model)
    frames = _frames(data, user, response)
    try:
        # LiteLLM's own wait for the first frame: a client leaving before it cancels the upstream call.
        first = await _buffer_first_chunk_honoring_disconnect(frames, Request(scope, receive))
    except StopAsyncIteration:
        first = None
    except _ClientDisconnectedBeforeFirstChunk:
        await _json(send, LITELLM_HTTP_STATUS_CLIENT_DISCONNECTED, _client_gone_body(), headers)
        return
    if first is not None:
        code = await _parse_event_data_for_error(first)
        if code is not None:
            await frames.aclose()
            await _json(send, code, {"error": _extract_error_from_sse_chunk(first)}, headers)
            return

    async def body():
        if first is not None:
            yield first
        async for frame in frames:
            yield frame

    out = dict(headers)
    out.update({"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    try:
        await StreamingResponse(body(), media_type="text/event-stream", headers=out)(scope, receive, send)
    finally:
        await frames.aclose()


async def _stream_headers(data: dict, user: Any, response: Any, client_model: Any) -> dict:
    """What LiteLLM's handler keeps in the request data before a stream, and the headers hook's headers."""
    logging_obj = getattr(response, "logging_obj", None)
    if logging_obj is not None and "litellm_logging_obj" not in data:
        # Disconnect-time billing of a partial stream reads it.
        data["litellm_logging_obj"] = logging_obj
    if isinstance(client_model, str) and client_model:
        data["_litellm_client_requested_model"] = client_model
    return await _hooks().async_post_call_response_headers_hook(data, user, response) or {}


def _client_gone_body() -> dict:
    from litellm.proxy.common_request_processing import (
        _CLIENT_DISCONNECT_DETAIL,
        LITELLM_HTTP_STATUS_CLIENT_DISCONNECTED,
    )

    code = str(LITELLM_HTTP_STATUS_CLIENT_DISCONNECTED)
    return {"error": {"message": _CLIENT_DISCONNECT_DETAIL, "type": "client_disconnect", "param": None, "code": code}}


async def _frames(data: dict, user: Any, response: Any):
    """SSE frames of a chat stream, as LiteLLM's ``async_data_generator`` writes them."""
    import asyncio
    import json

    from litellm.proxy import proxy_server
    from litellm.proxy._types import ProxyException
    from litellm.proxy.common_request_processing import ProxyBaseLLMRequestProcessing
    from litellm.proxy.proxy_server import (
        _is_injected_stream_usage_artifact,
        _restamp_streaming_chunk_model,
        _serialize_streaming_chunk,
    )

    completed = False
    disconnected = False
    strip_usage = bool(data.get("_litellm_strip_stream_usage"))
    target = data.get("_litellm_client_requested_model") or ""
    logged = False
    try:
        async for chunk in _hooks().async_post_call_streaming_iterator_hook(user, response, data):
            chunk, logged = _restamp_streaming_chunk_model(
                chunk=chunk, requested_model_from_client=target, request_data=data, model_mismatch_logged=logged
            )
            if strip_usage and _is_injected_stream_usage_artifact(chunk):
                continue
            if isinstance(chunk, BaseModel):
                chunk = _serialize_streaming_chunk(chunk)
            elif isinstance(chunk, dict):
                chunk = orjson.dumps(chunk)
            if isinstance(chunk, bytes):
                yield b"data: " + chunk + b"\n\n"
            else:
                yield f"data: {chunk}\n\n"
        completed = True
        yield "data: [DONE]\n\n"
    except (asyncio.CancelledError, GeneratorExit):
        if not completed:
            disconnected = True
        raise
    except Exception as exc:
        await proxy_server.proxy_logging_obj.post_call_failure_hook(
            user_api_key_dict=user, original_exception=exc, request_data=data
        )
        from fastapi import HTTPException

        if isinstance(exc, HTTPException):
            raise
        proxy_exc = ProxyException(
            message=getattr(exc, "message", str(exc)),
            type=getattr(exc, "type", "None"),
            param=getattr(exc, "param", "None"),
            code=getattr(exc, "status_code", 500),
        )
        completed = True
        yield f"data: {json.dumps({'error': proxy_exc.to_dict()})}\n\n"
    finally:
        await ProxyBaseLLMRequestProcessing._finalize_streaming_generator_cleanup(
            request=None,
            request_data=data,
            response=response,
            stream_completed=completed,
            client_disconnected=disconnected,
            user_api_key_dict=user,
            proxy_logging_obj=proxy_server.proxy_logging_obj,
        )
