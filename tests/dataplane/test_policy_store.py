"""Policy store against a real Redis: file + Redis load, live refresh, invalid documents refused."""

from __future__ import annotations

import asyncio
import gzip
import json

import redis.asyncio as aioredis

from gateway_plugins.policy.keys import GatewayKeys
from gateway_plugins.policy.schema import KeyRef, Policy, Tenant, hash_key
from gateway_plugins.policy.signing import PolicySigner
from gateway_plugins.policy.store import PolicyStore, encode_document, policy_keys, publish_policy, sign_document

# Its own gateway name: the session's Redis is shared with proxies of other tests (gateway "main"), which
# would otherwise take the documents published here.
GW = "policy-store-test"
KEYS = GatewayKeys("default", GW)
SIGNER = PolicySigner.generate()


def _policy(revision: int, tenant: str = "team-a", namespace: str = "default") -> Policy:
    return Policy(
        gateway=GW,
        namespace=namespace,
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
    await client.delete(*policy_keys(KEYS)[:2])
    path = tmp_path / "policy.json.gz"
    path.write_bytes(sign_document(_policy(3), SIGNER, compress=True))
    errors: list[str] = []
    store = PolicyStore(
        GW,
        verifier=SIGNER.verifier(),
        redis=client,
        policy_file=str(path),
        poll_seconds=0.2,
        on_error=lambda source, _: errors.append(source),
    )
    await store.start()
    try:
        assert store.current.revision == 3
        assert store.current.tenant_for_key_hash(hash_key("k-team-a")).id == "team-a"
        assert await publish_policy(client, _policy(4, "team-b"), SIGNER)
        assert await _eventually(lambda: store.current.revision == 4)
        assert "team-b" in store.current.tenants
        # A stale publisher cannot move the revision backwards.
        assert not await publish_policy(client, _policy(2), SIGNER)
        # Invalid document: refused with the field named, last good stays.
        doc, rev, channel = policy_keys(KEYS)
        bad = json.loads(_policy(9).model_dump_json(by_alias=True))
        bad["tenants"][0]["id"] = "Not_A_Label"
        # Signed by the right key (only the operator could do this): refused for its content, not its signature.
        await client.set(doc, SIGNER.sign(json.dumps(bad).encode()))
        await client.set(rev, 9)
        await client.publish(channel, 9)
        assert await _eventually(lambda: bool(errors))
        assert store.current.revision == 4
        assert "tenants.0.id" in (store.last_error or "")
        # The refused revision is not fetched and refused again on every poll (one error, not one a second).
        await asyncio.sleep(1.0)
        assert len(errors) == 1
        # A corrected document under a newer revision is taken.
        assert await publish_policy(client, _policy(10, "team-c"), SIGNER)
        assert await _eventually(lambda: store.current.revision == 10)
        assert store.last_error is None
    finally:
        await store.close()
        await client.delete(*policy_keys(KEYS)[:2])
        await client.aclose()


async def _store(client, tmp_path, errors: list, namespace: str = "default") -> PolicyStore:
    store = PolicyStore(
        GW,
        namespace=namespace,
        verifier=SIGNER.verifier(),
        redis=client,
        policy_file=str(tmp_path / "policy.json.gz"),
        poll_seconds=0.1,
        on_error=lambda source, exc: errors.append((source, type(exc).__name__, str(exc))),
    )
    await store.start()
    return store


async def test_unsigned_or_forged_documents_in_redis_are_refused(tmp_path, redis_server):
    """An attacker who can write Redis publishes higher revisions: none is taken, the old policy keeps serving."""
    client = aioredis.from_url(redis_server.url)
    doc, rev, channel = policy_keys(KEYS)
    await client.delete(doc, rev)
    errors: list = []
    store = await _store(client, tmp_path, errors)
    try:
        assert await publish_policy(client, _policy(5, "team-good"), SIGNER)
        assert await _eventually(lambda: store.current.revision == 5)
        attacker = PolicySigner.generate()
        forged = encode_document(_policy(6, "team-evil"))
        tampered = bytearray(sign_document(_policy(8, "team-evil"), SIGNER))
        tampered[-3] ^= 1  # one payload bit flipped after signing
        attempts = {
            6: forged,  # no signature at all
            7: sign_document(_policy(7, "team-evil"), attacker),  # someone else's key
            8: bytes(tampered),
            9: sign_document(_policy(9, "team-evil"), SIGNER)[:40],  # truncated
        }
        for revision, blob in attempts.items():
            await client.set(doc, blob)
            await client.set(rev, revision)
            await client.publish(channel, revision)
            assert await _eventually(lambda n=revision - 5: len(errors) >= n)
        assert store.current.revision == 5
        assert "team-evil" not in store.current.tenants
        assert store.current.tenant_for_key_hash(hash_key("k-team-good")).id == "team-good"
        assert [name for _, name, _ in errors] == ["PolicySignatureError"] * 4
        assert all(source == "redis" and "<signature>" in message for source, _, message in errors)
        # A validly signed, newer document is taken.
        assert await publish_policy(client, _policy(10, "team-next"), SIGNER)
        assert await _eventually(lambda: store.current.revision == 10)
        assert "team-next" in store.current.tenants
    finally:
        await store.close()
        await client.delete(doc, rev)
        await client.aclose()


async def test_unsigned_file_refused_and_file_changes_picked_up_without_restart(tmp_path):
    """Redis unreachable: a ConfigMap-only change reaches the running store; an unsigned file never does."""
    errors: list = []
    path = tmp_path / "policy.json.gz"
    path.write_bytes(sign_document(_policy(2, "team-a"), SIGNER, compress=True))
    store = await _store(None, tmp_path, errors)
    try:
        assert store.current.revision == 2
        # The kubelet's update: new file renamed over the old one.
        aside = tmp_path / "new"
        aside.write_bytes(sign_document(_policy(3, "team-b"), SIGNER, compress=True))
        aside.replace(path)
        assert await _eventually(lambda: store.current.revision == 3)
        assert "team-b" in store.current.tenants
        aside.write_bytes(gzip.compress(encode_document(_policy(4, "team-evil"))))
        aside.replace(path)
        assert await _eventually(lambda: bool(errors))
        assert store.current.revision == 3 and errors[0][:2] == (f"file {path}", "PolicySignatureError")
    finally:
        await store.close()


async def test_no_public_key_takes_nothing(tmp_path):
    path = tmp_path / "policy.json.gz"
    path.write_bytes(sign_document(_policy(2), SIGNER))
    errors: list = []
    store = PolicyStore(GW, policy_file=str(path), on_error=lambda s, exc: errors.append(str(exc)))
    await store.start()
    await store.close()
    assert store.current.revision == 0 and "no policy public key" in errors[0]


async def test_policy_of_another_namespace_is_ignored(tmp_path, redis_server):
    """Same Gateway name, other namespace: its keys differ, and a document naming it is refused even if copied."""
    client = aioredis.from_url(redis_server.url)
    ours, theirs = GatewayKeys("team-x", GW), GatewayKeys("team-y", GW)
    assert policy_keys(ours) != policy_keys(theirs)
    errors: list = []
    store = await _store(client, tmp_path, errors, namespace="team-x")
    try:
        assert await publish_policy(client, _policy(3, "team-ours", namespace="team-x"), SIGNER)
        assert await publish_policy(client, _policy(7, "team-theirs", namespace="team-y"), SIGNER)
        assert await _eventually(lambda: store.current.revision == 3)
        # Someone copies the other namespace's (validly signed) document under our keys.
        await client.set(ours.policy_document, sign_document(_policy(8, "team-theirs", namespace="team-y"), SIGNER))
        await client.set(ours.policy_revision, 8)
        assert await _eventually(lambda: bool(errors))
        assert store.current.revision == 3 and "team-ours" in store.current.tenants
        assert "'team-y/policy-store-test' is not this gateway" in errors[0][2]
    finally:
        await store.close()
        for k in (ours, theirs):
            await client.delete(*policy_keys(k)[:2])
        await client.aclose()
