"""LiteLLM's bundled price map, read offline and without importing LiteLLM (the operator never imports it).

The JSON file ships inside the installed ``litellm`` package; ``importlib.util.find_spec`` locates the package
directory without executing it (never the copy LiteLLM can fetch from the network). Only (input, output) USD per
token and the output token limit per model are kept.
"""

from __future__ import annotations

import importlib.util
import json
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

PRICE_FILE = "model_prices_and_context_window_backup.json"
Price = tuple[Decimal, Decimal]


def price_file() -> Path | None:
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / PRICE_FILE
    return path if path.is_file() else None


def _entries() -> dict[str, Any]:
    path = price_file()
    return json.loads(path.read_text()) if path is not None else {}


@lru_cache(maxsize=1)
def bundled_prices() -> dict[str, tuple[str | None, Price]]:
    """Model key -> (its litellm_provider, (input, output) USD per token); empty when LiteLLM is not installed."""
    table: dict[str, tuple[str | None, Price]] = {}
    for key, entry in _entries().items():
        if not isinstance(entry, dict):
            continue
        inp, out = entry.get("input_cost_per_token"), entry.get("output_cost_per_token")
        if inp is None and out is None:
            continue
        table[key] = (entry.get("litellm_provider"), (Decimal(str(inp or 0)), Decimal(str(out or 0))))
    return table


@lru_cache(maxsize=1)
def bundled_output_limits() -> dict[str, tuple[str | None, int]]:
    """Model key -> (its litellm_provider, most output tokens one answer may have): the map's ``max_output_tokens``,
    else its ``max_tokens`` (LiteLLM's legacy field); empty when LiteLLM is not installed."""
    table: dict[str, tuple[str | None, int]] = {}
    for key, entry in _entries().items():
        if not isinstance(entry, dict):
            continue
        limit = entry.get("max_output_tokens") or entry.get("max_tokens")
        # The map's sample_spec holds descriptions here; only a positive whole number is a limit.
        if isinstance(limit, int) and not isinstance(limit, bool) and limit >= 1:
            table[key] = (entry.get("litellm_provider"), limit)
    return table


def _lookup(table: dict[str, tuple[str | None, T]], provider: str, model: str) -> T | None:
    """``provider/model`` (LiteLLM's key for most providers), else ``model`` when the map lists it for that
    provider; None when the map does not know it."""
    hit = table.get(f"{provider}/{model}")
    if hit is not None:
        return hit[1]
    hit = table.get(model)
    if hit is not None and hit[0] in (provider, None):
        return hit[1]
    return None


def bundled_price(provider: str, model: str) -> Price | None:
    """The bundled price of upstream model ``model`` of ``provider``; None when the map does not know it."""
    return _lookup(bundled_prices(), provider, model)


def bundled_max_output_tokens(provider: str, model: str) -> int | None:
    """The bundled output token limit of upstream model ``model`` of ``provider``; None when the map does not know
    it."""
    return _lookup(bundled_output_limits(), provider, model)


@lru_cache(maxsize=1)
def bundled_cache_priced() -> dict[str, tuple[str | None, bool]]:
    """Model key -> (its litellm_provider, True) for models whose cache reads are priced in the map."""
    return {
        key: (entry.get("litellm_provider"), True)
        for key, entry in _entries().items()
        if isinstance(entry, dict) and entry.get("cache_read_input_token_cost") is not None
    }


def bundled_cache_prices_known(provider: str, model: str) -> bool:
    """Whether LiteLLM's map prices cache reads of upstream model ``model`` of ``provider`` (it then prices cache
    writes too, or bills them at the input price)."""
    return bool(_lookup(bundled_cache_priced(), provider, model))
