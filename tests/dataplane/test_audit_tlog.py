"""The audit transparency log's Merkle tree and signed checkpoints (pure): published vectors, an independent
verifier written from RFC 9162 §2.1 in this file, and property tests over random sizes."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway_plugins.policy.audit import tlog
from gateway_plugins.policy.audit.note import (
    NoteError,
    NoteSigner,
    Verifier,
    open_checkpoint,
    open_note,
    parse_checkpoint,
    sign_checkpoint,
)

# RFC 6962 reference vectors as published in transparency-dev/merkle, proof/verify_test.go (the same set as
# certificate-transparency-go's merkletree tests): the 8 leaf inputs, the roots of the trees of 1..8 leaves,
# and inclusion (1-based leaf numbers there, 0-based here) and consistency proofs.
LEAVES = [bytes.fromhex(h) for h in ("", "00", "10", "2021", "3031", "40414243", "5051525354555657")] + [
    bytes.fromhex("606162636465666768696a6b6c6d6e6f")
]
ROOTS = [
    bytes.fromhex(h)
    for h in (
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    )
]
H = bytes.fromhex
INCLUSION = [  # (leaf index, tree size, proof)
    (0, 1, []),
    (
        0,
        8,
        [
            H("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
            H("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            H("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
        ],
    ),
    (
        5,
        8,
        [
            H("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
            H("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
            H("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        ],
    ),
    (2, 3, [H("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125")]),
    (
        1,
        5,
        [
            H("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
            H("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            H("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
        ],
    ),
]
CONSISTENCY = [  # (old size, new size, proof)
    (1, 1, []),
    (
        1,
        8,
        [
            H("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
            H("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            H("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
        ],
    ),
    (
        6,
        8,
        [
            H("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
            H("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
            H("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        ],
    ),
    (
        2,
        5,
        [
            H("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            H("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
        ],
    ),
    (
        6,
        7,
        [
            H("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
            H("b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f"),
            H("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        ],
    ),
]
EMPTY = H("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")


# --- a second, independent implementation, written from RFC 9162 §2.1 as recursive definitions -------------------
# (the production code is iterative and bit-twiddling, RFC 9162 §2.1.3.2 / §2.1.4.2; this one mirrors the MTH,
# PATH and SUBPROOF definitions and rebuilds roots top-down)


def ref_mth(leaves: list[bytes]) -> bytes:
    n = len(leaves)
    if n == 0:
        return hashlib.sha256().digest()
    if n == 1:
        return hashlib.sha256(bytes([0]) + leaves[0]).digest()
    k = 1
    while k * 2 < n:
        k *= 2
    return hashlib.sha256(bytes([1]) + ref_mth(leaves[:k]) + ref_mth(leaves[k:])).digest()


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_root_from_path(m: int, n: int, leaf_h: bytes, path: list[bytes]) -> bytes:
    """Undo PATH(m, D[n]) = PATH(m, D[0:k]) : MTH(D[k:n]) or PATH(m - k, D[k:n]) : MTH(D[0:k])."""
    if n == 1:
        if path:
            raise ValueError("path too long")
        return leaf_h
    if not path:
        raise ValueError("path too short")
    k = _k(n)
    *inner, last = path
    if m < k:
        return hashlib.sha256(b"\x01" + ref_root_from_path(m, k, leaf_h, inner) + last).digest()
    return hashlib.sha256(b"\x01" + last + ref_root_from_path(m - k, n - k, leaf_h, inner)).digest()


def ref_verify_inclusion(m: int, n: int, leaf_h: bytes, path: list[bytes], root: bytes) -> bool:
    try:
        return 0 <= m < n and ref_root_from_path(m, n, leaf_h, list(path)) == root
    except ValueError:
        return False


def ref_roots_from_subproof(m: int, n: int, proof: list[bytes], whole: bool, old_root: bytes) -> tuple[bytes, bytes]:
    """Undo SUBPROOF(m, D[n], b): the (old subtree root, new subtree root) this proof claims."""
    if m == n:
        if whole:
            if proof:
                raise ValueError("proof too long")
            return old_root, old_root
        if len(proof) != 1:
            raise ValueError("bad proof length")
        return proof[0], proof[0]
    if not proof:
        raise ValueError("proof too short")
    k = _k(n)
    *inner, last = proof
    if m <= k:
        old, new = ref_roots_from_subproof(m, k, inner, whole, old_root)
        return old, hashlib.sha256(b"\x01" + new + last).digest()
    old, new = ref_roots_from_subproof(m - k, n - k, inner, False, old_root)
    node = lambda a, b: hashlib.sha256(b"\x01" + a + b).digest()  # noqa: E731
    return node(last, old), node(last, new)


def ref_verify_consistency(m: int, n: int, old_root: bytes, new_root: bytes, proof: list[bytes]) -> bool:
    if not 0 < m <= n:
        return False
    if m == n:
        return not proof and old_root == new_root
    try:
        old, new = ref_roots_from_subproof(m, n, list(proof), True, old_root)
    except ValueError:
        return False
    return old == old_root and new == new_root


# --- the published vectors ------------------------------------------------------------------------------------


def leaf_hashes(n: int) -> list[bytes]:
    return [tlog.leaf_hash(d) for d in LEAVES[:n]]


def test_empty_tree_and_roots_of_1_to_8_leaves():
    assert tlog.root([]) == EMPTY == ref_mth([])
    for n in range(1, 9):
        assert tlog.root(leaf_hashes(n)) == ROOTS[n - 1], n
        assert tlog.Tree(leaf_hashes(8)).root(n) == ROOTS[n - 1], n
        assert ref_mth(LEAVES[:n]) == ROOTS[n - 1]


@pytest.mark.parametrize(("index", "size", "proof"), INCLUSION)
def test_inclusion_vectors(index, size, proof):
    tree = tlog.Tree(leaf_hashes(8))
    assert tree.inclusion_proof(index, size) == proof
    leaf = tlog.leaf_hash(LEAVES[index])
    tlog.verify_inclusion(index, size, leaf, proof, ROOTS[size - 1])
    assert ref_verify_inclusion(index, size, leaf, proof, ROOTS[size - 1])


@pytest.mark.parametrize(("old", "new", "proof"), CONSISTENCY)
def test_consistency_vectors(old, new, proof):
    tree = tlog.Tree(leaf_hashes(8))
    assert tree.consistency_proof(old, new) == proof
    tlog.verify_consistency(old, new, ROOTS[old - 1], ROOTS[new - 1], proof)
    assert ref_verify_consistency(old, new, ROOTS[old - 1], ROOTS[new - 1], proof)


def _corrupted(proof: list[bytes]) -> list[list[bytes]]:
    out = [[*proof, b""], [*proof, EMPTY], [EMPTY, *proof]]
    if proof:
        out.append(proof[:-1])
        for i in range(len(proof)):
            flipped = list(proof)
            flipped[i] = bytes([flipped[i][0] ^ 8]) + flipped[i][1:]
            out.append(flipped)
    return out


@pytest.mark.parametrize(("index", "size", "proof"), INCLUSION[1:])
def test_inclusion_refuses_corrupted_proofs_and_wrong_positions(index, size, proof):
    leaf, root = tlog.leaf_hash(LEAVES[index]), ROOTS[size - 1]
    for bad in _corrupted(proof):
        with pytest.raises(tlog.ProofError):
            tlog.verify_inclusion(index, size, leaf, bad, root)
    for i, n in ((index + 1, size), (index ^ 2, size), (index, size * 2), (index, size // 2)):
        with pytest.raises(tlog.ProofError):
            tlog.verify_inclusion(i, n, leaf, proof, root)
    with pytest.raises(tlog.ProofError):
        tlog.verify_inclusion(index, size, tlog.leaf_hash(b"WrongLeaf"), proof, root)
    with pytest.raises(tlog.ProofError):
        tlog.verify_inclusion(index, size, leaf, proof, EMPTY)


@pytest.mark.parametrize(("old", "new", "proof"), CONSISTENCY[1:])
def test_consistency_refuses_corrupted_proofs_and_swapped_roots(old, new, proof):
    r1, r2 = ROOTS[old - 1], ROOTS[new - 1]
    for bad in [*_corrupted(proof), []]:
        with pytest.raises(tlog.ProofError):
            tlog.verify_consistency(old, new, r1, r2, bad)
    for a, b in ((old + 1, new), (old, new * 2), (old, new // 2)):
        if a <= b:
            with pytest.raises(tlog.ProofError):
                tlog.verify_consistency(a, b, r1, r2, proof)
    for x, y in ((r2, r1), (EMPTY, r2), (r1, EMPTY)):
        with pytest.raises(tlog.ProofError):
            tlog.verify_consistency(old, new, x, y, proof)


def test_size_going_backwards_or_same_size_with_two_roots_is_refused():
    with pytest.raises(tlog.ProofError):
        tlog.verify_consistency(5, 4, ROOTS[4], ROOTS[3], [])
    with pytest.raises(tlog.ProofError):
        tlog.verify_consistency(4, 4, ROOTS[3], ROOTS[4], [])
    tlog.verify_consistency(0, 4, EMPTY, ROOTS[3], [])


# --- properties: production proofs pass the independent verifier, and the other way round --------------------


def _leaves(n: int) -> list[bytes]:
    return [tlog.leaf_hash(i.to_bytes(4, "big")) for i in range(n)]


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 300).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n - 1))))
def test_inclusion_of_any_leaf_in_any_tree(case):
    n, i = case
    leaves = _leaves(n)
    tree = tlog.Tree(leaves)
    proof = tree.inclusion_proof(i, n)
    root = ref_mth([i.to_bytes(4, "big") for i in range(n)])
    assert tree.root() == root
    assert ref_verify_inclusion(i, n, leaves[i], proof, root)
    tlog.verify_inclusion(i, n, leaves[i], proof, root)
    other = (i + 1) % n
    if other != i:
        assert not ref_verify_inclusion(other, n, leaves[i], proof, root)
        with pytest.raises(tlog.ProofError):
            tlog.verify_inclusion(other, n, leaves[i], proof, root)


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 300).flatmap(lambda n: st.tuples(st.integers(1, n), st.just(n))))
def test_consistency_between_any_two_sizes(case):
    m, n = case
    leaves = _leaves(n)
    tree = tlog.Tree(leaves)
    proof = tree.consistency_proof(m, n)
    old_root, new_root = tlog.root(leaves[:m]), tree.root()
    assert ref_verify_consistency(m, n, old_root, new_root, proof)
    tlog.verify_consistency(m, n, old_root, new_root, proof)
    if m < n:
        # A rewritten history (one old leaf changed) has another old root: the same proof cannot link it.
        forged = tlog.root([tlog.leaf_hash(b"forged"), *leaves[1:m]])
        assert not ref_verify_consistency(m, n, forged, new_root, proof)
        with pytest.raises(tlog.ProofError):
            tlog.verify_consistency(m, n, forged, new_root, proof)


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 200).flatmap(lambda t: st.tuples(st.just(t), st.integers(t + 1, t + 200))))
def test_proofs_from_a_frontier_after_the_oldest_leaves_are_gone(case):
    """What a prover has once the stream was trimmed: the frontier at ``start`` and the leaves after it."""
    start, n = case
    leaves = _leaves(n)
    frontier: list[bytes] = []
    for i, leaf in enumerate(leaves[:start]):
        frontier = tlog.append(frontier, i, leaf)
    assert tlog.frontier_root(frontier) == tlog.root(leaves[:start])
    partial = tlog.Tree(leaves[start:], start=start, frontier=frontier)
    full = tlog.Tree(leaves)
    assert partial.root() == full.root()
    for i in {start, (start + n) // 2, n - 1}:
        assert partial.inclusion_proof(i, n) == full.inclusion_proof(i, n)
    if start % 2:  # the last leaf before start is a frontier node of its own: still provable
        assert partial.inclusion_proof(start - 1, n) == full.inclusion_proof(start - 1, n)
    elif start:  # its sibling leaf is folded into the frontier: gone
        with pytest.raises(tlog.ProofError, match="no longer available"):
            partial.inclusion_proof(start - 1, n)


# --- signed notes and checkpoints (C2SP signed-note, tlog-checkpoint) ----------------------------------------

# golang.org/x/mod/sumdb/note's published example (note_test.go, doc.go): Ed25519 is deterministic, so signing
# the same text with the same key must give this exact note, and its vkey must parse and verify it.
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
GO_NOTE = (
    GO_TEXT
    + "\n\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)


def go_signer() -> NoteSigner:
    seed = base64.b64decode(GO_SKEY.split("+", 4)[4])[1:]
    return NoteSigner("PeterNeumann", Ed25519PrivateKey.from_private_bytes(seed))


def test_signed_note_matches_the_go_reference():
    signer = go_signer()
    assert signer.vkey() == GO_VKEY
    assert signer.sign(GO_TEXT) == GO_NOTE
    assert open_note(GO_NOTE, Verifier.parse(GO_VKEY)) == GO_TEXT
    with pytest.raises(NoteError):
        open_note(GO_NOTE.replace("cryptography", "cryptographY"), Verifier.parse(GO_VKEY))


def test_vkey_with_a_wrong_key_id_or_type_is_refused():
    name, hex_id, material = GO_VKEY.split("+", 2)
    with pytest.raises(NoteError):
        Verifier.parse(f"{name}+{'0' * 8}+{material}")
    with pytest.raises(NoteError):
        Verifier.parse(f"Other+{hex_id}+{material}")
    raw = base64.b64decode(material)
    with pytest.raises(NoteError):
        Verifier.parse(f"{name}+{hex_id}+{base64.b64encode(bytes([2]) + raw[1:]).decode()}")


ORIGIN = "kubegate.dev/ns/main/0123abcd"


def test_checkpoint_round_trip_and_format():
    signer = NoteSigner.generate(ORIGIN)
    note = sign_checkpoint(signer, 8, ROOTS[7])
    body, _, sig = note.partition("\n\n")
    assert body.split("\n") == [ORIGIN, "8", base64.b64encode(ROOTS[7]).decode()]
    assert sig.startswith(f"\u2014 {ORIGIN} ") and sig.endswith("\n")
    blob = base64.b64decode(sig.split(" ")[2])
    assert len(blob) == 68 and blob[:4] == hashlib.sha256(ORIGIN.encode() + b"\n\x01" + signer.public_key).digest()[:4]
    cp = open_checkpoint(note, Verifier.parse(signer.vkey()))
    assert (cp.origin, cp.size, cp.root) == (ORIGIN, 8, ROOTS[7])


def test_tampered_checkpoint_size_or_root_fails():
    signer = NoteSigner.generate(ORIGIN)
    verifier = Verifier.parse(signer.vkey())
    note = sign_checkpoint(signer, 8, ROOTS[7])
    root_b64 = base64.b64encode(ROOTS[7]).decode()
    for tampered in (
        note.replace("\n8\n", "\n9\n", 1),
        note.replace("\n8\n", "\n7\n", 1),
        note.replace(root_b64, base64.b64encode(ROOTS[6]).decode()),
    ):
        with pytest.raises(NoteError, match="does not verify"):
            open_checkpoint(tampered, verifier)


def test_checkpoint_signed_by_another_key_fails_even_under_the_same_name():
    genuine = NoteSigner.generate(ORIGIN)
    forger = NoteSigner.generate(ORIGIN)
    forged = sign_checkpoint(forger, 9, ROOTS[7])
    with pytest.raises(NoteError, match="not signed by"):
        open_checkpoint(forged, Verifier.parse(genuine.vkey()))
    # The forger copies the genuine key id into its signature line: the signature itself then fails.
    body, _, sig = forged.partition("\n\n")
    blob = base64.b64decode(sig.split(" ")[2])
    spoofed = body + "\n\n" + f"\u2014 {ORIGIN} " + base64.b64encode(genuine.id + blob[4:]).decode() + "\n"
    with pytest.raises(NoteError, match="does not verify"):
        open_checkpoint(spoofed, Verifier.parse(genuine.vkey()))


def test_cosignatures_by_unknown_keys_are_ignored_and_origin_must_be_the_keys():
    signer = NoteSigner.generate(ORIGIN)
    note = sign_checkpoint(signer, 3, ROOTS[2])
    witness = NoteSigner.generate("witness.example/w1")
    extra = witness.sign(note.partition("\n\n")[0] + "\n").rpartition("\n\n")[2]
    cosigned = note + extra
    assert open_checkpoint(cosigned, Verifier.parse(signer.vkey())).size == 3
    other_log = NoteSigner.generate("kubegate.dev/ns/other/0123abcd")
    with pytest.raises(NoteError, match="origin"):
        open_checkpoint(other_log.sign(parse_checkpoint(note.partition("\n\n")[0] + "\n").text()), other_log.verifier())
