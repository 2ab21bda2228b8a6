"""Policy store against a real Redis: file + Redis load, live refresh, invalid documents refused."""

from __future__ import annotations

import asyncio
import gzip
import json

import redis.asyncio as aioredis

from gateway_plugins.policy.schema import KeyRef, Policy, Tenant, hash_key
from gateway_plugins.policy.store import PolicyStore, policy_keys, publish_policy

# Its own gateway name: the session's Redis is shared with proxies of other tests (gateway "main"), which
# would otherwise take the documents published here.
GW = "policy-store-test"


def _policy(revision: int, tenant: str = "team-a") -> Policy:
    return Policy(
        gateway=GW,
        revision=revision,
        tenants=[Tenant(id=tenant, keys=[KeyRef(sha256=hash_key(f"k-{tenant}"))], allowed_models=["*"])],
    )


async def _eventually(predicate, timeout: float = 5.0) -> bool:
    for _ in range(int(timeout / 0.05)):
        if predicate():
            return True
        await asyncio.sleep(0.05)
    return predicate()


async def test_gzip_file_then_redis_live_update(tmp_path, redis_server):
    client = aioredis.from_url(redis_server.url)
    await client.delete(*policy_keys(GW)[:2])
    path = tmp_path / "policy.json.gz"
    path.write_bytes(gzip.compress(_policy(3).model_dump_json(by_alias=True).encode()))
    errors: list[str] = []
    store = PolicyStore(GW, redis=client, policy_file=str(path), poll_seconds=0.2, on_error=errors.append)
    await store.start()
    try:
        assert store.current.revision == 3
        assert store.current.tenant_for_key_hash(hash_key("k-team-a")).id == "team-a"
        assert await publish_policy(client, _policy(4, "team-b"))
        assert await _eventually(lambda: store.current.revision == 4)
        assert "team-b" in store.current.tenants
        # A stale publisher cannot move the revision backwards.
        assert not await publish_policy(client, _policy(2))
        # Invalid document: refused with the field named, last good stays.
        doc, rev, channel = policy_keys(GW)
        bad = json.loads(_policy(9).model_dump_json(by_alias=True))
        bad["tenants"][0]["id"] = "Not_A_Label"
        await client.set(doc, json.dumps(bad))
        await client.set(rev, 9)
        await client.publish(channel, 9)
        assert await _eventually(lambda: bool(errors))
        assert store.current.revision == 4
        assert "tenants.0.id" in (store.last_error or "")
        # The refused revision is not fetched and refused again on every poll (one error, not one a second).
        await asyncio.sleep(1.0)
        assert len(errors) == 1
        # A corrected document under a newer revision is taken.
        assert await publish_policy(client, _policy(10, "team-c"))
        assert await _eventually(lambda: store.current.revision == 10)
        assert store.last_error is None
    finally:
        await store.close()
        await client.delete(*policy_keys(GW)[:2])
        await client.aclose()
