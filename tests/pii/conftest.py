import os

# Importing gateway_plugins.errors imports litellm, which otherwise fetches a price map.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
