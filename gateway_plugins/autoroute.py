"""Cost-aware routing: a public model with quality candidates (``auto``) becomes one real model per request.

The front door reads the tier a request asks for (``x-kubegate-quality``, default 1). ``eligible`` lists the
candidates of at least that tier the tenant may call (its allowed models, and for a residency-restricted tenant only
those with a deployment in its regions), cheapest worst case first, with their worst-case reservations. The budget
check itself is done by the admit script in the same round trip as the reservation (``gateway_plugins.limits``): it
keeps the candidates that fit every budget, and the request gets the first of them, the rest as its fallbacks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from gateway_plugins.contract.validate import ContractError
from gateway_plugins.policy.schema import MAX_QUALITY_TIER, ModelMeta

if TYPE_CHECKING:
    from gateway_plugins.context import RequestContext

QUALITY_HEADER = b"x-kubegate-quality"
HEADER_PARAM = "header.x-kubegate-quality"


@dataclass(frozen=True, slots=True)
class Candidate:
    model: str
    tier: int
    # Worst-case reservation of the request on this model: micro-USD (0 for a zero-price model) and tokens.
    est_micro: int
    est_tokens: int
    free: bool


def requested_quality(headers: list[tuple[bytes, bytes]], meta: ModelMeta | None, model: str) -> int | None:
    """The tier asked for: None for a model without candidates, else the header's value (default 1).

    The header on any other model is refused rather than ignored: the caller believes it chose a tier."""
    raw = next((v for k, v in headers if k.lower() == QUALITY_HEADER), None)
    if meta is None or not meta.candidates:
        if raw is not None:
            raise ContractError(
                400,
                "invalid_field",
                f"x-kubegate-quality applies only to a cost-routed model (a ModelRoute with spec.candidates); "
                f"{model!r} is not one: drop the header or call the cost-routed model",
                HEADER_PARAM,
            )
        return None
    if raw is None:
        return 1
    text = raw.decode("latin-1").strip()
    if not text.isdigit() or not 1 <= int(text) <= MAX_QUALITY_TIER:
        raise ContractError(
            400,
            "invalid_field",
            f"x-kubegate-quality must be a whole number from 1 to {MAX_QUALITY_TIER} (the lowest quality tier "
            "a candidate of the model may have)",
            HEADER_PARAM,
        )
    return int(text)


def no_candidate_allowed(ctx: RequestContext, meta: ModelMeta, quality: int) -> Exception:
    """None of the model's candidates of the tier may serve this tenant at all (models, regions, max_tokens)."""
    from gateway_plugins.errors import openai_error  # pulls in LiteLLM: on the refusal path only

    tiers = sorted({c.tier for c in meta.candidates})
    regions = (
        f" with a deployment in its allowedRegions [{', '.join(ctx.allowed_regions)}]" if ctx.allowed_regions else ""
    )
    return openai_error(
        403,
        f"no candidate of {meta.name!r} of quality tier {quality} or higher is in the tenant's allowedModels{regions} "
        f"and accepts the request's max_tokens (candidate tiers: {tiers}); add one to the Tenant's allowedModels, "
        "ask for a lower x-kubegate-quality or a smaller max_tokens",
        code="no_candidate_allowed",
        param="model",
    )


def order(candidates: list[Candidate]) -> list[Candidate]:
    """Cheapest worst case first; at equal cost the higher tier, then the name (a stable, replica-independent order)."""
    return sorted(candidates, key=lambda c: (c.est_micro, -c.tier, c.model))
