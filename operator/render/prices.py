"""LiteLLM's bundled price map, read offline and without importing LiteLLM (the operator never imports it).

The JSON file ships inside the installed ``litellm`` package; ``importlib.util.find_spec`` locates the package
directory without executing it. Only (input, output) USD per token per model is kept.
"""

from __future__ import annotations

import importlib.util
import json
from decimal import Decimal
from functools import lru_cache
from pathlib import Path

PRICE_FILE = "model_prices_and_context_window_backup.json"
Price = tuple[Decimal, Decimal]


def price_file() -> Path | None:
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / PRICE_FILE
    return path if path.is_file() else None


@lru_cache(maxsize=1)
def bundled_prices() -> dict[str, tuple[str | None, Price]]:
    """Model key -> (its litellm_provider, (input, output) USD per token); empty when LiteLLM is not installed."""
    path = price_file()
    if path is None:
        return {}
    table: dict[str, tuple[str | None, Price]] = {}
    for key, entry in json.loads(path.read_text()).items():
        if not isinstance(entry, dict):
            continue
        inp, out = entry.get("input_cost_per_token"), entry.get("output_cost_per_token")
        if inp is None and out is None:
            continue
        table[key] = (entry.get("litellm_provider"), (Decimal(str(inp or 0)), Decimal(str(out or 0))))
    return table


def bundled_price(provider: str, model: str) -> Price | None:
    """The bundled price of ``provider/model`` (LiteLLM's key for most providers), else of ``model`` when the map
    lists it for that provider; None when the map does not know it."""
    table = bundled_prices()
    hit = table.get(f"{provider}/{model}")
    if hit is not None:
        return hit[1]
    hit = table.get(model)
    if hit is not None and hit[0] in (provider, None):
        return hit[1]
    return None
