"""Token-id inputs decoded to text, so PII analysis reads what the upstream would.

LangChain's ``OpenAIEmbeddings`` (and other clients that chunk long texts) send embedding inputs as token ids by
default. Ids are text no analyser can read, so kubegate decodes them with the tokenizer OpenAI's embedding and
chat models use (tiktoken's ``cl100k_base``/``o200k_base``, the files LiteLLM bundles: nothing is downloaded)
and forwards the text, which the upstream tokenizes back to the same ids.
"""

from __future__ import annotations

from functools import cache
from typing import Any

# The field holding token ids, per endpoint.
FIELDS = {"embeddings": "input", "completions": "prompt"}


def _ints(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(type(v) is int for v in value)


def has_token_ids(endpoint: str, body: dict) -> bool:
    value = body.get(FIELDS.get(endpoint, ""))
    return _ints(value) or (isinstance(value, list) and any(_ints(v) for v in value))


@cache
def _encoding(name: str) -> Any:
    # LiteLLM points tiktoken at its bundled rank files when this module is imported: never a download.
    import litellm.litellm_core_utils.default_encoding  # noqa: F401
    import tiktoken

    return tiktoken.get_encoding(name)


def encoding_name(model: str) -> str:
    """``o200k_base`` for the GPT-4o/4.1/5 and o-series families, else ``cl100k_base`` (the embedding models)."""
    lowered = model.lower()
    return "o200k_base" if lowered.startswith(("gpt-4o", "gpt-4.1", "gpt-5", "o1", "o3", "o4")) else "cl100k_base"


def decode_token_ids(endpoint: str, body: dict) -> None:
    """Replace token-id items of ``body``'s input by their text, in place (CPU-bound: run off the event loop).
    Ids outside the vocabulary are left as they are, and the contract refuses them."""
    field = FIELDS[endpoint]
    value = body[field]
    enc = _encoding(encoding_name(str(body.get("model") or "")))
    vocabulary = enc.n_vocab

    def text(ids: list[int]) -> str | list[int]:
        if any(i < 0 or i >= vocabulary for i in ids):
            return ids
        return enc.decode(ids)

    body[field] = text(value) if _ints(value) else [text(v) if _ints(v) else v for v in value]
