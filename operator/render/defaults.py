"""Proxy defaults shipped in every rendered LiteLLM config.

They come from ``gateway_plugins.policy.proxy_defaults``, so both planes agree.
"""

from __future__ import annotations

import copy
from typing import Any

from gateway_plugins.policy import proxy_defaults as shipped


def proxy_defaults() -> dict[str, dict[str, Any]]:
    """(general_settings, litellm_settings, router_settings) defaults keyed by section name.

    One source for both planes: the data plane's ``gateway_plugins.policy.proxy_defaults``.
    """
    return {
        "general_settings": copy.deepcopy(shipped.GENERAL_SETTINGS),
        "litellm_settings": copy.deepcopy(shipped.LITELLM_SETTINGS),
        "router_settings": {},
    }
