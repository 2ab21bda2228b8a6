"""``kubegate usage``: each tenant's spend this period, budget state and what is left, read from Redis."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from decimal import Decimal

from gateway_plugins.policy.budget_state import read_budget_state
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
    percent: float | None
    state: str
    resets: str | None


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
    import redis.asyncio as aioredis

    keys = GatewayKeys(namespace, gateway)
    conn = aioredis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=10)
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
        for budget in policy.budgets:
            state = await read_budget_state(conn, keys, budget)
            limit = float(Decimal(budget.limit_usd))
            budgeted.add(budget.tenant)
            lines.append(
                UsageLine(
                    tenant=budget.tenant,
                    budget=budget.name,
                    spent_usd=state.spent_usd,
                    reserved_usd=state.reserved_usd,
                    limit_usd=limit,
                    remaining_usd=max(0.0, limit - state.spent_usd),
                    percent=state.percent,
                    state=state.state,
                    resets=state.period_end.isoformat(),
                )
            )
        for tenant in policy.tenants:
            if tenant.id not in budgeted:
                lines.append(UsageLine(tenant.id, None, None, None, None, None, None, "no budget", None))
        return sorted(lines, key=lambda u: (u.tenant, u.budget or ""))
    finally:
        await conn.aclose()


def read_usage(url: str, gateway: str, namespace: str = "default", *, public_key: str | None = None) -> list[UsageLine]:
    return asyncio.run(_read(url, gateway, namespace, public_key))


def to_terminal(lines: list[UsageLine], gateway: str, console) -> None:
    from rich.table import Table

    table = Table(title=f"kubegate usage: gateway {gateway}, this period")
    for name in ("tenant", "budget", "spent USD", "reserved USD", "limit USD", "remaining USD", "%", "state", "resets"):
        table.add_column(name, justify="right" if "USD" in name or name == "%" else "left")
    money = lambda v: "-" if v is None else f"{v:.4f}"  # noqa: E731
    for u in lines:
        table.add_row(
            u.tenant,
            u.budget or "-",
            money(u.spent_usd),
            money(u.reserved_usd),
            "-" if u.limit_usd is None else f"{u.limit_usd:g}",
            money(u.remaining_usd),
            "-" if u.percent is None else f"{u.percent:.1f}",
            u.state,
            u.resets or "-",
        )
    console.print(table)
