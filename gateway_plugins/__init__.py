"""kubegate data plane: plugins that run inside the LiteLLM proxy process.

Nothing here imports the operator (the proxy image has no kopf); the operator imports
``gateway_plugins.policy.schema`` to render the policy this package reads.
"""

__version__ = "0.1.0"
