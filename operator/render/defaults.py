"""Proxy defaults shipped in every rendered LiteLLM config.

Uses ``gateway_plugins.proxy_defaults`` when the data plane provides it, so both planes agree.
"""

from __future__ import annotations

from typing import Any


def proxy_defaults() -> dict[str, dict[str, Any]]:
    """(general_settings, litellm_settings, router_settings) defaults keyed by section name."""
    try:
        from gateway_plugins import proxy_defaults as shipped  # type: ignore[attr-defined]

        sections = shipped.litellm_config_defaults()  # type: ignore[attr-defined]
        return {k: dict(v) for k, v in sections.items()}
    except (ImportError, AttributeError):
        pass
    return {
        # kubegate authenticates tenant keys itself; LiteLLM's key tables need Postgres, which we do not run.
        "general_settings": {
            "custom_auth": "gateway_plugins.auth.user_api_key_auth",
            "disable_spend_logs": True,
            "disable_adding_master_key_hash_to_db": True,
            "allow_requests_on_db_unavailable": True,
        },
        "litellm_settings": {
            "callbacks": ["gateway_plugins.hooks.proxy_handler_instance"],
            "drop_params": False,
            "telemetry": False,
        },
        "router_settings": {},
    }
