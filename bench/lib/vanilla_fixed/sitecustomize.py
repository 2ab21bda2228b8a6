"""Put on PYTHONPATH of a plugin-less LiteLLM proxy: applies only kubegate's LiteLLM work-arounds.

The bench's fair baseline for the cost of the plugins themselves (``vanilla-fixed`` vs ``plugins``).
"""

from gateway_plugins import litellm_fixes

litellm_fixes.apply()
