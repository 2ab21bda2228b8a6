"""Gateway reconciliation: render, apply the children that changed, publish the policy, write changed statuses.

ModelRoute, Tenant and Budget events re-render the Gateway they belong to, coalesced per Gateway (``rerender``).
Periodic work runs in ``reconcile.loops``; the kopf handlers calling into this module are in ``handlers/``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import threading
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

from gateway_operator import memory
from gateway_operator import status as st
from gateway_operator.builders.common import policy_name
from gateway_operator.builders.configmaps import PolicyTooLarge, check_policy_size
from gateway_operator.builders.gateway import build_children
from gateway_operator.builders.proxy import proxy_workers, scale_summary
from gateway_operator.crd import models as crd
from gateway_operator.kube import children, prune, status_sender
from gateway_operator.kube.client import (
    api_client,
    forget,
    list_objects,
    patch_status,
    send_statuses,
    status_write,
)
from gateway_operator.kube.parallel import parallel
from gateway_operator.reconcile import keys, redislink, seen, trust
from gateway_operator.reconcile.coalesce import Coalescer
from gateway_operator.render import render_gateway
from gateway_operator.render.plans import PLAN_BUDGET_PREFIX
from gateway_operator.render.problems import INVALID_SPEC, Problem, field_errors, object_key
from kubernetes import client
from pydantic import ValidationError

from gateway_plugins.policy.store import encode_document

log = logging.getLogger("kubegate.operator")
GROUP, VERSION = crd.GROUP, crd.VERSION
# Re-exported: tests and docs name them from here.
ROTATE_ANNOTATION = keys.ROTATE_ANNOTATION
ROTATION_HANDLED = keys.ROTATION_HANDLED
# One reconcile per Gateway at a time: the policy revision is read-modify-written through the Gateway status.
_locks: defaultdict[tuple[str, str], threading.Lock] = defaultdict(threading.Lock)


def secret_availability(
    core: client.CoreV1Api, ns: str, routes: list[crd.ModelRoute]
) -> tuple[set[tuple[str, str]], dict[str, list[tuple[str, str]]]]:
    """(missing (Secret, key) pairs, per route: (reason, message) of each deployment left out). Content never read
    beyond the key names."""
    data: dict[str, set[str] | None] = {}
    unavailable: set[tuple[str, str]] = set()
    per_route: dict[str, list[tuple[str, str]]] = {}
    for route in routes:
        for dep in route.spec.deployments:
            for ref in dep.secret_refs().values():
                if ref.name not in data:
                    try:
                        data[ref.name] = set((core.read_namespaced_secret(ref.name, ns).data or {}).keys())
                    except client.ApiException as exc:
                        if exc.status != 404:
                            raise
                        data[ref.name] = None
                present = data[ref.name]
                if present is None:
                    problem = ("SecretNotFound", f"deployment {dep.name}: Secret {ref.name!r} not found")
                elif ref.key not in present:
                    problem = (
                        "SecretKeyNotFound",
                        f"deployment {dep.name}: Secret {ref.name!r} has no key {ref.key!r}",
                    )
                else:
                    continue
                unavailable.add((ref.name, ref.key))
                per_route.setdefault(route.metadata.name, []).append(problem)
                break
    return unavailable, per_route


def route_status(route: dict[str, Any], gateway: str, problems: list[tuple[str, str]]) -> dict[str, Any]:
    gen = route["metadata"].get("generation")
    if not problems:
        return st.ready_status(gen, True, "Rendered", f"in the model list of LLMGateway {gateway}")
    reasons = {reason for reason, _ in problems}
    reason = "SecretNotFound" if "SecretNotFound" in reasons else "SecretKeyNotFound"
    total = len(route["spec"].get("deployments") or [])
    serving = total - len(problems)
    message = "; ".join(m for _, m in problems) + f" (left out of the model list; {serving} of {total} serving)"
    return st.ready_status(gen, False, reason, message)


def policy_digest(policy: Any) -> str:
    return hashlib.sha256(encode_document(policy.model_copy(update={"revision": 0}), compress=False)).hexdigest()


def reconcile(
    ns: str, name: str, *, verify: bool = True, objects: seen.Objects | None = None, defer_statuses: bool = False
) -> dict[str, Any] | None:
    """Reconcile Gateway ``ns/name``; None when it is being deleted. 404 (ApiException) when it does not exist.

    ``verify``: also read every child and re-apply what was deleted or edited by hand (resync, resume, direct
    calls); without it only children whose desired state changed are applied (event-driven re-renders).
    ``objects``: the namespace's ModelRoutes, Tenants and Budgets from the informers' store (else listed).
    ``defer_statuses``: the statuses of the Gateway's objects are sent in the background (``kube.status_sender``)
    instead of before returning; the Gateway's own status is always written before.
    """
    with _locks[(ns, name)]:
        try:
            return _reconcile(ns, name, verify, objects if objects is not None else list_namespace(ns), defer_statuses)
        finally:
            memory.trim()


def list_namespace(ns: str) -> seen.Objects:
    return seen.from_lists({plural: list_objects(ns, plural) for plural in seen.PLURALS})


def members(objects: seen.Objects, name: str) -> tuple[list[seen.Seen], list[seen.Seen], list[seen.Seen], set[str]]:
    """(routes, tenants, budgets) of Gateway ``name`` and the names of every Tenant of the namespace.

    Budgets: those of the Gateway's Tenants, and those whose Tenant exists nowhere (their status says so).
    """
    routes = [r for r in objects.routes if r.spec.get("gateway") == name]
    tenants = [t for t in objects.tenants if t.spec.get("gateway") == name]
    mine = {t.name for t in tenants}
    existing = {t.name for t in objects.tenants}
    budgets = [b for b in objects.budgets if b.spec.get("tenant") in mine or b.spec.get("tenant") not in existing]
    return routes, tenants, budgets, existing


def _reconcile(ns: str, name: str, verify: bool, objects: seen.Objects, defer: bool) -> dict[str, Any] | None:
    custom = client.CustomObjectsApi(api_client())
    core = client.CoreV1Api(api_client())
    gw = custom.get_namespaced_custom_object(GROUP, VERSION, ns, "llmgateways", name)
    if gw["metadata"].get("deletionTimestamp"):
        return None  # going away (foreground deletion): re-creating children would fight the garbage collector
    generation = gw["metadata"].get("generation")
    try:
        gateway_model = crd.LLMGateway.model_validate(gw)
    except ValidationError as exc:
        # Nothing of this Gateway can be rendered; its children stay as last applied.
        message = field_errors(exc)
        _gateway_failed(ns, gw, INVALID_SPEC, message)
        return {"problems": {f"LLMGateway/{name}": message}, "written": [], "revision": None}
    spec = gateway_model.spec
    route_entries, tenant_entries, budget_entries, existing = members(objects, name)
    # Tenants on a TenantPlan: the plan's fields they do not set, and the plan's budget of each.
    tenant_entries, plan_budgets, plan_statuses = seen.with_plans(tenant_entries, objects.plans)
    routes_raw = [r.raw for r in route_entries]
    tenants_raw = [t.raw for t in tenant_entries]
    budgets_raw = [b.raw for b in budget_entries]
    # Each object on its own: an invalid one is left out (its status says why), the rest still reconciles.
    routes, problems = seen.split(route_entries)
    tenants, tenant_problems = seen.split(tenant_entries)
    budgets, budget_problems = seen.split(budget_entries)
    budgets += plan_budgets
    problems.update(tenant_problems)
    problems.update(budget_problems)
    valid_tenants = {t.name for t in tenants}
    known_keys = keys.existing_key_secrets(api_client(), ns, refresh=verify)
    valid_raw = [t for t in tenants_raw if t["metadata"]["name"] in valid_tenants]
    tenant_keys = {}
    pending = []
    for t in valid_raw:
        known = keys.known_tenant_keys(t, known_keys)
        if known is not None:
            tenant_keys[t["metadata"]["name"]] = known
        else:
            pending.append(t)
    # Key Secrets to create or rotate (thousands on a first render): several requests at once.
    found = parallel(lambda t: keys.ensure_tenant_key(core, t, known_keys), pending)
    tenant_keys.update((t["metadata"]["name"], k) for t, k in zip(pending, found, strict=True))
    hashes = {tenant: list(k.refs) for tenant, k in tenant_keys.items()}
    keys.ensure_pii_hash_key(core, gw)
    master_hash = None
    if spec.master_key_secret_ref is not None:
        ref = spec.master_key_secret_ref
        master_hash, master_problem = keys.master_key_sha256(core, ns, ref.name, ref.key)
        if master_problem:
            problems[f"LLMGateway/{name}"] = Problem("SecretNotFound", master_problem)
    unavailable, route_problems = secret_availability(core, ns, routes)
    try:
        rendered = render_gateway(
            gateway_model,
            routes,
            tenants,
            budgets,
            tenant_key_hashes=hashes,
            revision=0,
            unavailable_secrets=unavailable,
        )
    except ValidationError as exc:
        # Per-object problems are isolated by the renderer; this is the policy as a whole refusing itself.
        _gateway_failed(ns, gw, "PolicyInvalid", field_errors(exc, "policy"))
        raise
    for key, problem in rendered.problems.items():
        if problem.reason == "SecretNotFound":
            continue  # per deployment, from secret_availability
        problems.setdefault(key, problem)
    for budget in budgets:
        if budget.name.startswith(PLAN_BUDGET_PREFIX):
            continue  # a plan's budget: no object of its own, its Tenant's status says it all
        key = object_key("Budget", budget.name)
        tenant = budget.tenant
        if tenant not in existing:
            problems[key] = Problem("TenantNotFound", f"spec.tenant: Tenant {tenant!r} not found in {ns}")
        elif object_key("Tenant", tenant) in problems:
            problems[key] = Problem("TenantNotReady", f"spec.tenant: Tenant {tenant!r} is left out of the policy")
    # The revision rises exactly when the policy's content changes: proxies only take a higher revision.
    gw_status = gw.get("status") or {}
    digest = policy_digest(rendered.policy)
    revision = int(gw_status.get("policyRevision") or 0)
    if gw_status.get("policyHash") != digest:
        revision += 1
    # Before the link: a managed Redis's password is generated here on the Gateway's first reconcile.
    material = trust.ensure_gateway_trust(core, gw)
    try:
        check_policy_size(rendered.policy, material.signer)
        too_large = None
    except PolicyTooLarge as exc:
        too_large = str(exc)
    link = redislink.open_link(api_client(), gw) if too_large is None else None
    # A Gateway whose status was lost (re-created, restored by GitOps) must still climb above what Redis holds.
    if link is not None and link.revision is not None and link.revision > revision:
        revision = link.revision + 1
    rejected: dict[str, str] = {}
    try:
        rendered = dataclasses.replace(rendered, policy=rendered.policy.model_copy(update={"revision": revision}))
        built = build_children(
            gw, rendered, material.signer, with_policy=too_large is None, master_key_sha256=master_hash
        )
        try:
            written = children.sync(api_client(), built, verify=verify)
        except children.ChildRejected as exc:
            written, rejected = exc.written, exc.failed
        deleted = _prune(gw, built, verify)
        # The ConfigMap is the proxies' source at start: publish to Redis only what the ConfigMap holds too.
        policy_cm_ok = too_large is None and f"ConfigMap/{policy_name(name)}" not in rejected
        if link is not None and policy_cm_ok:
            published = link.publish(rendered.policy, material.signer)
        elif too_large is not None:
            published = (False, "PolicyTooLarge", f"{too_large}; the last published policy stays in force")
        else:
            published = (False, "ChildRejected", "the policy ConfigMap was refused; the last policy stays in force")
    finally:
        if link is not None:
            link.close()
    # The policy and children (tens of MiB at 10,000 Tenants) are not needed for the statuses: freed before those.
    checksum = rendered.model_list_checksum
    # Each served model's max_tokens cap, for its ModelRoute's status (one entry per route, not per Tenant).
    max_output_tokens = {m.name: m.max_output_tokens for m in rendered.policy.models}
    del rendered, built
    left_out = "; ".join(f"{k}: {p.reason}: {p.message}" for k, p in sorted(problems.items()))
    if not policy_cm_ok:
        ready = (False, published[1], published[2])
    elif rejected:
        ready = (False, "ChildRejected", "; ".join(f"{k}: {v}" for k, v in sorted(rejected.items())))
    else:
        ready = (True, "Reconciled", "every child applied; see Reconciled for what was left out")
    desired: dict[str, Any] = {
        "observedGeneration": generation,
        # Public: lets `kubegate` and auditors check a policy document (ConfigMap, Redis) offline.
        "policyPublicKey": material.signer.public_key_b64,
        # Public: checks the audit log's signed checkpoints (`kubegate audit verify --public-key`).
        "auditLogPublicKey": material.log_vkey,
        # The Replicas and Workers printer columns.
        "scale": scale_summary(spec),
        "workers": proxy_workers(spec),
        "conditions": [
            st.condition("Ready", *ready),
            st.condition("Reconciled", True, "Applied", left_out or "every object rendered"),
            st.condition("PolicyPublished", *published),
        ],
    }
    if policy_cm_ok:
        # Only a policy the ConfigMap holds counts: a refused one is re-tried under the same revision next time.
        desired.update(policyRevision=revision, policyHash=digest)
    patch_status(ns, "llmgateways", gw, desired)
    _object_statuses(
        ns,
        name,
        routes_raw,
        tenants_raw,
        budgets_raw,
        problems,
        route_problems,
        published,
        policy_cm_ok,
        tenant_keys,
        defer,
        max_output_tokens,
        plan_statuses,
    )
    return {
        "skipped": {k: p.message for k, p in problems.items()},
        "problems": {k: p.reason for k, p in problems.items()},
        "modelListChecksum": checksum,
        "revision": revision if policy_cm_ok else None,
        "written": written,
        "deleted": deleted,
        "rejected": rejected,
    }


def _prune(gw: dict[str, Any], built: list[dict[str, Any]], verify: bool) -> list[str]:
    try:
        return prune.prune_changed(api_client(), gw, built, verify=verify)
    except client.ApiException as exc:
        # Left for the next pass: a child that lingers is no reason to hold back the policy and statuses.
        log.warning("gateway %s: pruning children failed: %s", gw["metadata"]["name"], children.api_message(exc))
        return []


def _gateway_failed(ns: str, gw: dict[str, Any], reason: str, message: str) -> None:
    failed = [st.condition("Ready", False, reason, message), st.condition("Reconciled", False, reason, message)]
    patch_status(ns, "llmgateways", gw, {"observedGeneration": gw["metadata"].get("generation"), "conditions": failed})


def _object_statuses(
    ns: str,
    gateway: str,
    routes_raw: list[dict[str, Any]],
    tenants_raw: list[dict[str, Any]],
    budgets_raw: list[dict[str, Any]],
    problems: dict[str, Problem],
    route_problems: dict[str, list[tuple[str, str]]],
    published: tuple[bool, str, str],
    policy_cm_ok: bool,
    tenant_keys: dict[str, keys.TenantKeys],
    defer: bool,
    max_output_tokens: dict[str, int],
    plan_statuses: dict[str, dict[str, Any]] | None = None,
) -> None:
    """Ready of every object of the Gateway: False with its own reason when it was left out; a served ModelRoute's
    ``maxOutputTokens`` in force (its spec's, else what LiteLLM's model map gives), removed when it is not served.

    Each object's desired status is decided and dropped in turn: only the writes needed are kept (at 10,000 Tenants
    and Budgets, a list of every desired status was tens of MiB at the operator's peak).
    """

    def desired_statuses() -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
        for route in routes_raw:
            gen = route["metadata"].get("generation")
            problem = problems.get(object_key("ModelRoute", route["metadata"]["name"]))
            if problem is not None:
                desired = st.ready_status(gen, False, problem.reason, problem.message)
            else:
                desired = route_status(route, gateway, route_problems.get(route["metadata"]["name"], []))
            # None (not served: left out, or its model is another route's) removes it (a merge patch).
            served = problem is None and route["spec"].get("modelName") in max_output_tokens
            desired["maxOutputTokens"] = max_output_tokens[route["spec"]["modelName"]] if served else None
            yield "modelroutes", route, desired
        for tenant in tenants_raw:
            gen = tenant["metadata"].get("generation")
            problem = problems.get(object_key("Tenant", tenant["metadata"]["name"]))
            if problem is not None:
                desired = st.ready_status(gen, False, problem.reason, problem.message)
            elif not policy_cm_ok:
                desired = st.ready_status(gen, False, published[1], f"policy of LLMGateway {gateway} not published")
            else:
                desired = st.ready_status(gen, True, "Rendered", f"in the policy of LLMGateway {gateway}")
            # Ahead of the data plane by nothing: proxies refuse from expiresAt on; this shows it by the next render.
            desired["state"] = st.tenant_state(tenant.get("spec") or {})
            # Its TenantPlan and the values in force; None removes them (a merge patch) when it names none.
            on_plan = (plan_statuses or {}).get(tenant["metadata"]["name"]) or {}
            desired["plan"] = (tenant.get("spec") or {}).get("plan")
            desired["effective"] = on_plan.get("effective")
            found = tenant_keys.get(tenant["metadata"]["name"])
            if found is not None:
                # Key ids (hash prefixes, not secrets): the current one, and the rotated-out one with its expiry.
                desired["keys"] = _keys_status((tenant.get("status") or {}).get("keys"), found)
            nonce = (tenant["metadata"].get("annotations") or {}).get(ROTATE_ANNOTATION)
            if nonce and problem is None:
                desired["keyRotation"] = nonce  # the nonce handled (not a secret): later events skip the re-render
            yield "tenants", tenant, desired
        for budget in budgets_raw:
            problem = problems.get(object_key("Budget", budget["metadata"]["name"]))
            if problem is not None:
                # Budgets that are rendered get their Ready from the spend refresh (reconcile.budgets).
                gen = budget["metadata"].get("generation")
                condition = st.condition("Ready", False, problem.reason, problem.message)
                yield "budgets", budget, {"observedGeneration": gen, "conditions": [condition]}

    decided = [w for plural, obj, desired in desired_statuses() if (w := status_write(ns, plural, obj, desired))]
    if defer:
        status_sender.send_later(decided)
    else:
        send_statuses(decided)


def _keys_status(current: dict[str, Any] | None, found: keys.TenantKeys) -> dict[str, Any]:
    """The Tenant's ``status.keys`` as it should read, compared like for like with what it reads now (so an unchanged
    reconcile writes nothing): fields kept from before (a past recreation), a null only to remove a field."""
    current = current or {}
    merged = {**current, **found.status}
    return {k: v for k, v in merged.items() if v is not None or k in current}


def mark_gateway_missing(ns: str, plural: str, body: dict[str, Any], gateway: str) -> None:
    desired = st.ready_status(
        body["metadata"].get("generation"), False, "GatewayNotFound", f"LLMGateway {gateway!r} not found in {ns}"
    )
    if plural == "modelroutes":
        desired["maxOutputTokens"] = None  # served by no Gateway: no cap in force
    patch_status(ns, plural, body, desired)


def orphans(ns: str, gateway: str) -> None:
    """The Gateway is gone: its Tenants and ModelRoutes say so (their Ready column turns False)."""
    for plural in ("tenants", "modelroutes"):
        for obj in list_objects(ns, plural):
            if obj["spec"]["gateway"] == gateway and not obj["metadata"].get("deletionTimestamp"):
                mark_gateway_missing(ns, plural, obj, gateway)


def snapshot(memo: Any, namespace: str) -> seen.Objects | None:
    """The namespace's objects from the informers' store (None without one: the reconcile lists)."""
    watched = getattr(memo, "watched", None)
    return watched.store.snapshot(namespace) if watched is not None else None


async def rerender(memo: Any, namespace: str, gateway: str, *, verify: bool = False) -> bool:
    """Reconcile ``gateway``, coalesced with concurrent requests; False when it does not exist or is going."""

    coalescer: Coalescer = memo.rerenders
    return bool(await coalescer.run((namespace, gateway), lambda: _rerender_run(memo, namespace, gateway, verify)))


async def _rerender_run(memo: Any, namespace: str, gateway: str, verify: bool) -> bool:
    watched = getattr(memo, "watched", None)
    if watched is not None:
        await watched.ready(namespace)
    # Taken when the run starts: events after this point request another run.
    objects = snapshot(memo, namespace)
    try:
        done = await asyncio.to_thread(
            reconcile, namespace, gateway, verify=verify, objects=objects, defer_statuses=True
        )
        return done is not None
    except client.ApiException as exc:
        if exc.status != 404:
            raise
        return False


def failed_conditions(exc: client.ApiException, uid: str | None) -> list[dict[str, Any]]:
    """Ready and Reconciled of a Gateway whose reconcile the API server refused, with the server's own message.

    kopf writes these (not ``patch_status``): the status last written by this process is no longer what the
    Gateway shows, so the next successful reconcile must write again.
    """
    forget(uid)
    failed = children.api_message(exc)
    return [
        {**st.condition("Ready", False, "ApiError", failed), "lastTransitionTime": st.now()},
        {**st.condition("Reconciled", False, "ApiError", failed), "lastTransitionTime": st.now()},
    ]


def gateway_seen(memo: Any, namespace: str, name: str, type: str | None, deleting: bool) -> bool:
    """Track the live Gateways the periodic loops visit; True when the Gateway is gone (its objects say so)."""
    key = (namespace, name)
    if type == "DELETED" or deleting:
        memo.gateways.discard(key)
        return type == "DELETED"
    memo.gateways.add(key)
    return False


async def related_changed(
    plural: str, namespace: str, spec: dict[str, Any], type: str | None, body: Any, memo: Any
) -> None:
    """A ModelRoute or Tenant changed: re-render its Gateway (or say on the object that the Gateway is missing)."""
    gateway = (spec or {}).get("gateway")
    raw = dict(body)
    if type == "DELETED":
        forget(raw["metadata"].get("uid"))
    nonce = (raw["metadata"].get("annotations") or {}).get(ROTATE_ANNOTATION)
    pending_rotation = nonce is not None and nonce != (raw.get("status") or {}).get("keyRotation")
    if not gateway or (st.already_observed(type, raw) and not pending_rotation):
        return
    await request_rerender(memo, namespace, gateway, plural, raw, type)


async def plan_changed(namespace: str, name: str, type: str | None, memo: Any) -> None:
    """A TenantPlan changed: re-render every Gateway with a Tenant on it (each once)."""
    objects = snapshot(memo, namespace)
    if objects is None:
        objects = await asyncio.to_thread(list_namespace, namespace)
    gateways = sorted({g for t in seen.tenants_on_plan(objects, name) if (g := t.spec.get("gateway"))})
    for gateway in gateways:
        if seen.gateway_live(memo.indexes, namespace, gateway):
            coalescer: Coalescer = memo.rerenders
            coalescer.request((namespace, gateway), lambda g=gateway: _rerender_run(memo, namespace, g, False))


async def request_rerender(
    memo: Any, namespace: str, gateway: str, plural: str, raw: dict[str, Any], type: str | None
) -> None:
    """Ask for a re-render of ``gateway`` without waiting for it; an object of a missing Gateway says so."""
    if seen.gateway_live(memo.indexes, namespace, gateway):
        coalescer: Coalescer = memo.rerenders
        coalescer.request((namespace, gateway), lambda: _rerender_run(memo, namespace, gateway, False))
    elif type != "DELETED":
        await asyncio.to_thread(mark_gateway_missing, namespace, plural, raw, gateway)
