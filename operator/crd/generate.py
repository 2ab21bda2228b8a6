"""Generate structural CRDs from the pydantic models: ``python -m gateway_operator.crd.generate``.

Writes ``crds/<plural>.yaml`` and the Helm chart's copy; ``tests/operator/test_crd_generate.py`` fails on drift.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import yaml
from gateway_operator.crd import core
from gateway_operator.crd import models as m

ROOT = Path(__file__).resolve().parents[2]
OUTPUT_DIRS = (ROOT / "crds", ROOT / "charts" / "kubegate" / "crds")
DECIMAL_PATTERN = r"^[0-9]+(\.[0-9]+)?$"
# Decimals whose runtime model also bounds digits (max_digits=18, decimal_places=6): the same bound at apply.
PATTERNS: dict[tuple[str, ...], str] = {
    ("Budget", "limitUSD"): r"^[0-9]{1,12}(\.[0-9]{1,6})?$",
    ("TenantPlan", "budget", "limitUSD"): r"^[0-9]{1,12}(\.[0-9]{1,6})?$",
    ("LLMGateway", "volumeDiscounts", "*", "fromUSD"): r"^[0-9]{1,12}(\.[0-9]{1,6})?$",
    # Below 100, at most two decimals (the runtime model's bounds).
    ("LLMGateway", "volumeDiscounts", "*", "percent"): r"^[0-9]{1,2}(\.[0-9]{1,2})?$",
}

# Every kind shows its Ready condition in `kubectl get`.
READY_COLUMN = ("Ready", "string", '.status.conditions[?(@.type=="Ready")].status')

KIND_INFO: dict[str, dict[str, Any]] = {
    # Not "Gateway": the Kubernetes Gateway API's gateways.gateway.networking.k8s.io would shadow it (docs/architecture.md).
    "LLMGateway": {
        "plural": "llmgateways",
        "short": ["kgw", "llmgw"],
        "spec": m.LLMGatewaySpec,
        "columns": [
            READY_COLUMN,
            # Desired, as the operator applied it ("2", or "2-10 (HPA)"); it does not watch Deployments.
            ("Replicas", "string", ".status.scale"),
            ("Workers", "integer", ".status.workers"),
        ],
    },
    "ModelRoute": {
        "plural": "modelroutes",
        "short": ["kmr"],
        "spec": m.ModelRouteSpec,
        "columns": [
            READY_COLUMN,
            ("Model", "string", ".spec.modelName"),
            ("Gateway", "string", ".spec.gateway"),
            # Written by the operator: spec.maxOutputTokens, else what LiteLLM's model map gives the upstream models.
            ("MaxTokens", "integer", ".status.maxOutputTokens"),
        ],
    },
    "Tenant": {
        "plural": "tenants",
        "short": ["ktn"],
        "spec": m.TenantSpec,
        "columns": [
            READY_COLUMN,
            ("Gateway", "string", ".spec.gateway"),
            ("Regions", "string", ".spec.allowedRegions"),
            # Active, Trial, Suspended or Expired (operator.status.tenant_state).
            ("Plan", "string", ".spec.plan"),
            ("State", "string", ".status.state"),
            ("Expires", "string", ".spec.expiresAt"),
            # Written by the budget refresh: this period's spend over all the Tenant's Budgets and the worst state.
            ("Spent", "string", ".status.spentUSD"),
            ("Budget", "string", ".status.budgetState"),
        ],
    },
    "Budget": {
        "plural": "budgets",
        "short": ["kbg"],
        "spec": m.BudgetSpec,
        "columns": [
            READY_COLUMN,
            ("Limit", "string", ".spec.limitUSD"),
            ("Spent", "string", ".status.spentUSD"),
            ("Tokens", "integer", ".spec.limitTokens"),
            ("SpentTokens", "integer", ".status.spentTokens"),
            # Of the nearer limit when the Budget has both.
            ("Percent", "number", ".status.percent"),
            ("State", "string", ".status.state"),
            ("Remaining", "string", ".status.remainingUSD"),
            # A string, not a date: kubectl prints a date column as an age, and a future time as `<invalid>`.
            ("Resets", "string", ".status.periodEnd"),
        ],
    },
    # Not "Plan": a generic name other operators' kinds may take (the plans.* of other API groups in `kubectl get`).
    "TenantPlan": {
        "plural": "tenantplans",
        "short": ["ktp"],
        "spec": m.TenantPlanSpec,
        "columns": [
            ("Models", "string", ".spec.allowedModels"),
            ("Regions", "string", ".spec.allowedRegions"),
            ("RPM", "integer", ".spec.rateLimits.rpm"),
            ("LimitUSD", "string", ".spec.budget.limitUSD"),
            ("LimitTokens", "integer", ".spec.budget.limitTokens"),
            ("Period", "string", ".spec.budget.period"),
        ],
    },
}

# Cross-field rules the API server enforces (CEL); full cycle detection lives in the operator.
VALIDATIONS: dict[tuple[str, ...], list[dict[str, str]]] = {
    ("LLMGateway", "autoscaling"): [
        {
            "rule": "!has(self.minReplicas) || !has(self.maxReplicas) || self.minReplicas <= self.maxReplicas",
            "message": "minReplicas must not exceed maxReplicas",
            "fieldPath": ".minReplicas",
        }
    ],
    # The same rules as crd.models.RedisSpec's validator, so kubectl apply refuses what the operator would.
    ("LLMGateway", "redis"): [
        {
            "rule": "!has(self.mode) || self.mode != 'external' || (has(self.topology) && self.topology != "
            "'standalone') || has(self.urlSecretRef)",
            "message": "external redis needs urlSecretRef (topology standalone)",
            "fieldPath": ".urlSecretRef",
        },
        {
            "rule": "!has(self.topology) || self.topology == 'standalone' || (has(self.mode) && self.mode == "
            "'external')",
            "message": "topology sentinel or cluster needs mode external (the managed Redis is one server)",
            "fieldPath": ".topology",
        },
        {
            "rule": "!has(self.topology) || self.topology != 'sentinel' || has(self.sentinel)",
            "message": "topology sentinel needs spec.redis.sentinel (addresses and masterName)",
            "fieldPath": ".sentinel",
        },
        {
            "rule": "!has(self.topology) || self.topology != 'cluster' || has(self.cluster)",
            "message": "topology cluster needs spec.redis.cluster (nodes)",
            "fieldPath": ".cluster",
        },
        {
            "rule": "!has(self.sentinel) || (has(self.topology) && self.topology == 'sentinel')",
            "message": "spec.redis.sentinel is set only with topology sentinel",
            "fieldPath": ".sentinel",
        },
        {
            "rule": "!has(self.cluster) || (has(self.topology) && self.topology == 'cluster')",
            "message": "spec.redis.cluster is set only with topology cluster",
            "fieldPath": ".cluster",
        },
        {
            "rule": "!has(self.urlSecretRef) || !has(self.topology) || self.topology == 'standalone'",
            "message": "urlSecretRef is for topology standalone; sentinel and cluster take their addresses",
            "fieldPath": ".urlSecretRef",
        },
        {
            "rule": "!has(self.tls) || !self.tls || (has(self.topology) && self.topology != 'standalone')",
            "message": "tls is for topology sentinel or cluster; a standalone Redis takes rediss:// in its URL",
            "fieldPath": ".tls",
        },
        {
            "rule": "!has(self.usernameSecretRef) || has(self.passwordSecretRef)",
            "message": "usernameSecretRef needs passwordSecretRef (an ACL user and its password)",
            "fieldPath": ".usernameSecretRef",
        },
        {
            "rule": "(has(self.mode) && self.mode == 'external') || (!has(self.passwordSecretRef) && "
            "!has(self.usernameSecretRef))",
            "message": "passwordSecretRef and usernameSecretRef are for mode external (the managed password is "
            "generated)",
            "fieldPath": ".passwordSecretRef",
        },
        {
            "rule": "!has(self.caSecretRef) || (has(self.mode) && self.mode == 'external')",
            "message": "caSecretRef is for mode external (the managed Redis speaks no TLS)",
            "fieldPath": ".caSecretRef",
        },
        {
            "rule": "!has(self.clientCertSecretRef) || (has(self.mode) && self.mode == 'external')",
            "message": "clientCertSecretRef is for mode external (the managed Redis speaks no TLS)",
            "fieldPath": ".clientCertSecretRef",
        },
        {
            "rule": "!has(self.clientCertSecretRef) || !has(self.topology) || self.topology == 'standalone' || "
            "(has(self.tls) && self.tls)",
            "message": "clientCertSecretRef needs TLS: set tls: true (topology sentinel or cluster)",
            "fieldPath": ".clientCertSecretRef",
        },
        {
            "rule": "!has(self.highAvailability) || !has(self.mode) || self.mode == 'managed'",
            "message": "highAvailability is for mode managed (an external Redis brings its own: topology sentinel or "
            "cluster)",
            "fieldPath": ".highAvailability",
        },
    ],
    ("LLMGateway", "redis", "highAvailability"): [
        {
            "rule": "!has(self.replicaAcks) || self.replicaAcks < (has(self.replicas) ? self.replicas : 3)",
            "message": "replicaAcks must be below replicas (a pod cannot confirm its own writes)",
            "fieldPath": ".replicaAcks",
        }
    ],
    ("LLMGateway", "audit", "export", "s3"): [
        {
            "rule": "!has(self.prefix) || self.prefix == '' || self.prefix.endsWith('/')",
            "message": "prefix must be empty or end in '/' (objects go to <prefix><namespace>/<gateway>/)",
            "fieldPath": ".prefix",
        },
        {
            "rule": "!has(self.endpoint) || !self.endpoint.contains('@')",
            "message": "endpoint must not hold credentials; put them in the Secrets of accessKeyIdSecretRef and "
            "secretAccessKeySecretRef",
            "fieldPath": ".endpoint",
        },
    ],
    ("Budget",): [
        {
            "rule": "has(self.limitUSD) || has(self.limitTokens)",
            "message": "set limitUSD or limitTokens (or both)",
        },
        {
            "rule": "!has(self.thresholds) || self.thresholds.map(t, t.percent).isSorted()",
            "message": "thresholds must be ascending by percent",
            "fieldPath": ".thresholds",
        },
        {
            "rule": "!has(self.thresholds) || self.thresholds.all(t, self.thresholds.filter(u, u.percent == t.percent).size() == 1)",
            "message": "thresholds must have distinct percents",
            "fieldPath": ".thresholds",
        },
        {
            "rule": "!has(self.downgrade) || self.downgrade.all(k, self.downgrade[k] != k)",
            "message": "downgrade must not map a model to itself",
            "fieldPath": ".downgrade",
        },
        {
            "rule": "!has(self.downgrade) || self.downgrade.all(k, !(self.downgrade[k] in self.downgrade) || self.downgrade[self.downgrade[k]] != k)",
            "message": "downgrade must not contain a 2-cycle",
            "fieldPath": ".downgrade",
        },
        {
            "rule": "!has(self.downgrade) || self.downgrade.all(k, !(self.downgrade[k] in self.downgrade)"
            " || !(self.downgrade[self.downgrade[k]] in self.downgrade)"
            " || self.downgrade[self.downgrade[self.downgrade[k]]] != k)",
            "message": "downgrade must not contain a 3-cycle",
            "fieldPath": ".downgrade",
        },
    ],
    ("LLMGateway", "pod", "env"): [
        {
            "rule": "self.all(e, !e.name.startsWith('KUBEGATE_') && !e.name.startsWith('KG_KEY_') && "
            "!(e.name in ['LITELLM_MASTER_KEY', 'LITELLM_LOCAL_MODEL_COST_MAP', 'PROMETHEUS_MULTIPROC_DIR']))",
            "message": "KUBEGATE_*, KG_KEY_*, LITELLM_MASTER_KEY, LITELLM_LOCAL_MODEL_COST_MAP and "
            "PROMETHEUS_MULTIPROC_DIR are set by the operator",
        }
    ],
    ("Tenant", "pii", "entities"): [
        {
            "rule": f"self.all(k, k.matches('{m.PII_ENTITY}'))",
            "message": f"entity types must be upper-case Presidio names ({m.PII_ENTITY})",
        }
    ],
}

# NER types need a model for every analysis language, and the proxy image has them only for IMAGE_NER_MODELS.
_NER = ", ".join(f"'{e}'" for e in sorted(m.NER_ENTITY_TYPES))
_SHIPPED = ", ".join(f"'{lang}'" for lang in sorted(m.IMAGE_NER_MODELS))
for _kind in ("Tenant", "TenantPlan"):
    VALIDATIONS[(_kind, "pii")] = [
        {
            "rule": f"!has(self.entities) || !self.entities.exists(k, k in [{_NER}]) || "
            f"(has(self.languages) && size(self.languages) > 0 ? self.languages.all(l, l in [{_SHIPPED}]) : "
            f"(!has(self.language) || self.language in [{_SHIPPED}]))",
            "message": f"NER entity types ({_NER.replace(chr(39), '')}) need a model for every language in "
            f"languages (or language), and the proxy image ships one only for {_SHIPPED.replace(chr(39), '')}: "
            "remove the other languages or the NER types",
            "fieldPath": ".languages",
        }
    ]


def _exactly_one(fields: list[str]) -> str:
    return " + ".join(f"(has(self.{f}) ? 1 : 0)" for f in fields) + " == 1"


# The proxy pod's own volumes and mounts (gateway_operator.crd.core.OPERATOR_MOUNTS) cannot be replaced from spec.pod.
_OURS = ", ".join(f"'{p}'" for p in core.OPERATOR_MOUNTS.values())
VALIDATIONS[("LLMGateway", "pod")] = [
    {
        "rule": "!has(self.volumeMounts) || self.volumeMounts.all(m, has(self.volumes) && "
        "self.volumes.exists(v, v.name == m.name))",
        "message": "every volumeMounts name must be a volume in spec.pod.volumes",
        "fieldPath": ".volumeMounts",
    }
]
VALIDATIONS[("LLMGateway", "pod", "volumes")] = [
    {
        "rule": "self.all(v, !(v.name in [" + ", ".join(f"'{n}'" for n in core.OPERATOR_MOUNTS) + "]))",
        "message": f"{', '.join(core.OPERATOR_MOUNTS)} are the operator's own volume names",
    }
]
VALIDATIONS[("LLMGateway", "pod", "volumes", "*")] = [
    {
        "rule": _exactly_one([m.Volume.model_fields[f].alias for f in m.Volume.model_fields if f != "name"]),
        "message": f"set exactly one of {', '.join(core.VOLUME_SOURCES)}",
    }
]
VALIDATIONS[("LLMGateway", "pod", "volumes", "*", "projected", "sources", "*")] = [
    {
        "rule": _exactly_one([core.VolumeProjection.model_fields[f].alias for f in core.VolumeProjection.model_fields]),
        "message": "set exactly one of configMap, secret, downwardAPI, serviceAccountToken",
    }
]
VALIDATIONS[("LLMGateway", "pod", "volumeMounts")] = [
    {
        "rule": f"self.all(m, [{_OURS}].all(p, m.mountPath != p && !m.mountPath.startsWith(p + '/') && "
        "!p.startsWith(m.mountPath + '/')))",
        "message": f"a mountPath must not be at, under or above the operator's mounts ({_OURS.replace(chr(39), '')})",
    }
]
VALIDATIONS[("LLMGateway", "pod", "volumeMounts", "*", "mountPath")] = [
    {"rule": f"!self.matches('{core.DOT_SEGMENT}')", "message": "must not contain . or .. segments"}
]

# List semantics the API server enforces: duplicates are refused at apply, with the field named.
LIST_TYPES: dict[tuple[str, ...], dict[str, Any]] = {
    ("ModelRoute", "deployments"): {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    ("ModelRoute", "fallbacks"): {"x-kubernetes-list-type": "set"},
    ("Tenant", "allowedModels"): {"x-kubernetes-list-type": "set"},
    ("Tenant", "allowedRegions"): {"x-kubernetes-list-type": "set"},
    ("TenantPlan", "allowedModels"): {"x-kubernetes-list-type": "set"},
    ("TenantPlan", "allowedRegions"): {"x-kubernetes-list-type": "set"},
    ("Tenant", "hostedTools"): {"x-kubernetes-list-type": "set"},
    ("Tenant", "pii", "allowList"): {"x-kubernetes-list-type": "set"},
    ("Tenant", "pii", "languages"): {"x-kubernetes-list-type": "set"},
    ("LLMGateway", "pod", "env"): {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    ("LLMGateway", "pod", "imagePullSecrets"): {"x-kubernetes-list-type": "set"},
    ("LLMGateway", "pod", "volumes"): {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    ("LLMGateway", "pod", "volumeMounts"): {
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["mountPath"],
    },
}

WEBHOOK_RULE = {
    "rule": "has(self.url) != has(self.urlSecretRef)",
    "message": "set exactly one of url and urlSecretRef",
}
VALIDATIONS[("Budget", "webhook")] = [WEBHOOK_RULE]
VALIDATIONS[("TenantPlan", "budget")] = [
    {"rule": "has(self.limitUSD) || has(self.limitTokens)", "message": "set limitUSD or limitTokens (or both)"},
    *VALIDATIONS[("Budget",)][1:],
]
VALIDATIONS[("LLMGateway", "budgetWebhook")] = [WEBHOOK_RULE]
VALIDATIONS[("LLMGateway", "audit", "witnesses")] = [
    {"rule": "self.quorum <= size(self.keys)", "message": "quorum must not be more than the number of keys"}
]
VALIDATIONS[("LLMGateway", "volumeDiscounts")] = [
    {
        "rule": "self.map(t, double(t.fromUSD)).isSorted() && self.map(t, double(t.percent)).isSorted()",
        "message": "volume discount tiers must be ascending by fromUSD and by percent",
    }
]
VALIDATIONS[("ModelRoute",)] = [
    {
        # Cost-aware routing: a route either serves from its own upstreams or picks among other routes' models.
        "rule": "(has(self.deployments) && size(self.deployments) > 0) != (has(self.candidates) && size(self.candidates) > 0)",
        "message": "set either deployments (upstreams) or candidates (cost-aware routing), not both or none",
    },
    {
        "rule": "!has(self.candidates) || self.candidates.all(c, c.model != self.modelName)",
        "message": "a candidate must not be the route's own modelName",
        "fieldPath": ".candidates",
    },
]

# Bounds that keep CEL cost estimates within the API server's budget.
BOUNDS: dict[tuple[str, ...], dict[str, int]] = {
    ("Budget", "thresholds"): {"maxItems": 16},
    ("Budget", "downgrade"): {"maxProperties": 64},
    ("TenantPlan", "budget", "thresholds"): {"maxItems": 16},
    ("TenantPlan", "budget", "downgrade"): {"maxProperties": 64},
    ("ModelRoute", "deployments"): {"maxItems": 64},
}


def _resolve(schema: dict, defs: dict[str, Any]) -> dict:
    if "$ref" in schema:
        target = copy.deepcopy(defs[schema["$ref"].rsplit("/", 1)[-1]])
        rest = {k: v for k, v in schema.items() if k != "$ref"}
        return _resolve({**target, **rest}, defs)
    return schema


def _structural(schema: dict, defs: dict[str, Any], path: tuple[str, ...], fallback: str | None = None) -> dict:
    """``fallback``: the description of a list item or map value that has none of its own (its field explains it);
    a property without a description is an error, so `kubectl explain` never shows a bare type name."""
    schema = _resolve(schema, defs)
    out: dict[str, Any] = {}
    options = schema.get("anyOf")
    if options is not None:
        non_null = [o for o in options if o.get("type") != "null"]
        if len(non_null) < len(options):
            out["nullable"] = True
        if len(non_null) == 2 and {o.get("type") for o in non_null} == {"number", "string"}:
            # pydantic's Decimal: accept a decimal string (exact) only; its bounds become a CEL rule.
            inner: dict[str, Any] = {"type": "string", "pattern": PATTERNS.get(path, DECIMAL_PATTERN)}
            number = next(o for o in non_null if o.get("type") == "number")
            rules = _decimal_rules(number)
            if rules:
                inner["x-kubernetes-validations"] = rules
        else:
            inner = _structural(non_null[0], defs, path, schema.get("description") or fallback)
        outer = {k: v for k, v in schema.items() if k != "anyOf"}
        merged = {**outer, **inner}
        if outer.get("description"):
            # The field's own text, not its type's (an optional PiiSpec would otherwise explain as "PiiSpec.").
            merged["description"] = outer["description"]
        merged.pop("anyOf", None)
        result = {**_structural_plain(merged, defs, path, fallback), **out}
        if "x-kubernetes-validations" in inner and path not in VALIDATIONS:
            result["x-kubernetes-validations"] = inner["x-kubernetes-validations"]
        return result
    return _structural_plain(schema, defs, path, fallback)


def _decimal_rules(number: dict[str, Any]) -> list[dict[str, str]]:
    rules = []
    if "exclusiveMinimum" in number:
        bound = number["exclusiveMinimum"]
        rules.append({"rule": f"double(self) > {float(bound)}", "message": f"must be greater than {bound:g}"})
    if number.get("minimum", 0) > 0:  # the pattern already refuses a sign
        bound = number["minimum"]
        rules.append({"rule": f"double(self) >= {float(bound)}", "message": f"must be at least {bound:g}"})
    return rules


def _structural_plain(schema: dict, defs: dict[str, Any], path: tuple[str, ...], fallback: str | None) -> dict:
    out: dict[str, Any] = {}
    if "const" in schema:
        out.update(type="string", enum=[schema["const"]])
    elif "enum" in schema:
        out.update(type=schema.get("type", "string"), enum=list(schema["enum"]))
    elif schema.get("type") == "string" and schema.get("format") == "decimal":
        out.update(type="string", pattern=PATTERNS.get(path, DECIMAL_PATTERN))
    elif schema.get("type") == "string" and schema.get("format") == "date-time":
        # The API server then refuses what is not RFC 3339, naming the field.
        out.update(type="string", format="date-time")
    elif "type" in schema:
        out["type"] = schema["type"]
    if out.get("type") == "string" and "pattern" in schema and "pattern" not in out:
        out["pattern"] = schema["pattern"]
    keys = ("minLength", "maxLength", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minItems")
    for key in (*keys, "maxItems", "maxProperties"):
        if key in schema:
            value = schema[key]
            if key.startswith("exclusive") and isinstance(value, bool):
                out[key] = value  # already structural (an optional object's properties are converted twice)
            elif key.startswith("exclusive"):
                out[key.replace("exclusive", "").lower()] = value
                out[key] = True
            else:
                out[key] = value
    # Never pydantic's title: it is the class name ("TenantSpec") or the field name title-cased ("Rpm").
    description = schema.get("description") or fallback
    if not description:
        raise ValueError(f"{'.'.join(path)}: no description (a pydantic Field description or a model docstring)")
    out["description"] = description
    # No `default: null`: an absent optional field stays absent, so CEL `has()` means "set".
    if "default" in schema and schema["default"] is not None and not isinstance(schema["default"], dict | list):
        default = schema["default"]
        out["default"] = default
    if out.get("type") == "object" or "properties" in schema:
        out["type"] = "object"
        props = schema.get("properties", {})
        if props:
            out["properties"] = {key: _structural(value, defs, (*path, key)) for key, value in sorted(props.items())}
            if schema.get("required"):
                out["required"] = sorted(schema["required"])
        extra = schema.get("additionalProperties")
        if (extra is True or schema.get("x-kubernetes-preserve-unknown-fields")) and not props:
            # A free-form Kubernetes structure (affinity, tolerations): kept as given, checked on the child.
            out["x-kubernetes-preserve-unknown-fields"] = True
        elif isinstance(extra, dict):
            out["additionalProperties"] = _structural(extra, defs, (*path, "*"), f"A value of {path[-1]}.")
    if out.get("type") == "array" and "items" in schema:
        out["items"] = _structural(schema["items"], defs, (*path, "*"), f"An entry of {path[-1]}.")
    out.update(BOUNDS.get(path, {}))
    out.update(LIST_TYPES.get(path, {}))
    if path in VALIDATIONS:
        out["x-kubernetes-validations"] = VALIDATIONS[path]
    return out


def spec_schema(kind: str) -> dict:
    model = KIND_INFO[kind]["spec"]
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.pop("$defs", {})
    return _structural(raw, defs, (kind,))


def _status_schema(kind: str) -> dict:
    # Status is written only by the operator; its shape evolves with it.
    return {
        "type": "object",
        "description": f"Observed state of the {kind}, written by the operator.",
        "x-kubernetes-preserve-unknown-fields": True,
    }


def build_crd(kind: str) -> dict:
    info = KIND_INFO[kind]
    plural = info["plural"]
    schema = {
        "type": "object",
        "description": m.KINDS[kind].__doc__,
        "properties": {
            "apiVersion": {"type": "string", "description": "API version of this object."},
            "kind": {"type": "string", "description": "Kind of this object."},
            # The API server refuses anything but a type here (metadata's schema is its own).
            "metadata": {"type": "object"},
            "spec": spec_schema(kind),
            "status": _status_schema(kind),
        },
    }
    if kind != "LLMGateway":
        schema["required"] = ["spec"]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{m.GROUP}"},
        "spec": {
            "group": m.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
                "shortNames": info["short"],
                "categories": ["kubegate"],
            },
            "versions": [
                {
                    "name": m.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [{"name": n, "type": t, "jsonPath": p} for n, t, p in info["columns"]]
                    + [{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}],
                    "schema": {"openAPIV3Schema": schema},
                }
            ],
        },
    }


HEADER = "# Generated by `python -m gateway_operator.crd.generate` from operator/crd/models.py. Do not edit.\n"


def render_all() -> dict[str, str]:
    """File name -> YAML text of every CRD."""
    return {
        f"{info['plural']}.yaml": HEADER + yaml.safe_dump(build_crd(kind), sort_keys=False, width=200)
        for kind, info in KIND_INFO.items()
    }


def main(argv: list[str] | None = None) -> int:
    files = render_all()
    for directory in OUTPUT_DIRS:
        directory.mkdir(parents=True, exist_ok=True)
        # A renamed kind must not leave its old CRD behind (helm would still install it).
        for stale in directory.glob("*.yaml"):
            if stale.name not in files and stale.read_text().startswith(HEADER):
                stale.unlink()
        for name, text in files.items():
            (directory / name).write_text(text)
    print(f"wrote {len(files)} CRDs to " + ", ".join(str(d.relative_to(ROOT)) for d in OUTPUT_DIRS), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
