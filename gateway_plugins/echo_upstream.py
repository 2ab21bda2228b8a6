"""The echo upstream's entry point, ``python -m gateway_plugins.echo_upstream``: see :mod:`gateway_plugins.echo`."""

from __future__ import annotations

from gateway_plugins.echo.app import EchoApp, main, parse_fault_path
from gateway_plugins.echo.chat import chat_response, chat_stream_chunks, echo_text
from gateway_plugins.echo.messages import messages_response, messages_stream_events
from gateway_plugins.echo.responses import responses_response, responses_stream_events

__all__ = [
    "EchoApp",
    "chat_response",
    "chat_stream_chunks",
    "echo_text",
    "main",
    "messages_response",
    "messages_stream_events",
    "parse_fault_path",
    "responses_response",
    "responses_stream_events",
]

if __name__ == "__main__":
    main()
