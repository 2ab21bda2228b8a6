"""A policy published to Redis reaches two proxy processes sharing it, without restart."""

from __future__ import annotations

import time

import openai
import redis

from gateway_plugins.policy.store import keys_of, policy_keys, publish_policy_sync
from tests.dataplane.test_hooks_e2e import KEY_A, _setup
from tests.harness.proxy import SIGNER
from tests.harness.rendered import cr

KEY_NEW = "sk-test-new-tenant-987654"


def _accepted(api, model: str = "echo-model") -> bool:
    try:
        api.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
        return True
    except (openai.AuthenticationError, openai.PermissionDeniedError, openai.NotFoundError):
        return False


def test_live_update_reaches_two_proxies(make_proxy, echo_upstream, redis_server, openai_client):
    first = _setup(echo_upstream)
    policy = first.policy
    redis_server.client().flushall()
    proxies = [make_proxy(first.config, policy, redis_url=redis_server.url, env=first.env) for _ in range(2)]
    for proxy in proxies:
        assert not _accepted(openai_client(proxy, KEY_NEW))

    # A new Tenant object: the operator renders the next revision, which is published to Redis.
    new_tenant = cr("Tenant", "team-new", {"gateway": "main", "allowedModels": ["*"]})
    newer = _setup(echo_upstream, [new_tenant], keys={"team-new": KEY_NEW}, revision=2).policy
    assert {t.id for t in newer.tenants} == {"team-a", "team-new"}
    client = redis.Redis.from_url(redis_server.url)
    try:
        assert publish_policy_sync(client, newer, SIGNER)
        published = time.monotonic()
        for proxy in proxies:
            api = openai_client(proxy, KEY_NEW)
            while not _accepted(api):
                # Generous bound (the design target is 2 s: pub/sub plus a 1 s revision poll).
                assert time.monotonic() - published < 10, proxy.logs()
                time.sleep(0.1)
        # The old tenant still works and is still limited to its allow-list.
        assert _accepted(openai_client(proxies[0], KEY_A))
        assert not _accepted(openai_client(proxies[1], KEY_A), model="other-model")
    finally:
        # Later tests' proxies for gateway "main" share this Redis: they must not take this document.
        client.delete(*policy_keys(keys_of(policy))[:2])
