"""kopf handlers (thin): importing this package registers them."""

import os

# The Budget refresh reads spend through gateway_plugins.limits, whose import pulls in LiteLLM; without this,
# LiteLLM fetches its price map from the internet at import. The operator talks to the API server and Redis only.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from gateway_operator.handlers import budgets, gateway  # noqa: F401
