"""``kubegate usage``: each tenant's spend this period, budget state and what is left, read from Redis."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from gateway_plugins.policy.budget_state import read_budget_state, read_model_spend
from gateway_plugins.policy.keys import GatewayKeys
from gateway_plugins.policy.schema import PolicyError
from gateway_plugins.policy.signing import PolicyVerifier
from gateway_plugins.policy.store import load_document, policy_keys


@dataclass(frozen=True, slots=True)
class UsageLine:
    tenant: str
    budget: str | None
    spent_usd: float | None
    reserved_usd: float | None
    limit_usd: float | None
    remaining_usd: float | None
    percent: float | None  # of the nearer limit when the Budget has both
    state: str
    resets: str | None
    spent_tokens: int | None = None
    limit_tokens: int | None = None  # None: no token limit
    remaining_tokens: int | None = None
    # This period's spend per served public model (USD): what a cost-routed name (auto) chose, among others.
    by_model: dict[str, float] | None = None
    # This period's spend at list prices, beside ``spent_usd`` (discounted), when the Gateway has volume discounts.
    list_usd: float | None = None


@dataclass(frozen=True, slots=True)
class Volume:
    """The Gateway's usage this UTC month at list prices and the volume discount it earns now."""

    month_usd: float
    percent: float


class NoPolicy(RuntimeError):
    pass


def _verifier(public: str | None = None) -> PolicyVerifier:
    """The Gateway's policy public key (``status.policyPublicKey``): a document in Redis is only read once verified.

    ``public``: given (``kubegate dev``'s, from its state file), else ``$KUBEGATE_POLICY_PUBLIC_KEY``."""
    public = public or os.environ.get("KUBEGATE_POLICY_PUBLIC_KEY")
    if not public:
        raise NoPolicy(
            "set KUBEGATE_POLICY_PUBLIC_KEY to the gateway's policy public key "
            "(kubectl get llmgateway <name> -o jsonpath='{.status.policyPublicKey}')"
        )
    return PolicyVerifier.from_public_b64(public)


async def _read(url: str, gateway: str, namespace: str = "default", public_key: str | None = None) -> list[UsageLine]:
    from gateway_plugins.policy.redis_client import connect_async

    keys = GatewayKeys(namespace, gateway)
    conn = connect_async(url, socket_connect_timeout=5, socket_timeout=10)
    try:
        raw = await conn.get(policy_keys(keys)[0])
        if raw is None:
            raise NoPolicy(
                f"no policy for gateway {namespace}/{gateway} in this Redis (are the gateway name and namespace right?)"
            )
        try:
            policy = load_document(raw, _verifier(public_key))
        except PolicyError as exc:
            raise NoPolicy(str(exc)) from None
        lines = []
        budgeted = set()
        # A suspended tenant, or one whose trial ended, is refused whatever its budget says: that is its state.
        now = datetime.now(UTC).timestamp()
        lifecycle = {t.id: t.lifecycle(now) for t in policy.tenants}
        for budget in policy.budgets:
            state = await read_budget_state(conn, keys, budget)
            by_model = await read_model_spend(conn, keys, budget)
            limit = float(Decimal(budget.limit_usd)) if budget.limit_usd is not None else None
            tokens = budget.limit_tokens
            budgeted.add(budget.tenant)
            lines.append(
                UsageLine(
                    tenant=budget.tenant,
                    budget=budget.name,
                    spent_usd=state.spent_usd,
                    reserved_usd=state.reserved_usd,
                    limit_usd=limit,
                    remaining_usd=None if limit is None else max(0.0, limit - state.spent_usd),
                    percent=state.percent,
                    state=state.state
                    if lifecycle.get(budget.tenant, "active") == "active"
                    else lifecycle[budget.tenant],
                    resets=state.period_end.isoformat(),
                    spent_tokens=state.spent_tokens,
                    limit_tokens=tokens,
                    remaining_tokens=None if tokens is None else max(0, tokens - state.spent_tokens),
                    by_model=by_model,
                    list_usd=state.spent_list_usd,
                )
            )
        for tenant in policy.tenants:
            if tenant.id not in budgeted:
                state = "no budget" if lifecycle[tenant.id] == "active" else lifecycle[tenant.id]
                lines.append(UsageLine(tenant.id, None, None, None, None, None, None, state, None))
        return sorted(lines, key=lambda u: (u.tenant, u.budget or ""))
    finally:
        await conn.aclose()


def read_usage(url: str, gateway: str, namespace: str = "default", *, public_key: str | None = None) -> list[UsageLine]:
    return asyncio.run(_read(url, gateway, namespace, public_key))


async def _read_volume(url: str, gateway: str, namespace: str, public_key: str | None) -> Volume | None:
    import redis.asyncio as aioredis

    keys = GatewayKeys(namespace, gateway)
    conn = aioredis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=10)
    try:
        raw = await conn.get(policy_keys(keys)[0])
        if raw is None:
            return None
        policy = load_document(raw, _verifier(public_key))
        if not policy.volume_discounts:
            return None
        micro = int(await conn.get(keys.volume(datetime.now(UTC))) or 0)
        return Volume(micro / 1_000_000, policy.discount_basis_points(micro) / 100)
    finally:
        await conn.aclose()


def read_volume(url: str, gateway: str, namespace: str = "default", *, public_key: str | None = None) -> Volume | None:
    """None when the Gateway has no volume discounts."""
    return asyncio.run(_read_volume(url, gateway, namespace, public_key))


def time_left(until_iso: str, now: datetime | None = None) -> str:
    """``26d 4h``, ``5h 12m``, ``12m``: short, and the same whatever the Budget's timezone."""
    seconds = max(0, int((datetime.fromisoformat(until_iso) - (now or datetime.now(UTC))).total_seconds()))
    days, hours, minutes = seconds // 86400, seconds % 86400 // 3600, seconds % 3600 // 60
    if days:
        return f"{days}d {hours}h"
    return f"{hours}h {minutes}m" if hours else f"{minutes}m"


def to_terminal(lines: list[UsageLine], gateway: str, console, volume: Volume | None = None) -> None:
    """One row per tenant and budget, in USD; fits an 80-column terminal (``reserved`` only while some is)."""
    from gateway_operator.report.render import terminal_table

    reserving = any(u.reserved_usd for u in lines)
    columns = [("tenant", "name"), ("budget", "name"), ("spent", "number")]
    columns += [("reserved", "number")] if reserving else []
    columns += [("limit", "number"), ("left", "number"), ("%", "number"), ("state", "text"), ("resets in", "time")]
    table = terminal_table(f"kubegate usage: {gateway}, this period (USD)", columns)
    money = lambda v: "-" if v is None else "<0.0001" if 0 < v < 0.00005 else f"{v:.4f}"  # noqa: E731
    for u in lines:
        row = [u.tenant, u.budget or "-", money(u.spent_usd)]
        row += [money(u.reserved_usd)] if reserving else []
        row += ["-" if u.limit_usd is None else f"{u.limit_usd:g}", money(u.remaining_usd)]
        row += ["-" if u.percent is None else f"{u.percent:.1f}", u.state, time_left(u.resets) if u.resets else "-"]
        table.add_row(*row)
    console.print(table)
    limited = [u for u in lines if u.limit_tokens is not None]
    if limited:
        # A second table, not more columns: the first one already fills 80 columns.
        tokens = terminal_table(
            f"kubegate usage: {gateway}, this period (tokens)",
            [("tenant", "name"), ("budget", "name"), ("spent", "number"), ("limit", "number"), ("left", "number")],
        )
        for u in limited:
            tokens.add_row(
                u.tenant, u.budget or "-", str(u.spent_tokens or 0), str(u.limit_tokens), str(u.remaining_tokens)
            )
        console.print(tokens)
    if volume is not None:
        # Volume discounts: what each budget spent at list prices beside what it was charged.
        discounts = terminal_table(
            f"kubegate usage: {gateway}, volume discount {volume.percent:g}% "
            f"(this month {money(volume.month_usd)} USD at list prices)",
            [("tenant", "name"), ("budget", "name"), ("spent", "number"), ("list", "number"), ("saved", "number")],
        )
        for u in lines:
            if u.list_usd is not None:
                saved = max(0.0, u.list_usd - (u.spent_usd or 0.0))
                discounts.add_row(u.tenant, u.budget or "-", money(u.spent_usd), money(u.list_usd), money(saved))
        console.print(discounts)
    spent_on = [u for u in lines if u.by_model]
    if spent_on:
        # Which models served each budget's spend (the choices of a cost-routed name such as auto among them).
        models = terminal_table(
            f"kubegate usage: {gateway}, this period by served model (USD)",
            [("tenant", "name"), ("budget", "name"), ("model", "name"), ("spent", "number")],
        )
        for u in spent_on:
            for model, usd in u.by_model.items():
                models.add_row(u.tenant, u.budget or "-", model, money(usd))
        console.print(models)
