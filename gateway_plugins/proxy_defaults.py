"""The LiteLLM proxy settings kubegate ships (one place: the operator's renderer and ``kubegate dev`` import it).

LiteLLM features kubegate replaces are switched off: its DB-backed keys/spend/budgets (we have no
database), spend logs, message logging. Not yet measured by ``bench/`` (see the h2 report).
"""

from __future__ import annotations

CUSTOM_AUTH = "gateway_plugins.auth.user_api_key_auth"
CALLBACK = "gateway_plugins.hooks.proxy_handler_instance"

GENERAL_SETTINGS: dict = {
    "custom_auth": CUSTOM_AUTH,
    "disable_spend_logs": True,
    "disable_error_logs": True,
    # Not `allow_requests_on_db_unavailable`: with no DB at all it makes LiteLLM import prisma on every
    # auth error, turning a 401 into a 500.
}

LITELLM_SETTINGS: dict = {
    "callbacks": [CALLBACK],
    "turn_off_message_logging": True,
    "set_verbose": False,
    "json_logs": True,
    # LiteLLM's /metrics serves the default prometheus registry, which holds kubegate's series.
    "require_auth_for_metrics_endpoint": False,
}

ENV: dict[str, str] = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "LITELLM_TELEMETRY": "False",
    "LITELLM_LOG": "WARNING",
}


def apply_defaults(config: dict) -> dict:
    """Return ``config`` with kubegate's settings filled in where the config does not set them."""
    out = dict(config)
    general = dict(out.get("general_settings") or {})
    for key, value in GENERAL_SETTINGS.items():
        general.setdefault(key, value)
    settings = dict(out.get("litellm_settings") or {})
    for key, value in LITELLM_SETTINGS.items():
        settings.setdefault(key, list(value) if isinstance(value, list) else value)
    if CALLBACK not in settings["callbacks"]:
        settings["callbacks"] = [*settings["callbacks"], CALLBACK]
    out["general_settings"], out["litellm_settings"] = general, settings
    return out
