"""The Budget object and the policy budget it renders to refuse the same specs with the same message: one set of
checks (``gateway_plugins.policy.schema``), so the operator never publishes a budget the proxies would refuse."""

from __future__ import annotations

import pydantic
import pytest
from gateway_operator.crd import models as crd

from gateway_plugins.policy import schema

BAD = {
    "zone": ({"timezone": "Mars/Olympus"}, "unknown IANA time zone 'Mars/Olympus'"),
    "order": (
        {"thresholds": [{"percent": 80, "action": "notify"}, {"percent": 50, "action": "notify"}]},
        "strictly ascending",
    ),
    "repeat": (
        {"thresholds": [{"percent": 50, "action": "notify"}, {"percent": 50, "action": "block"}]},
        "strictly ascending",
    ),
    "cycle": ({"downgrade": {"a": "b", "b": "c", "c": "a"}}, "cycle: a -> b -> c -> a"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_crd_and_policy_refuse_alike(case: str):
    extra, message = BAD[case]
    with pytest.raises(pydantic.ValidationError, match=message):
        crd.BudgetSpec.model_validate({"tenant": "t", "limitUSD": "1", **extra})
    with pytest.raises(pydantic.ValidationError, match=message):
        schema.Budget.model_validate({"name": "b", "tenant": "t", "limit_usd": "1", **extra})


def test_good_spec_passes_both():
    good = {"timezone": "Europe/Berlin", "downgrade": {"a": "b", "b": "c"}}
    crd.BudgetSpec.model_validate({"tenant": "t", "limitUSD": "1", **good})
    schema.Budget.model_validate({"name": "b", "tenant": "t", "limit_usd": "1", **good})
