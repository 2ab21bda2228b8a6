"""The LiteLLM proxy settings kubegate ships (one place: the operator's renderer and ``kubegate dev`` import it).

LiteLLM features kubegate replaces are switched off: its DB-backed keys/spend/budgets (we have no
database), spend and error logs. ``bench/bench_proxy.py`` measures the result against vanilla LiteLLM.

``turn_off_message_logging`` only changes what LiteLLM hands to logging callbacks, and its redaction
deep-copies every response (8% of the proxy's CPU per request). kubegate's own callback never keeps
message text, so it is set only when the config adds another logging callback.

``global_disable_no_log_param`` likewise: a request's ``no-log`` flag and LiteLLM's (enterprise) per-request
``x-litellm-disable-callbacks`` check only matter to other loggers, and the check runs for every callback on every
call (1% of the proxy's CPU per request, bench/profile_fast_path.py). kubegate's contract refuses both anyway, and
its own callback must always run (it settles budgets). Set only when no other logging callback is configured.
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
    "set_verbose": False,
    "json_logs": True,
    # LiteLLM's /metrics serves the default prometheus registry, which holds kubegate's series.
    "require_auth_for_metrics_endpoint": False,
    # Dropped by apply_defaults when the config adds another logging callback (see above).
    "global_disable_no_log_param": True,
}

ENV: dict[str, str] = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "LITELLM_TELEMETRY": "False",
    "LITELLM_LOG": "WARNING",
    # uvicorn kills a worker that does not answer its supervisor's ping within 5 s, and a spawned worker
    # cannot answer while it re-imports LiteLLM, which takes longer than that on a busy or CPU-limited
    # node: with several workers they were killed and respawned in a loop (tests/dataplane/test_hooks_e2e.py).
    "TIMEOUT_WORKER_HEALTHCHECK": "120",
    # OpenAI-compatible chat calls through LiteLLM's own HTTP handler (its provider transformation and httpx client,
    # as for Anthropic, Responses and most providers) instead of the OpenAI SDK client, whose per-call request
    # transform and response model construction cost about 1.4 ms of CPU per request here (issue #22; the
    # ``fast-sdk`` variant of bench/bench_proxy.py measures it). Every data-plane test runs with it.
    "EXPERIMENTAL_OPENAI_BASE_LLM_HTTP_HANDLER": "true",
}


def apply_defaults(config: dict) -> dict:
    """Return ``config`` with kubegate's settings filled in where the config does not set them."""
    out = dict(config)
    general = dict(out.get("general_settings") or {})
    for key, value in GENERAL_SETTINGS.items():
        general.setdefault(key, value)
    settings = dict(out.get("litellm_settings") or {})
    explicit = set(settings)
    for key, value in LITELLM_SETTINGS.items():
        settings.setdefault(key, list(value) if isinstance(value, list) else value)
    if CALLBACK not in settings["callbacks"]:
        settings["callbacks"] = [*settings["callbacks"], CALLBACK]
    if third_party_callbacks(settings):
        settings.setdefault("turn_off_message_logging", True)
        if "global_disable_no_log_param" not in explicit:
            del settings["global_disable_no_log_param"]
    out["general_settings"], out["litellm_settings"] = general, settings
    return out


def third_party_callbacks(litellm_settings: dict) -> list[str]:
    """Logging callbacks in a ``litellm_settings`` section other than kubegate's own."""
    names = []
    for key in ("callbacks", "success_callback", "failure_callback"):
        value = litellm_settings.get(key) or []
        names += [value] if isinstance(value, str) else list(value)
    return [name for name in names if name != CALLBACK]
