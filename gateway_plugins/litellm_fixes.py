"""Guarded work-arounds for LiteLLM 1.103.7 defects that cost every request, applied once at plugin import.

``user_api_key_auth._seed_request_destinations`` imports LiteLLM's OTel V2 logger on every request. In
kubegate's environment that import always fails: without ``opentelemetry-sdk`` at the SDK import, and with
the SDK kubegate now ships (1.45.2, for ``gateway_plugins.tracing``) one module further, because the logger
imports ``opentelemetry._events``, which that OpenTelemetry release no longer has. A failed import is never
cached: Python re-reads and re-compiles the modules' source each time (three modules, tens of ms of CPU per
request; bench/bench_proxy.py, py-spy shows ``source_to_code`` under it). The function is best-effort and
swallows that error, and does nothing before the import, so while the import fails a no-op does exactly what
it does, for free. Whether it fails is tried once, here; if it imports, LiteLLM's function is left alone.
"""

from __future__ import annotations

import logging

log = logging.getLogger("kubegate")

# What each work-around replaced, by name (tests call the original to prove the defect is still there).
replaced: dict[str, object] = {}
# The module ``_seed_request_destinations`` imports first.
OTEL_LOGGER_MODULE = "litellm.integrations.otel.logger"


def otel_logger_import_error() -> BaseException | None:
    """Why LiteLLM's OTel V2 logger cannot be imported in this environment, or None when it can."""
    import importlib

    try:
        importlib.import_module(OTEL_LOGGER_MODULE)
    except Exception as exc:  # ImportError above all; any failure is one the function would swallow
        return exc
    return None


def _no_otel_destinations(user_api_key_dict: object, request: object = None) -> None:
    """Stands in for LiteLLM's OTel destination seeding while its OTel logger cannot be imported."""


def skip_failing_otel_seeding() -> bool:
    """Replace the per-request OTel seeding by a no-op when it can only fail; True when replaced."""
    from litellm.proxy.auth import user_api_key_auth as auth_module

    current = getattr(auth_module, "_seed_request_destinations", None)
    if current is None or current is _no_otel_destinations:
        return False
    error = otel_logger_import_error()
    if error is None:
        return False
    replaced["_seed_request_destinations"] = current
    auth_module._seed_request_destinations = _no_otel_destinations
    log.info("kubegate: LiteLLM's OTel destination seeding disabled (its OTel logger does not import: %r)", error)
    return True


def apply() -> None:
    skip_failing_otel_seeding()
