"""OpenTelemetry traces through a real LiteLLM proxy, real Redis, the echo upstream and the official openai SDK,
exported over OTLP/HTTP to a receiver in this test and decoded with OpenTelemetry's own protobuf classes.

The proxy's tracing environment is what the operator renders for LLMGateway ``spec.tracing``. A served request, a
refused one and a PII one each give one span with the GenAI attributes, the tenant and the outcome, under the
caller's ``traceparent``; no exported byte holds the prompt, the PII value or a key, and the caller's trace
context never reaches LiteLLM or the upstream.
"""

from __future__ import annotations

import contextlib
import gzip
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import openai
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from gateway_plugins import tracing
from tests.dataplane.contract_stack import GW, KEYS, render
from tests.harness.echo import EchoServer
from tests.harness.procs import free_port
from tests.harness.proxy import ProxyServer

EMAIL = "jane.roe@example.org"


class OtlpReceiver:
    """A minimal OTLP/HTTP traces endpoint: keeps every export's raw body and its decoded spans."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.spans: list[tuple[dict, str, Span]] = []  # (resource attributes, scope name, span)
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length") or 0))
                if self.headers.get("content-encoding") == "gzip":
                    raw = gzip.decompress(raw)
                if self.path != "/v1/traces":
                    self.send_response(404)
                    self.end_headers()
                    return
                request = ExportTraceServiceRequest.FromString(raw)
                with receiver.lock:
                    receiver.bodies.append(raw)
                    for rs in request.resource_spans:
                        resource = {a.key: _value(a.value) for a in rs.resource.attributes}
                        for ss in rs.scope_spans:
                            receiver.spans.extend((resource, ss.scope.name, s) for s in ss.spans)
                body = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def start(self) -> OtlpReceiver:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def span_of(self, request_id: str, timeout: float = 60) -> tuple[dict, str, Span, dict]:
        """The request span of ``request_id`` (exports are batched after the answer: polls until a deadline)."""
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                found = [(r, sc, s) for r, sc, s in self.spans if _attrs(s).get("kubegate.request_id") == request_id]
            if found or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert len(found) == 1, f"expected one span for request {request_id}, got {len(found)}"
        resource, scope, span = found[0]
        return resource, scope, span, _attrs(span)

    def children_of(self, span: Span) -> dict[str, Span]:
        with self.lock:
            return {s.name: s for _, _, s in self.spans if s.parent_span_id == span.span_id}


def _value(v) -> object:
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


def _attrs(span: Span) -> dict[str, object]:
    return {a.key: _value(a.value) for a in span.attributes}


def _traceparent() -> tuple[str, str, str]:
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return f"00-{trace_id}-{span_id}-01", trace_id, span_id


def traced(endpoint: str) -> dict:
    """A Gateway spec exporting to ``endpoint``, each batch quickly (the SDK's default is every 5 s)."""
    return {
        "tracing": {"otlpEndpoint": endpoint},
        "pod": {"env": [{"name": "OTEL_BSP_SCHEDULE_DELAY", "value": "100"}]},
    }


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    server = OtlpReceiver().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def echo() -> Iterator[EchoServer]:
    server = EchoServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def proxy(request, redis_server, echo, receiver) -> Iterator[ProxyServer]:
    s = render(echo.base_url, gateway_spec=traced(receiver.url))
    # Any other OTLP setting of the outer environment out.
    env = s.env | {"OTEL_EXPORTER_OTLP_ENDPOINT": "", "OTEL_SDK_DISABLED": ""}
    server = ProxyServer(s.config, s.policy, redis_url=redis_server.url, env=env)
    failed = request.session.testsfailed
    server.start()
    yield server
    if request.session.testsfailed > failed:
        print(server.logs())
    server.stop()


def _client(proxy: ProxyServer, tenant: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=proxy.base_url + "/v1", api_key=KEYS[tenant], max_retries=0, timeout=60)


def test_served_refused_and_pii_requests_each_export_one_span_without_content(proxy, receiver, echo):
    marker = f"tracing-prompt-{secrets.token_hex(8)}"

    # 1. Served, under the caller's trace.
    parent, trace_id, parent_span = _traceparent()
    raw = _client(proxy, "plain").chat.completions.with_raw_response.create(
        model="echo",
        messages=[{"role": "user", "content": f"{marker} tell me a story"}],
        max_tokens=50,
        extra_headers={"traceparent": parent, "tracestate": "vendor=abc"},
    )
    served_id = raw.headers["x-kubegate-request-id"]
    usage = raw.parse().usage

    # 2. Refused at the front door (a model this tenant may not use), under another trace.
    refused_parent, refused_trace, refused_span = _traceparent()
    with pytest.raises(openai.NotFoundError) as refused:
        _client(proxy, "narrow").chat.completions.create(
            model="other",
            messages=[{"role": "user", "content": f"{marker} refused"}],
            extra_headers={"traceparent": refused_parent},
        )
    refused_id = refused.value.response.headers["x-kubegate-request-id"]

    # 3. PII masked before the upstream; no traceparent: a trace of its own.
    raw_pii = _client(proxy, "pii").chat.completions.with_raw_response.create(
        model="echo", messages=[{"role": "user", "content": f"{marker} write to {EMAIL} please"}]
    )
    pii_id = raw_pii.headers["x-kubegate-request-id"]

    resource, scope, span, attrs = receiver.span_of(served_id)
    assert scope == "kubegate"
    assert resource["service.name"] == f"{GW}-proxy"
    assert resource["kubegate.gateway"] == GW
    assert span.name == "chat echo"
    assert span.kind == Span.SPAN_KIND_SERVER
    assert span.trace_id.hex() == trace_id and span.parent_span_id.hex() == parent_span
    assert span.trace_state == "vendor=abc"
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.request.model"] == "echo"
    assert attrs["gen_ai.response.model"] == "echo"
    assert attrs["gen_ai.request.max_tokens"] == 50
    assert attrs["gen_ai.usage.input_tokens"] == usage.prompt_tokens > 0
    assert attrs["gen_ai.usage.output_tokens"] == usage.completion_tokens > 0
    assert attrs["gen_ai.provider.name"] == "openai"
    assert attrs["server.address"] == "127.0.0.1"
    assert attrs["kubegate.tenant"] == "plain"
    assert attrs["kubegate.outcome"] == "success"
    assert attrs["http.response.status_code"] == 200
    assert attrs["kubegate.cost_usd"] > 0
    assert "error.type" not in attrs
    assert span.end_time_unix_nano >= span.start_time_unix_nano
    upstream = receiver.children_of(span)["upstream"]
    assert upstream.kind == Span.SPAN_KIND_CLIENT and upstream.trace_id == span.trace_id
    assert span.start_time_unix_nano <= upstream.start_time_unix_nano <= upstream.end_time_unix_nano
    assert _attrs(upstream)["server.address"] == "127.0.0.1"

    _, _, span, attrs = receiver.span_of(refused_id)
    assert span.trace_id.hex() == refused_trace and span.parent_span_id.hex() == refused_span
    assert span.name == "chat other"
    assert attrs["kubegate.tenant"] == "narrow"
    assert attrs["kubegate.outcome"] == "refused"
    assert attrs["kubegate.refusal.reason"] == attrs["error.type"] == "model_not_found"
    assert attrs["http.response.status_code"] == 404
    assert "gen_ai.usage.input_tokens" not in attrs
    assert receiver.children_of(span) == {}, "refused before any upstream call"

    _, _, span, attrs = receiver.span_of(pii_id)
    assert span.parent_span_id == b"" and span.trace_id.hex() not in (trace_id, refused_trace)
    assert attrs["kubegate.tenant"] == "pii"
    assert attrs["kubegate.outcome"] == "success"
    assert attrs["kubegate.pii.detections"] >= 1
    children = receiver.children_of(span)
    assert set(children) == {"pii.mask", "upstream"}
    assert _attrs(children["pii.mask"])["kubegate.pii.detections"] == attrs["kubegate.pii.detections"]

    # Nothing the client sent as content or credentials is in any exported byte (names, attributes, events ...).
    with receiver.lock:
        exported = b"".join(receiver.bodies)
        scopes = {sc for _, sc, _ in receiver.spans}
    for secret in (marker, EMAIL, *KEYS.values()):
        assert secret.encode() not in exported, secret
    # Only kubegate's spans: LiteLLM's own OTel code (which can carry prompts) exports nothing to this collector.
    assert scopes == {"kubegate"}
    # The caller's trace context stayed at the front door: the upstream never saw it.
    sent = [r for r in echo.received() if marker in str(r["body"])]
    assert len(sent) == 2  # served and PII; the refused one never left the gateway
    for request in sent:
        assert not {"traceparent", "tracestate"} & {h.lower() for h in request["headers"]}
        assert trace_id not in str(request)


def test_tracing_is_off_without_an_endpoint_and_costs_no_span_objects():
    # In this process nothing configured tracing: no provider, and a request gets no handle at all.
    assert not tracing.wanted({})
    assert not tracing.wanted(
        {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces", "OTEL_SDK_DISABLED": "true"}
    )
    assert not tracing.wanted({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_EXPORTER": "none"})
    assert tracing.wanted({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"})
    assert tracing.configure("gw", "ns", {}) is False
    assert tracing.begin([(b"traceparent", _traceparent()[0].encode())]) is None


def test_a_collector_that_hangs_costs_requests_nothing(redis_server, echo):
    # A collector that accepts connections and never answers: every export waits for its timeout, in the
    # background, and requests are served as usual.
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []

    def accept() -> None:
        with contextlib.suppress(OSError):
            while True:
                accepted.append(listener.accept()[0])

    threading.Thread(target=accept, daemon=True).start()
    endpoint = f"http://127.0.0.1:{listener.getsockname()[1]}"
    s = render(echo.base_url, gateway_spec=traced(endpoint))
    server = ProxyServer(s.config, s.policy, redis_url=redis_server.url, env=s.env).start()
    try:
        client = _client(server, "plain")
        for _ in range(5):
            reply = client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "hi"}])
            assert reply.choices[0].message.content
        with pytest.raises(openai.NotFoundError):
            _client(server, "narrow").chat.completions.create(
                model="other", messages=[{"role": "user", "content": "hi"}]
            )
        # The proxy did trace (and is stuck exporting), so the requests above really ran with tracing on.
        deadline = time.monotonic() + 30
        while not accepted and time.monotonic() < deadline:
            time.sleep(0.1)
        assert accepted, "the proxy never tried to export"
        reply = client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "still here"}])
        assert reply.choices[0].message.content
    finally:
        server.stop()
        listener.close()
        for conn in accepted:
            conn.close()
