"""Guarded work-arounds for LiteLLM 1.103.7 defects that cost every request, applied once at plugin import.

``user_api_key_auth._seed_request_destinations`` imports LiteLLM's OTel V2 modules on every request.
Without ``opentelemetry-sdk`` (not in the proxy extra, not in our image) that import fails, and a failed
import is never cached: Python re-reads and re-compiles the module source each time, about a third of the
proxy's CPU per request (bench/bench_proxy.py; py-spy shows ``source_to_code`` under it). The function
is best-effort and swallows that error, so when the SDK is absent a no-op does exactly what it does, for
free. With the SDK installed LiteLLM's function is left alone.
"""

from __future__ import annotations

import importlib.util
import logging

log = logging.getLogger("kubegate")

# What each work-around replaced, by name (tests call the original to prove the defect is still there).
replaced: dict[str, object] = {}


def _otel_sdk_installed() -> bool:
    try:
        return importlib.util.find_spec("opentelemetry.sdk") is not None
    except ModuleNotFoundError:  # the "opentelemetry" parent package itself is missing
        return False


def _no_otel_destinations(user_api_key_dict: object, request: object = None) -> None:
    """Stands in for LiteLLM's OTel destination seeding when the OTel SDK is not installed."""


def skip_failing_otel_seeding() -> bool:
    """Replace the per-request OTel seeding by a no-op when it can only fail; True when replaced."""
    from litellm.proxy.auth import user_api_key_auth as auth_module

    current = getattr(auth_module, "_seed_request_destinations", None)
    if current is None or current is _no_otel_destinations or _otel_sdk_installed():
        return False
    replaced["_seed_request_destinations"] = current
    auth_module._seed_request_destinations = _no_otel_destinations
    log.info("kubegate: LiteLLM's OTel destination seeding disabled (opentelemetry-sdk not installed)")
    return True


def apply() -> None:
    skip_failing_otel_seeding()
