"""Key rotation grace period through a real proxy: the policy rendered from CR objects lists the rotated-out key
with its expiry (as the operator renders it, see test_operator_status.test_key_rotation_grace_period_and_deleted_secret);
both keys work until then, and the proxy stops the old one at its expiry by itself, with no new policy."""

from __future__ import annotations

import time

import openai

from gateway_plugins.policy.schema import KeyRef, hash_key
from tests.harness.procs import wait_until
from tests.harness.rendered import UPSTREAM_KEY, ProxyInputs, cr, render_proxy

OLD, NEW = "kg-old-key-0123456789abcdef", "kg-new-key-0123456789abcdef"


def _objects(echo_base: str) -> list[dict]:
    deployment = {
        "name": "a",
        "model": "echo",
        "region": "eu-west-1",
        "apiBase": echo_base,
        "apiKeySecretRef": UPSTREAM_KEY,
    }
    return [
        cr("LLMGateway", "main", {}),
        # No price anywhere for the echo model: a route must say it is free.
        cr(
            "ModelRoute",
            "echo",
            {"gateway": "main", "modelName": "echo-model", "deployments": [deployment], "free": True},
        ),
        cr("Tenant", "team", {"gateway": "main", "allowedModels": ["*"], "keyRotationGracePeriod": "10m"}),
    ]


def _works(proxy, key: str) -> bool:
    api = openai.OpenAI(base_url=proxy.base_url + "/v1", api_key=key, max_retries=0, timeout=60)
    try:
        api.chat.completions.create(model="echo-model", messages=[{"role": "user", "content": "hi"}])
        return True
    except openai.AuthenticationError:
        return False


def test_old_key_works_during_grace_and_stops_at_its_expiry(make_proxy, echo_upstream):
    objects = _objects(echo_upstream.base_url)

    def render(keys: list[KeyRef], revision: int) -> ProxyInputs:
        return render_proxy(objects, keys={"team": keys}, revision=revision)

    first = render([KeyRef(sha256=hash_key(OLD))], 1)
    proxy = make_proxy(first.config, first.policy, env=first.env)
    assert _works(proxy, OLD) and not _works(proxy, NEW)
    # Rotated: the new key, and the old one until the end of its grace period, delivered as a ConfigMap update
    # (the mounted file) to the running proxy. The proxy then has to stop the old key by itself: no policy follows.
    expiry = int(time.time()) + 60
    rotated = render([KeyRef(sha256=hash_key(NEW)), KeyRef(sha256=hash_key(OLD), not_after=expiry)], 2)
    (team,) = rotated.policy.tenants
    assert {k.sha256: k.not_after for k in team.keys} == {hash_key(NEW): None, hash_key(OLD): expiry}
    proxy.write_policy(rotated.policy)
    wait_until(lambda: _works(proxy, NEW), timeout=30, what="the rotated policy", interval=0.2)
    assert _works(proxy, OLD), "both keys work during the grace period"
    wait_until(lambda: not _works(proxy, OLD), timeout=150, what="the old key to stop at its expiry", interval=0.5)
    assert time.time() >= expiry
    assert _works(proxy, NEW)
