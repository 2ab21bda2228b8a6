"""Budget thresholds at 50/80/95 %: real proxy spends, the operator (as its ServiceAccount, real API server) sees it
in Redis and notifies each threshold once, in order: Events, a signed webhook to a local receiver, and the proxy's
``kubegate_budget_threshold_reached`` series."""

from __future__ import annotations

import base64
import json
from decimal import Decimal

from gateway_operator.crd import models as crd
from gateway_operator.dev import point_at_echo
from gateway_operator.render import render_gateway
from kubernetes import client

from gateway_plugins.policy import hash_key
from tests.operator.test_notify_webhook import Receiver, valid_signature
from tests.operator.test_operator_e2e import GROUP, VERSION, _wait, operator_kubeconfig  # noqa: F401
from tests.operator.test_operator_status import _obj, _secret, _table_row, operator  # noqa: F401

SIGNING_KEY = "whsec-test-4b1d"
PROMPT = [{"role": "user", "content": "count my spend please"}]


def _budget(custom, ns: str) -> dict:
    return custom.get_namespaced_custom_object(GROUP, VERSION, ns, "budgets", "m")


def _notify_events(core, ns: str) -> list[str]:
    """Messages of the Budget's BudgetNotify Events in creation order (etcd revision order)."""
    events = [e for e in core.list_namespaced_event(ns).items if e.involved_object.name == "m"]
    events.sort(key=lambda e: int(e.metadata.resource_version))
    return [e.message for e in events if e.reason == "BudgetNotify"]


def test_thresholds_50_80_95_each_notify_once_in_order(
    operator,  # noqa: F811
    admin_api,
    namespace,
    redis_server,
    echo_upstream,
    make_proxy,
    openai_client,
):
    custom = client.CustomObjectsApi(admin_api)
    core = client.CoreV1Api(admin_api)
    receiver = Receiver()
    try:
        _secret(core, namespace, "redis-url", {"url": redis_server.url})
        _secret(core, namespace, "hook", {"signing-key": SIGNING_KEY})
        gw_name = f"alerts-{namespace}"
        gw_spec = {"redis": {"mode": "external", "urlSecretRef": {"name": "redis-url", "key": "url"}}}
        route_spec = {
            "gateway": gw_name,
            "modelName": "echo-model",
            "deployments": [
                {
                    "name": "d1",
                    "model": "echo-model",
                    "region": "eu-west-1",
                    "inputCostPerToken": "0.001",
                    "outputCostPerToken": "0.002",
                }
            ],
        }
        tenant_spec = {"gateway": gw_name, "allowedModels": ["*"]}
        # A large limit first: the first request measures the cost of one request, then the limit is set to 11.5
        # requests' worth so each request adds 8.7 % and 50, 80 and 95 % are each crossed by a different request.
        budget_spec = {
            "tenant": "t",
            "limitUSD": "1000",
            "thresholds": [{"percent": p, "action": "notify"} for p in (50, 80, 95)],
            "webhook": {"url": receiver.url, "secretRef": {"name": "hook", "key": "signing-key"}},
        }
        objs = [
            _obj("LLMGateway", gw_name, gw_spec),
            _obj("ModelRoute", "echo", route_spec),
            _obj("Tenant", "t", tenant_spec),
            _obj("Budget", "m", budget_spec),
        ]
        for obj in objs:
            custom.create_namespaced_custom_object(GROUP, VERSION, namespace, obj["kind"].lower() + "s", obj)

        # The proxy's LiteLLM config is the operator's own rendering (as the Deployment gets it), served by the echo
        # upstream; its policy (tenant key hash included) comes from Redis, published by the operator.
        models = [
            crd.KINDS[o["kind"]].model_validate({**o, "metadata": {**o["metadata"], "namespace": namespace}})
            for o in objs
        ]
        rendered = render_gateway(
            models[0], [models[1]], [models[2]], [models[3]], tenant_key_hashes={"t": [hash_key("x")]}, revision=1
        )
        config = point_at_echo(rendered.litellm_config, echo_upstream.api_base())
        key_secret = _wait(
            "tenant key Secret",
            lambda: next(
                (s for s in core.list_namespaced_secret(namespace).items if s.metadata.name == "t-kubegate-key"), None
            ),
        )
        key = base64.b64decode(key_secret.data["api-key"]).decode()
        # The operator signs what it publishes: the proxy trusts the key the LLMGateway's status names.
        public_key = _wait(
            "the LLMGateway's policy public key",
            lambda: (
                custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "llmgateways", gw_name).get("status")
                or {}
            ).get("policyPublicKey"),
        )
        proxy = make_proxy(
            config,
            None,
            redis_url=redis_server.url,
            env={
                "KUBEGATE_GATEWAY": gw_name,
                "KUBEGATE_NAMESPACE": namespace,
                "KUBEGATE_POLICY_PUBLIC_KEY": public_key,
            },
        )
        llm = openai_client(proxy, key)

        def spend_once(previous: str) -> dict:
            llm.chat.completions.create(model="echo-model", messages=PROMPT)
            return _wait(
                "budget status refreshed with the new spend",
                lambda: (
                    (s := _budget(custom, namespace).get("status") or {}).get("spentUSD", previous) != previous and s
                ),
            )

        status = _wait("budget refreshed", lambda: (_budget(custom, namespace).get("status") or {}).get("spentUSD"))
        status = spend_once(status)
        per_request = Decimal(status["spentUSD"])
        assert per_request > 0
        limit = per_request * Decimal("11.5")
        custom.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, "budgets", "m", {"spec": {"limitUSD": f"{limit:.6f}"}}
        )
        _wait("new limit applied", lambda: (_budget(custom, namespace).get("status") or {}).get("percent", 0) > 8)

        seen: list[tuple[float, list[str]]] = []
        while status["percent"] < 95:
            status = spend_once(status["spentUSD"])
            seen.append((status["percent"], _notify_events(core, namespace)))
        # Each threshold notified by the refresh after the request that crossed it, and only then.
        for percent, messages in seen:
            expected = [p for p in (50, 80, 95) if percent >= p]
            assert [f"{p}% threshold" in m for p, m in zip(expected, messages, strict=True)] == [True] * len(expected)
        assert status["thresholdsReached"]["percents"] == [50.0, 80.0, 95.0]

        # One more request, one more refresh: nothing is notified twice.
        status = spend_once(status["spentUSD"])
        messages = _notify_events(core, namespace)
        assert len(messages) == 3, messages
        assert ["50% threshold" in messages[0], "80% threshold" in messages[1], "95% threshold" in messages[2]] == [
            True
        ] * 3

        # The webhook: three signed deliveries, in threshold order.
        _wait("three webhook deliveries", lambda: len(receiver.requests) >= 3)
        assert len(receiver.requests) == 3
        docs = []
        for headers, body in receiver.requests:
            assert valid_signature(SIGNING_KEY.encode(), headers, body)
            docs.append(json.loads(body))
        assert [d["threshold_percent"] for d in docs] == [50.0, 80.0, 95.0]
        assert {d["budget"] for d in docs} == {"m"} and {d["tenant"] for d in docs} == {"t"}

        # kubectl: the Budget shows what is left and when it resets; the Tenant its spend and budget state.
        row = _table_row(admin_api, namespace, "budgets", "m")
        assert Decimal(row["Remaining"]) == max(Decimal(0), Decimal(f"{limit:.6f}") - Decimal(status["spentUSD"]))
        assert row["Resets"] and row["State"] == "notify"
        tenant_row = _table_row(admin_api, namespace, "tenants", "t")
        assert (tenant_row["Spent"], tenant_row["Budget"]) == (status["spentUSD"], "notify")

        # The proxy's series an alert rule can use: every threshold reached (as of the last admission).
        text = proxy.metrics()
        for p in ("50", "80", "95"):
            line = f'kubegate_budget_threshold_reached{{action="notify",budget="m",tenant="t",threshold="{p}"}} 1.0'
            assert line in text, [ln for ln in text.splitlines() if "threshold_reached" in ln]
    finally:
        receiver.close()
