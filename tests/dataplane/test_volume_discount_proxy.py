"""Volume discounts through a real proxy, Redis and the echo upstream: the Gateway's usage this month at list prices
picks a tier (``spec.volumeDiscounts``) that lowers reservations and spend; the list price stays beside it in the
audit record (``decisions.discount``), the budget hash (``spent_list``) and ``kubegate usage``.

Price: output 0.001 USD/token; the echo answers "abcdefgh" with 2 completion tokens and requests ask
``max_tokens=2``, so a request costs 0.002 USD at list prices and its reservation equals that. Tiers: 10 % from
0.003 USD of usage, 50 % from 0.007 USD.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import redis
from gateway_operator.report.build import build_report
from gateway_operator.report.render import to_terminal as report_to_terminal
from gateway_operator.report.usage import read_usage, read_volume, to_terminal
from rich.console import Console

from gateway_plugins.policy.keys import GatewayKeys
from gateway_plugins.policy.periods import period_bounds, period_key
from gateway_plugins.policy.store import keys_of, policy_keys, publish_policy_sync
from tests.dataplane.contract_stack import wait_for_records
from tests.harness.proxy import SIGNER
from tests.harness.rendered import cr, echo_route, render_proxy

GW = "volume"
KEYS = GatewayKeys("default", GW)
TENANTS = ("paying", "other", "thin")


def key(tenant: str) -> str:
    return f"sk-volume-{tenant}-0123456789"


def ask(proxy, tenant: str, model: str = "priced") -> httpx.Response:
    body = {"model": model, "max_tokens": 2, "messages": [{"role": "user", "content": "abcdefgh"}]}
    return httpx.post(
        proxy.base_url + "/v1/chat/completions",
        json=body,
        headers={"authorization": f"Bearer {key(tenant)}"},
        timeout=60,
    )


def settled(client, count: int) -> None:
    """Wait until ``count`` requests have left their audit record (written after their settle): the next request's
    admit then reads a volume that includes them."""
    assert len(wait_for_records(client, count, KEYS.audit_stream)) >= count


def test_tiers_lower_reservations_spend_and_reports(make_proxy, echo_upstream, redis_server):
    objects = [
        cr(
            "LLMGateway",
            GW,
            {"volumeDiscounts": [{"fromUSD": "0.003", "percent": "10"}, {"fromUSD": "0.007", "percent": "50"}]},
        ),
        echo_route(GW, "priced", echo_upstream.base_url, upstream_model="priced-echo", output_price="0.001"),
        cr("ModelRoute", "auto", {"gateway": GW, "modelName": "auto", "candidates": [{"model": "priced", "tier": 1}]}),
        *(cr("Tenant", t, {"gateway": GW, "allowedModels": ["priced", "auto"]}) for t in TENANTS),
        cr("Budget", "paying-b", {"tenant": "paying", "limitUSD": "1"}),
        # 0.0015 USD: a request's worst case (0.002 at list prices) fits only at the 50 % tier.
        cr("Budget", "thin-b", {"tenant": "thin", "limitUSD": "0.0015"}),
    ]
    rendered = render_proxy(objects, keys={t: key(t) for t in TENANTS})
    # The month's volume read at every admit (not every 5 s), so each request sees the ones settled before it.
    env = {**rendered.env, "KUBEGATE_VOLUME_REFRESH_SECONDS": "0"}
    proxy = make_proxy(rendered.config, rendered.policy, redis_url=redis_server.url, env=env)
    client = redis.Redis.from_url(redis_server.url)
    volume_key = KEYS.volume(datetime.now(UTC))
    client.delete(volume_key)
    budgets = {b.name: b for b in rendered.policy.budgets}
    try:
        # Usage 0, then 0.002: no tier yet. "other" has no budget, and its usage counts all the same.
        assert ask(proxy, "paying").status_code == 200
        settled(client, 1)
        assert ask(proxy, "other").status_code == 200
        settled(client, 2)
        assert int(client.get(volume_key)) == 4000  # micro-USD at list prices, whoever paid
        # Usage 0.004: 10 %. Thin's worst case is then 0.0018: still above its 0.0015.
        refused = ask(proxy, "thin", "auto")
        assert refused.status_code == 429 and refused.json()["error"]["code"] == "no_candidate_fits", refused.text
        assert "0.001800 USD" in refused.json()["error"]["message"]
        settled(client, 3)
        tenth = ask(proxy, "paying")
        assert tenth.status_code == 200
        settled(client, 4)
        assert ask(proxy, "other").status_code == 200
        settled(client, 5)
        # Usage 0.008: 50 %; thin's reservation is now 0.001 and fits.
        half = ask(proxy, "paying")
        assert half.status_code == 200
        settled(client, 6)
        thin = ask(proxy, "thin", "auto")
        assert thin.status_code == 200, thin.text
        settled(client, 7)

        # Spend is discounted, the list price kept beside it.
        paying = budgets["paying-b"]
        spend = client.hgetall(period_key(KEYS, paying, period_bounds(paying)[0]))
        assert int(spend[b"spent"]) == 2000 + 1800 + 1000 and int(spend[b"spent_list"]) == 6000
        assert int(spend[b"reserved"]) == 0
        assert int(client.get(volume_key)) == 6 * 2000

        records = {r["request_id"]: r for r in wait_for_records(client, 7, KEYS.audit_stream)}
        for resp, percent, cost in [(tenth, 10, 0.0018), (half, 50, 0.001), (thin, 50, 0.001)]:
            record = records[resp.headers["x-kubegate-request-id"]]
            assert record["cost_usd"] == pytest.approx(cost)
            assert record["decisions"]["discount"] == {"percent": percent, "list_cost_usd": pytest.approx(0.002)}

        # kubegate report (from the audit records): charged and list price per row, and the total saved.
        now = datetime.now(UTC)
        report = build_report(list(records.values()), now - timedelta(hours=1), now + timedelta(minutes=1), "OK")
        (row,) = [r for r in report.usage if r.tenant == "paying"]
        assert row.cost_usd == pytest.approx(0.0048) and row.list_usd == pytest.approx(0.006)
        assert report.total_list == pytest.approx(0.012) and report.total_cost == pytest.approx(0.0096)
        out = io.StringIO()
        report_to_terminal(report, Console(file=out, width=80))
        assert "list price 0.012000 USD" in out.getvalue()

        assert publish_policy_sync(client, rendered.policy, SIGNER)
        lines = {u.budget: u for u in read_usage(redis_server.url, GW, public_key=SIGNER.public_key_b64)}
        assert lines["paying-b"].spent_usd == pytest.approx(0.0048) and lines["paying-b"].list_usd == pytest.approx(
            0.006
        )
        volume = read_volume(redis_server.url, GW, public_key=SIGNER.public_key_b64)
        assert volume is not None and volume.percent == 50 and volume.month_usd == pytest.approx(0.012)
        out = io.StringIO()
        to_terminal(list(lines.values()), f"default/{GW}", Console(file=out, width=80), volume)
        text = out.getvalue()
        assert "volume discount 50%" in text and "0.0060" in text and "0.0048" in text
    finally:
        client.delete(volume_key, *policy_keys(keys_of(rendered.policy))[:2])
        client.close()
