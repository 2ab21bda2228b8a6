"""Refusals carry kubegate's OpenAI-style error code in the body, not just the HTTP status."""

from __future__ import annotations

import openai
import pytest

from tests.dataplane.test_hooks_e2e import KEY_A, _setup


@pytest.fixture
def proxy(make_proxy, echo_upstream):
    rendered = _setup(echo_upstream)
    return make_proxy(rendered.config, rendered.policy, env=rendered.env)


def test_refusal_bodies_carry_kubegate_codes(proxy, openai_client):
    with pytest.raises(openai.AuthenticationError) as exc:
        openai_client(proxy, "sk-wrong").chat.completions.create(
            model="echo-model", messages=[{"role": "user", "content": "x"}]
        )
    assert exc.value.status_code == 401
    assert exc.value.body["code"] == "invalid_api_key"

    with pytest.raises(openai.NotFoundError) as exc:
        openai_client(proxy, KEY_A).chat.completions.create(
            model="other-model", messages=[{"role": "user", "content": "x"}]
        )
    assert exc.value.status_code == 404
    assert exc.value.body["code"] == "model_not_found"
