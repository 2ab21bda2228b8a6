"""kubegate's work-arounds for LiteLLM defects: applied by the plugins, and still needed."""

from __future__ import annotations

import importlib._bootstrap_external as bootstrap_external

import pytest
from litellm.proxy._types import UserAPIKeyAuth
from litellm.proxy.auth import user_api_key_auth as auth_module

import gateway_plugins.auth  # noqa: F401  (importing the plugin applies the fixes, as in the proxy)
from gateway_plugins import litellm_fixes
from gateway_plugins.policy import proxy_defaults


def _imports_during(call) -> int:
    """Modules executed by ``call``: a failed import is not cached, so each call runs those modules' code again
    (and, where no bytecode was written, compiles their source first)."""
    executed = []
    original = bootstrap_external._LoaderBasics.exec_module

    def counting(self, module, *args, **kwargs):
        executed.append(module.__name__)
        return original(self, module, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(bootstrap_external._LoaderBasics, "exec_module", counting)
        call()
    return len(executed)


def test_otel_seeding_no_longer_recompiles_modules_on_every_request():
    # kubegate ships opentelemetry-sdk (gateway_plugins.tracing), and LiteLLM's OTel logger still does not import
    # with it. If this fails, LiteLLM's logger imports now and the work-around has gone inert: see below.
    error = litellm_fixes.otel_logger_import_error()
    assert isinstance(error, ImportError), error
    assert auth_module._seed_request_destinations is litellm_fixes._no_otel_destinations
    original = litellm_fixes.replaced["_seed_request_destinations"]
    key = UserAPIKeyAuth(api_key="hashed", user_id="u")

    original(key, None)
    # The defect: LiteLLM's failed OTel import is not cached, so every request executes those modules again.
    # If this fails, LiteLLM has fixed it and litellm_fixes.skip_failing_otel_seeding can go.
    assert _imports_during(lambda: original(key, None)) > 0
    assert _imports_during(lambda: auth_module._seed_request_destinations(key, None)) == 0
    assert litellm_fixes.skip_failing_otel_seeding() is False  # applying twice changes nothing


def test_message_redaction_only_when_another_logger_gets_the_payload():
    plain = proxy_defaults.apply_defaults({})
    assert "turn_off_message_logging" not in plain["litellm_settings"]
    assert plain["litellm_settings"]["callbacks"] == [proxy_defaults.CALLBACK]

    with_langfuse = proxy_defaults.apply_defaults({"litellm_settings": {"success_callback": ["langfuse"]}})
    assert with_langfuse["litellm_settings"]["turn_off_message_logging"] is True
    explicit = proxy_defaults.apply_defaults(
        {"litellm_settings": {"callbacks": "otel", "turn_off_message_logging": False}}
    )
    assert explicit["litellm_settings"]["turn_off_message_logging"] is False


def test_per_request_callback_opt_outs_ignored_only_without_other_loggers():
    # No other logger: nothing a request could opt out of, and the per-callback check costs every call.
    assert proxy_defaults.apply_defaults({})["litellm_settings"]["global_disable_no_log_param"] is True
    assert proxy_defaults.LITELLM_SETTINGS["global_disable_no_log_param"] is True  # what the operator renders
    # Another logger: a platform team's requests may still opt out of it (``no-log``, x-litellm-disable-callbacks).
    with_langfuse = proxy_defaults.apply_defaults({"litellm_settings": {"success_callback": ["langfuse"]}})
    assert "global_disable_no_log_param" not in with_langfuse["litellm_settings"]
