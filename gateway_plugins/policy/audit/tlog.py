"""The audit log as a Merkle tree (RFC 6962 / RFC 9162 §2.1 hashing), pure functions, no I/O.

Leaves are the audit records in stream order; a leaf's bytes are the record exactly as the stream stores it
(field ``r``: the canonical JSON of the sealed record, MAC included, ``chain.canonical``).

- leaf hash ``SHA-256(0x00 || bytes)``, node hash ``SHA-256(0x01 || left || right)``, the empty tree
  ``SHA-256("")``; a tree of n > 1 leaves splits at the largest power of two smaller than n;
- inclusion proofs (RFC 9162 §2.1.3) and consistency proofs (§2.1.4): made from any source of subtree hashes
  (:class:`Tree`), checked from hashes alone (:func:`verify_inclusion`, :func:`verify_consistency`);
- a *frontier* (the hashes of the perfect subtrees that make up the first n leaves, largest first) is all the
  operator keeps to append leaves and compute roots; it is also where a prover starts once the oldest records
  have been trimmed out of the stream.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()


class ProofError(ValueError):
    """A proof that does not verify, or one that cannot be made from the hashes at hand."""


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def split(n: int) -> int:
    """The largest power of two smaller than ``n`` (n >= 2): the size of the left subtree."""
    return 1 << ((n - 1).bit_length() - 1)


def frontier_ranges(size: int) -> list[tuple[int, int]]:
    """The leaf ranges ``[lo, hi)`` of the perfect subtrees that make up the first ``size`` leaves."""
    out = []
    lo = 0
    for bit in reversed(range(size.bit_length())):
        if size >> bit & 1:
            out.append((lo, lo + (1 << bit)))
            lo += 1 << bit
    return out


def append(frontier: Sequence[bytes], size: int, leaf: bytes) -> list[bytes]:
    """The frontier of ``size + 1`` leaves from that of ``size`` leaves and the new leaf's hash."""
    out = list(frontier)
    if len(out) != bin(size).count("1"):
        raise ValueError(f"frontier of {len(out)} hashes does not fit a tree of {size} leaves")
    out.append(leaf)
    n = size
    while n & 1:
        right = out.pop()
        out.append(node_hash(out.pop(), right))
        n >>= 1
    return out


def frontier_root(frontier: Sequence[bytes]) -> bytes:
    if not frontier:
        return EMPTY_ROOT
    acc = frontier[-1]
    for h in reversed(frontier[:-1]):
        acc = node_hash(h, acc)
    return acc


def root(leaves: Sequence[bytes]) -> bytes:
    """The tree head of these leaf hashes."""
    frontier: list[bytes] = []
    for i, leaf in enumerate(leaves):
        frontier = append(frontier, i, leaf)
    return frontier_root(frontier)


class Tree:
    """Subtree hashes of a log whose leaf hashes are known from ``start`` on; the leaves before ``start`` are
    represented by their frontier (``start == 0``: every leaf is known)."""

    def __init__(self, leaves: Sequence[bytes], start: int = 0, frontier: Sequence[bytes] = ()) -> None:
        ranges = frontier_ranges(start)
        if len(ranges) != len(frontier):
            raise ValueError(f"frontier of {len(frontier)} hashes does not fit a tree of {start} leaves")
        self.leaves = list(leaves)
        self.start = start
        self.size = start + len(self.leaves)
        self._known = dict(zip(ranges, frontier, strict=True))

    def hash(self, lo: int, hi: int) -> bytes:
        """MTH of the leaves ``[lo, hi)``; ProofError when it needs leaves that only the frontier stands for."""
        if not 0 <= lo < hi <= self.size:
            raise ProofError(f"no subtree [{lo}, {hi}) in a tree of {self.size} leaves")
        known = self._known.get((lo, hi))
        if known is not None:
            return known
        if hi - lo == 1:
            if lo < self.start:
                raise ProofError(f"leaf {lo} is no longer available (trimmed before the oldest anchor)")
            return self.leaves[lo - self.start]
        k = split(hi - lo)
        return node_hash(self.hash(lo, lo + k), self.hash(lo + k, hi))

    def root(self, size: int | None = None) -> bytes:
        size = self.size if size is None else size
        return EMPTY_ROOT if size == 0 else self.hash(0, size)

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        return inclusion_proof(index, size, self.hash)

    def consistency_proof(self, old: int, new: int) -> list[bytes]:
        return consistency_proof(old, new, self.hash)


SubtreeHash = Callable[[int, int], bytes]


def inclusion_proof(index: int, size: int, subtree: SubtreeHash) -> list[bytes]:
    """RFC 9162 §2.1.3.1 PATH(index, D[0:size]), leaf-side first."""
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is not in a tree of {size} leaves")
    path: list[bytes] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = split(hi - lo)
        if index < lo + k:
            path.append(subtree(lo + k, hi))
            hi = lo + k
        else:
            path.append(subtree(lo, lo + k))
            lo = lo + k
    return path[::-1]


def consistency_proof(old: int, new: int, subtree: SubtreeHash) -> list[bytes]:
    """RFC 9162 §2.1.4.1 PROOF(old, D[0:new]); empty when old is 0 or equal to new."""
    if not 0 <= old <= new:
        raise ProofError(f"no consistency proof from {old} to {new} leaves")
    if old in (0, new):
        return []
    proof: list[bytes] = []
    lo, hi, m, whole = 0, new, old, True
    while m != hi - lo:
        k = split(hi - lo)
        if m <= k:
            proof.append(subtree(lo + k, hi))
            hi = lo + k
        else:
            proof.append(subtree(lo, lo + k))
            lo, m, whole = lo + k, m - k, False
    if not whole:
        proof.append(subtree(lo, hi))
    return proof[::-1]


def _lsb(x: int) -> int:
    return x & 1


def root_from_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """RFC 9162 §2.1.3.2: the root that ``proof`` leads to from ``leaf`` at ``index``."""
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is not in a tree of {size} leaves")
    if len(leaf) != HASH_SIZE or any(len(p) != HASH_SIZE for p in proof):
        raise ProofError("hashes must be 32 bytes")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise ProofError("inclusion proof has too many hashes")
        if _lsb(fn) or fn == sn:
            r = node_hash(p, r)
            if not _lsb(fn):
                while not _lsb(fn) and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("inclusion proof has too few hashes")
    return r


def verify_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes], root_hash: bytes) -> None:
    if root_from_inclusion(index, size, leaf, proof) != root_hash:
        raise ProofError(f"inclusion proof of leaf {index} does not lead to the root of the {size}-leaf tree")


def verify_consistency(old: int, new: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]) -> None:
    """RFC 9162 §2.1.4.2: the tree of ``new`` leaves with head ``new_root`` extends that of ``old`` leaves."""
    if not 0 <= old <= new:
        raise ProofError(f"tree size went from {old} down to {new}")
    if any(len(p) != HASH_SIZE for p in proof) or len(old_root) != HASH_SIZE or len(new_root) != HASH_SIZE:
        raise ProofError("hashes must be 32 bytes")
    if old == new:
        if proof or old_root != new_root:
            raise ProofError(f"two different roots for the same tree size {old}")
        return
    if old == 0:
        if proof:
            raise ProofError("consistency proof from the empty tree must be empty")
        return
    if not proof:
        raise ProofError("consistency proof is empty")
    path = list(proof)
    if old & (old - 1) == 0:  # old is a power of two: its root is a node of the new tree
        path.insert(0, old_root)
    fn, sn = old - 1, new - 1
    while _lsb(fn):
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("consistency proof has too many hashes")
        if _lsb(fn) or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not _lsb(fn):
                while not _lsb(fn) and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("consistency proof has too few hashes")
    if fr != old_root:
        raise ProofError(f"consistency proof does not lead to the root of the {old}-leaf tree (history rewritten)")
    if sr != new_root:
        raise ProofError(f"consistency proof does not lead to the root of the {new}-leaf tree")
