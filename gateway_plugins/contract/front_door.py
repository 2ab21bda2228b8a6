"""The gateway's front door: an ASGI layer around LiteLLM's whole app that admits only the contract.

It runs before LiteLLM parses, routes or authenticates anything, and for every request it:

* lets probes through, and LiteLLM's other routes only with the admin key (none configured: closed);
* authenticates the tenant key (SHA-256 lookup, constant-time compare);
* bounds the body (``Content-Length`` and the bytes actually received) before reading it whole;
* parses it once (LiteLLM reuses the parse) and checks it against the endpoint's strict contract;
* gives the request an id of its own (``x-litellm-call-id``; a client's is never used) and replaces
  the inbound headers by an allow-list, so no client header steers LiteLLM;
* strips upstream-identifying response headers;
* answers ``GET /v1/models`` itself, with exactly the public models the tenant may call;
* ends every request it admitted: if LiteLLM never reports back (a client gone mid-stream), the
  reaper finalizes it, charging the reservation, so no path skips the audit record or the budget.

Refusals are OpenAI-style JSON errors naming the field, with one audit record each when a valid key was sent;
refusals without one are summarised (``gateway_plugins.audit.unauthenticated``: a sample and a count per reason and
source class per window), so a flood from anyone who can reach the port cannot evict tenants' records.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson

from gateway_plugins import autoroute, cache, client_left, fast_path, metrics, tracing
from gateway_plugins.audit.unauthenticated import source_class
from gateway_plugins.context import RequestContext
from gateway_plugins.contract import headers as hdr
from gateway_plugins.contract import token_ids
from gateway_plugins.contract.error_format import as_anthropic, error_body
from gateway_plugins.contract.routes import (
    COUNT_TOKENS,
    MODEL,
    MODELS,
    PROBE_ROUTES,
    Endpoint,
    is_tenant_path,
    model_id,
    tenant_endpoint,
)
from gateway_plugins.contract.text import input_tokens
from gateway_plugins.contract.validate import (
    ContractError,
    apply_hosted_tools,
    check,
    check_for_tenant,
    check_query,
)
from gateway_plugins.errors import KubegateError
from gateway_plugins.outcome import finalize, refuse
from gateway_plugins.policy.schema import Tenant, key_id_for
from gateway_plugins.runtime import get_runtime

log = logging.getLogger("kubegate.front_door")

SCOPE_KEY = "kubegate"
ADMIN = "admin"
# How long after the response LiteLLM may still report the outcome (its logging runs after the answer).
REAP_AFTER_SECONDS = float(os.environ.get("KUBEGATE_REAP_AFTER_SECONDS", "30"))
UNAUTHENTICATED = Tenant(id="unauthenticated")


class _ClientGone(Exception):
    pass


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    for k, v in headers:
        if k == name:
            return v
    return None


def bearer_token(headers: list[tuple[bytes, bytes]]) -> str:
    raw = _header(headers, b"authorization")
    if raw is None:
        return ""
    value = raw.decode("latin-1").strip()
    return value[7:].strip() if value[:7].lower() == "bearer " else ""


CONFLICTING = object()


def client_key(headers: list[tuple[bytes, bytes]]) -> str | object:
    """The tenant key: ``Authorization: Bearer`` or, as Anthropic clients send it, ``x-api-key``. Both
    present and different is ambiguous and never guessed: :data:`CONFLICTING`."""
    bearer = bearer_token(headers)
    raw = _header(headers, b"x-api-key")
    api_key = raw.decode("latin-1").strip() if raw is not None else ""
    if bearer and api_key and not hmac.compare_digest(bearer.encode(), api_key.encode()):
        return CONFLICTING
    return bearer or api_key


async def error_response(
    send: Any,
    status: int,
    code: str,
    message: str,
    param: str | None = None,
    *,
    fmt: str = "openai",
    **extra: str,
):
    body = orjson.dumps(error_body(fmt, status, code, message, param))
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.encode(), v.encode()) for k, v in extra.items()]
    request_id = extra.get("x-kubegate-request-id")
    if request_id:
        headers += hdr.request_id_headers(request_id.encode())
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def json_response(send: Any, payload: Any, request_id: str) -> None:
    body = orjson.dumps(payload)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"x-kubegate-request-id", request_id.encode()),
                *hdr.request_id_headers(request_id.encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def visible_models(rt: Any, tenant: Tenant) -> list[str]:
    """The public models ``tenant`` may call (never regional groups or deployments)."""
    public = set(rt.policy.models) or {m for m in tenant.allowed_models if m != "*"}
    if "*" in tenant.allowed_models:
        return sorted(public)
    return sorted(public.intersection(tenant.allowed_models))


class FrontDoor:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "websocket":
            await self._websocket(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    # -- routing -------------------------------------------------------------------------------

    async def _websocket(self, scope: dict, receive: Any, send: Any) -> None:
        # Realtime and other websocket routes are not in the tenant contract: admin key only.
        rt = await get_runtime()
        if self._is_admin(rt, bearer_token(scope.get("headers") or [])):
            scope[SCOPE_KEY] = ADMIN
            await self.app(scope, receive, send)
            return
        await send({"type": "websocket.close", "code": 1008})

    def _is_admin(self, rt: Any, token: str) -> bool:
        expected = rt.settings.master_key_sha256
        if not token or expected is None:
            return False
        return hmac.compare_digest(hashlib.sha256(token.encode()).hexdigest(), expected)

    async def _http(self, scope: dict, receive: Any, send: Any) -> None:
        path, method = scope["path"], scope["method"]
        if path in PROBE_ROUTES:
            await self.app(scope, receive, send)
            return
        rt = await get_runtime()
        headers = scope.get("headers") or []
        endpoint = tenant_endpoint(method, path)
        if endpoint is None:
            token = bearer_token(headers)
            if self._is_admin(rt, token):
                scope[SCOPE_KEY] = ADMIN
                await self.app(scope, receive, send)
                return
            key = client_key(headers)  # as on the contract routes: Bearer or Anthropic's x-api-key
            token = "" if key is CONFLICTING else str(key)
            await self._closed_route(rt, send, path, token, tracing.begin(headers), source=scope.get("client"))
            return
        # Read before the header allow-list drops it: LiteLLM never sees the caller's trace context.
        trace = tracing.begin(headers)
        key = client_key(headers)
        if key is CONFLICTING:
            await self._unauthenticated(
                rt, send, endpoint, "", "", conflicting=True, trace=trace, source=scope.get("client")
            )
            return
        token = str(key)
        tenant, digest = self._tenant(rt, token)
        if tenant is None:
            await self._unauthenticated(rt, send, endpoint, token, digest, trace=trace, source=scope.get("client"))
            return
        ctx = RequestContext(
            request_id=uuid.uuid4().hex,
            tenant=tenant,
            key_id=key_id_for(digest),
            requested_model="",
            call_type=endpoint.name,
            trace=trace,
        )
        lifecycle = tenant.lifecycle(time.time())
        if lifecycle != "active":
            await self._inactive(rt, ctx, endpoint, lifecycle, send)
            return
        if endpoint is MODELS:
            ctx.status, ctx.http_status = "success", 200
            await json_response(send, self._models_payload(rt, tenant), ctx.request_id)
            finalize(rt, ctx)
            return
        if endpoint is MODEL:
            await self._model(rt, ctx, model_id(path) or "", send)
            return
        await self._admit(rt, ctx, endpoint, scope, receive, send)

    async def _inactive(self, rt: Any, ctx: RequestContext, endpoint: Endpoint, lifecycle: str, send: Any) -> None:
        """A suspended Tenant, or one whose trial ended: every request refused, audited, nothing else done."""
        tenant = ctx.tenant
        if lifecycle == "suspended":
            message = f"Tenant {tenant.id} is suspended; ask the platform team to resume it."
        else:
            ended = datetime.fromtimestamp(tenant.not_after or 0, UTC).isoformat().replace("+00:00", "Z")
            message = f"The trial of tenant {tenant.id} ended at {ended}; ask the platform team to extend it."
        ctx.decisions["tenant"] = lifecycle
        refuse(rt, ctx, 403, "tenant_suspended")
        await error_response(
            send,
            403,
            "tenant_suspended",
            message,
            None,
            fmt=endpoint.error_format,
            **{"x-kubegate-request-id": ctx.request_id},
        )

    def _tenant(self, rt: Any, token: str) -> tuple[Tenant | None, str]:
        if not token:
            return None, ""
        digest = hashlib.sha256(token.encode()).hexdigest()
        tenant = rt.policy.tenant_for_key_hash(digest)
        # The dict lookup finds the candidate; the constant-time compare is the actual check.
        now = time.time()  # a rotated-out key stops at its grace period's end, whatever the policy revision
        if tenant is None or not any(hmac.compare_digest(k.sha256, digest) and k.valid_at(now) for k in tenant.keys):
            return None, digest
        return tenant, digest

    def _models_payload(self, rt: Any, tenant: Tenant) -> dict:
        return {"object": "list", "data": [_model_object(m) for m in visible_models(rt, tenant)]}

    async def _model(self, rt: Any, ctx: RequestContext, name: str, send: Any) -> None:
        """``GET /v1/models/{model}``: the model if the tenant may call it, else 404 as OpenAI answers."""
        if name in visible_models(rt, ctx.tenant):
            ctx.requested_model = ctx.model = name
            ctx.status, ctx.http_status = "success", 200
            await json_response(send, _model_object(name), ctx.request_id)
            finalize(rt, ctx)
            return
        refuse(rt, ctx, 404, "model_not_found")
        await error_response(
            send,
            404,
            "model_not_found",
            "The model does not exist or this key cannot use it.",
            "model",
            **{"x-kubegate-request-id": ctx.request_id},
        )

    async def _unauthenticated(
        self,
        rt: Any,
        send: Any,
        endpoint: Endpoint,
        token: str,
        digest: str,
        *,
        conflicting: bool = False,
        trace: Any = None,
        source: Any = None,
    ) -> None:
        reason = "conflicting_api_keys" if conflicting else "missing_api_key" if not token else "invalid_api_key"
        metrics.AUTH_FAILURES.labels("invalid" if token or conflicting else "missing").inc()
        ctx = RequestContext(
            request_id=uuid.uuid4().hex,
            tenant=UNAUTHENTICATED,
            key_id=key_id_for(digest) if digest else "",
            requested_model="",
            call_type=endpoint.name,
            trace=trace,
            unauthenticated_source=source_class(source),
        )
        refuse(rt, ctx, 401, reason)
        if conflicting:
            message = "Two different API keys (Authorization and x-api-key): send one."
        elif not token:
            message = "Missing API key: send 'Authorization: Bearer <key>' or 'x-api-key: <key>'."
        else:
            message = "Invalid API key."
        await error_response(
            send,
            401,
            "missing_api_key" if reason == "missing_api_key" else "invalid_api_key",
            message,
            None,
            fmt=endpoint.error_format,
            **{"x-kubegate-request-id": ctx.request_id},
        )

    async def _closed_route(
        self, rt: Any, send: Any, path: str, token: str, trace: Any = None, source: Any = None
    ) -> None:
        """Any route outside the contract: 401 without a valid key, 403 (405 for a wrong method) with one."""
        tenant, digest = self._tenant(rt, token)
        ctx = RequestContext(
            request_id=uuid.uuid4().hex,
            tenant=tenant or UNAUTHENTICATED,
            key_id=key_id_for(digest) if digest else "",
            requested_model="",
            call_type="other_route",
            trace=trace,
        )
        ids = {"x-kubegate-request-id": ctx.request_id}
        # An Anthropic client calling a Messages path with the wrong method gets Anthropic's error shape.
        fmt = "anthropic" if path.startswith("/v1/messages") else "openai"
        if tenant is None:
            metrics.AUTH_FAILURES.labels("missing" if not token else "invalid").inc()
            reason = "missing_api_key" if not token else "invalid_api_key"
            ctx.unauthenticated_source = source_class(source)
            refuse(rt, ctx, 401, reason)
            await error_response(send, 401, reason, "Invalid or missing API key.", fmt=fmt, **ids)
            return
        metrics.AUTH_FAILURES.labels("admin_route").inc()
        if is_tenant_path(path):
            refuse(rt, ctx, 405, "method_not_allowed")
            await error_response(
                send, 405, "method_not_allowed", "This method is not allowed on this route.", fmt=fmt, **ids
            )
            return
        refuse(rt, ctx, 403, "route_not_allowed")
        # The path is the caller's own input and names no secret; it is not put in the audit record.
        await error_response(
            send, 403, "route_not_allowed", f"Route {path} is not available to tenant keys.", fmt=fmt, **ids
        )

    # -- tenant requests -------------------------------------------------------------------------

    async def _admit(self, rt: Any, ctx: RequestContext, endpoint: Endpoint, scope: dict, receive: Any, send: Any):
        limits = rt.policy.policy.limits
        try:
            if scope.get("query_string"):
                # LiteLLM reads some query parameters as request fields: known ones are dropped, others refused.
                check_query(endpoint, scope["query_string"])
                scope["query_string"] = b""
            raw = await self._read_body(scope, receive, limits.max_body_bytes)
            try:
                body = orjson.loads(raw) if raw else None
            except orjson.JSONDecodeError as exc:
                if "depth limit" in str(exc):  # orjson stops at 1024 levels, before the Gateway's own bound
                    raise ContractError(
                        400, "request_too_deep", f"body: nested deeper than {limits.max_json_depth} levels", "body"
                    ) from None
                raise ContractError(400, "invalid_json", "the request body is not valid JSON", "body") from None
            if isinstance(body, dict) and token_ids.has_token_ids(endpoint.name, body):
                await asyncio.to_thread(token_ids.decode_token_ids, endpoint.name, body)
                raw = orjson.dumps(body)
            contract = check(endpoint, body, len(raw), limits)
            model = body["model"]
            policy = rt.policy
            if model in policy.models or model in policy.model_labels:
                ctx.requested_model = ctx.model = model
            if not ctx.tenant.allows_model(model) or (policy.models and model not in policy.models):
                # OpenAI's answer for a model the key cannot see; the name is the caller's own input.
                raise ContractError(
                    404, "model_not_found", f"The model {model!r} does not exist or this key cannot use it.", "model"
                )
            check_for_tenant(body, ctx.tenant, policy.models)
            ctx.quality = autoroute.requested_quality(scope.get("headers") or [], policy.models.get(model), model)
            dropped = apply_hosted_tools(endpoint.name, body, ctx.tenant.hosted_tools)
        except ContractError as exc:
            refuse(rt, ctx, exc.status, exc.code)
            await error_response(
                send,
                exc.status,
                exc.code,
                exc.message,
                exc.param,
                fmt=endpoint.error_format,
                **{"x-kubegate-request-id": ctx.request_id},
            )
            return
        except _ClientGone:
            ctx.decisions["client"] = "disconnected"
            refuse(rt, ctx, 499, "client_closed")
            return
        ctx.contract = contract
        if dropped:
            ctx.decisions["hosted_tools"] = "dropped"
        if contract.normalized or dropped:
            raw = orjson.dumps(body)  # what LiteLLM may read is the normalized body, like its parsed form
        if endpoint is COUNT_TOKENS:
            await self._count_tokens(rt, ctx, body, send)
            return
        if ctx.tenant.cache is not None:
            served = await self._from_cache(rt, ctx, endpoint, body, scope, send)
            if served:
                return
            if ctx.pii_masked:
                raw = orjson.dumps(body)  # what LiteLLM may read is the masked body, like its parsed form
        rt.contexts.put(ctx)
        # LiteLLM reuses a cached parse (it reads this scope key before parsing the body itself).
        scope["parsed_body"] = (tuple(body.keys()), body)
        scope["headers"] = hdr.request_headers(scope.get("headers") or [], ctx.request_id, ctx.key_id)
        scope[SCOPE_KEY] = ctx
        await self._forward(rt, ctx, scope, raw, receive, send)

    async def _count_tokens(self, rt: Any, ctx: RequestContext, body: dict, send: Any) -> None:
        """Counted here, with LiteLLM's local tokenizer: the text never leaves the gateway (so there is nothing to
        mask) and nothing is billed; the request still gets its audit record."""
        try:
            tokens = await asyncio.to_thread(input_tokens, body)
        except Exception as exc:  # a tokenizer failure must still end with an answer and an audit record
            log.warning("count_tokens failed for request %s: %s", ctx.request_id, type(exc).__name__)
            refuse(rt, ctx, 500, "internal_error")
            await error_response(
                send,
                500,
                "internal_error",
                "The tokens could not be counted.",
                fmt="anthropic",
                **{"x-kubegate-request-id": ctx.request_id},
            )
            return
        ctx.status, ctx.http_status = "success", 200
        ctx.prompt_tokens = tokens
        await json_response(send, {"input_tokens": tokens}, ctx.request_id)
        finalize(rt, ctx)

    async def _from_cache(
        self, rt: Any, ctx: RequestContext, endpoint: Endpoint, body: dict, scope: dict, send: Any
    ) -> bool:
        """Answer from the tenant's response cache if it holds this request; True when the request is done."""
        try:
            found = await cache.lookup(rt, ctx, body, scope.get("headers") or [])
        except KubegateError as exc:  # PII refusals: masking runs here for cacheable requests
            refuse(rt, ctx, exc.status_code, exc.kubegate_code)
            await error_response(
                send,
                exc.status_code,
                exc.kubegate_code,
                str(exc.message),
                fmt=endpoint.error_format,
                **{"x-kubegate-request-id": ctx.request_id},
            )
            return True
        except Exception as exc:  # a bug here must still end the request with its audit record
            log.exception("cache lookup failed for request %s", ctx.request_id)
            ctx.status, ctx.http_status = "error", 500
            ctx.decisions.setdefault("error", type(exc).__name__)
            finalize(rt, ctx)
            await error_response(
                send, 500, "internal_error", "The request could not be processed.", fmt=endpoint.error_format
            )
            return True
        if found is None:
            return False
        cache.hit_outcome(ctx, found)
        try:
            await cache.serve_hit(send, ctx, found)
        finally:
            finalize(rt, ctx)
        return True

    async def _read_body(self, scope: dict, receive: Any, limit: int) -> bytes:
        declared = _header(scope.get("headers") or [], b"content-length")
        if declared is not None:
            try:
                if int(declared) > limit:
                    raise ContractError(413, "request_too_large", f"the request body exceeds {limit} bytes", "body")
            except ValueError:
                raise ContractError(400, "invalid_body", "invalid Content-Length", "body") from None
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _ClientGone
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise ContractError(413, "request_too_large", f"the request body exceeds {limit} bytes", "body")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _forward(self, rt: Any, ctx: RequestContext, scope: dict, raw: bytes, receive: Any, send: Any):
        replayed = False
        state = {"status": None, "complete": False}

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": raw, "more_body": False}
            message = await receive()
            if message["type"] == "http.disconnect" and state["status"] is None:
                # Whoever asked (LiteLLM's wait for a stream's first chunk) stops the answer: kubegate records it
                # the same way whatever that wait then reports (gateway_plugins.client_left).
                ctx.left_before_answer = True
            return message

        downstream = _anthropic_errors(ctx, send) if ctx.contract.endpoint.error_format == "anthropic" else send

        async def filtered_send(message: dict) -> None:
            if ctx.cache is not None:
                ctx.cache.on_send(message)
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                headers = hdr.response_headers(message.get("headers") or [])
                if message["status"] >= 400:
                    # Nothing was served: a failed attempt's region is not where an answer came from.
                    headers = [(k, v) for k, v in headers if k.lower() != b"x-kubegate-region"]
                present = {k.lower() for k, _ in headers}
                # LiteLLM's error answers (its /v1/messages error path above all) skip its headers hook: the
                # request id and the budget and cache headers of the request come from its context instead.
                if b"x-kubegate-request-id" not in present:
                    headers.append((b"x-kubegate-request-id", ctx.request_id.encode()))
                for name, value in ctx.response_headers.items():
                    if name.lower().encode() not in present:
                        headers.append((name.encode(), value.encode()))
                headers += hdr.request_id_headers(ctx.request_id.encode())
                message = {**message, "headers": headers}
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                state["complete"] = True
            await downstream(message)

        app = self.app
        if rt.settings.fast_path and fast_path.handles(ctx):
            app = fast_path.app  # kubegate's hooks and the proxy's Router called directly (docs/architecture.md)
        try:
            await app(scope, replay, filtered_send)
        finally:
            self._after_response(rt, ctx, state["status"], state["complete"])

    # -- ending every admitted request ------------------------------------------------------------

    def _after_response(self, rt: Any, ctx: RequestContext, status: int | None, complete: bool) -> None:
        ctx.response_done = True
        if ctx.cache is not None:
            ctx.cache.response_ended(rt, ctx)
        if ctx.finished:
            rt.contexts.pop(ctx.request_id)
            return
        if client_left.applies(ctx):
            _background(client_left.end(rt, ctx))
            return
        if not complete:
            ctx.decisions.setdefault("client", "disconnected")
        if ctx.reported:
            if not complete:
                ctx.status = "incomplete"
            finalize(rt, ctx)
            rt.contexts.pop(ctx.request_id)
            return
        if status is None or status >= 400:
            # LiteLLM answered an error without reaching our failure hook (or crashed): end it now.
            _background(_end_unreported(rt, ctx, status or 500))
            return
        # A served answer: LiteLLM's success logging normally finalizes within milliseconds.
        asyncio.get_running_loop().call_later(REAP_AFTER_SECONDS, _reap, rt, ctx)


def _model_object(name: str) -> dict:
    return {"id": name, "object": "model", "created": 0, "owned_by": "kubegate"}


def _anthropic_errors(ctx: RequestContext, send: Any) -> Any:
    """A ``send`` that rewrites error answers into Anthropic's error shape (with the kubegate code);
    successful answers, streams included, pass through untouched."""
    held: dict[str, Any] = {}

    async def rewrite(message: dict) -> None:
        if message["type"] == "http.response.start" and message["status"] >= 400:
            held["start"], held["body"] = message, b""
            return
        if "start" not in held:
            await send(message)
            return
        held["body"] += message.get("body", b"")
        if message.get("more_body", False):
            return
        start = held.pop("start")
        body = as_anthropic(start["status"], held.pop("body"), ctx.error_code, ctx.error_message)
        headers = [(k, v) for k, v in start["headers"] if k.lower() not in (b"content-length", b"content-type")]
        headers += [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({**start, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return rewrite


_tasks: set[asyncio.Task] = set()


def _background(coro: Any) -> None:
    # The loop keeps only weak references to tasks: hold them until done.
    task = asyncio.ensure_future(coro)
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)


async def _end_unreported(rt: Any, ctx: RequestContext, status: int) -> None:
    from gateway_plugins import limits

    ctx.status = "refused" if 400 <= status < 500 else "error"
    ctx.http_status = status
    ctx.decisions.setdefault("refusal" if ctx.status == "refused" else "error", "unreported")
    try:
        await limits.settle(ctx, rt)
    finally:
        finalize(rt, ctx)
        rt.contexts.pop(ctx.request_id)


def _reap(rt: Any, ctx: RequestContext) -> None:
    if ctx.finished:
        rt.contexts.pop(ctx.request_id)
        return
    _background(_charge_unreported(rt, ctx))


async def _charge_unreported(rt: Any, ctx: RequestContext) -> None:
    """LiteLLM never reported a started answer (client gone mid-stream): the upstream may have billed the
    whole generation, so the reservation (the request's worst case) becomes the charge."""
    from gateway_plugins import limits

    ctx.status = "incomplete"
    ctx.http_status = ctx.http_status or 200
    ctx.cost_usd = limits.reserved_usd(ctx)
    try:
        await limits.settle(ctx, rt)
    finally:
        finalize(rt, ctx)
        rt.contexts.pop(ctx.request_id)


def install(app: Any) -> bool:
    """Wrap ``app``'s middleware stack (built already: LiteLLM loads our module during its start-up)."""
    stack = getattr(app, "middleware_stack", None)
    if isinstance(stack, FrontDoor):
        return False
    if stack is None:
        stack = app.build_middleware_stack()
    app.middleware_stack = FrontDoor(stack)
    log.info("kubegate front door installed")
    return True


def install_on_proxy() -> bool:
    """Install on LiteLLM's proxy app if this process runs one (imported while LiteLLM loads its config)."""
    import sys

    server = sys.modules.get("litellm.proxy.proxy_server")
    app = getattr(server, "app", None) if server else None
    return install(app) if app is not None else False
