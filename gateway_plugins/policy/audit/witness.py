"""Witnesses of the audit log: C2SP ``tlog-cosignature`` (Ed25519, ``cosignature/v1``), pure Python, file state.

A witness keeps, per log origin, the largest checkpoint it cosigned (size and root). Given a new checkpoint signed
by the log's key and a consistency proof from that size, it checks the proof (RFC 9162 §2.1.4) and only then
cosigns: its signature states that, at its timestamp, this is the largest consistent tree it has seen for the
log. A checkpoint whose history was rewritten (even if re-signed with the genuine log key) has no valid proof
from what the witness saw, so the witness refuses, and a verifier requiring a quorum of witnesses refuses it too.

Format (C2SP tlog-cosignature):

- key id ``SHA-256(name || 0x0A || 0x04 || public key)[:4]``; the vkey ``name+hexid+base64(0x04 || key)``;
- signed message ``"cosignature/v1\\ntime <t>\\n" || checkpoint text`` (the note body, all its lines);
- signature line ``— <name> base64(key id || u64 big-endian t || Ed25519 signature)``, appended to the note.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gateway_plugins.policy.audit import tlog
from gateway_plugins.policy.audit.note import (
    DASH,
    MAX_SIGNATURES,
    Checkpoint,
    NoteError,
    Verifier,
    _check_name,
    _unb64,
    open_checkpoint,
    parse_vkey,
    typed_key_id,
)

COSIGNATURE = 0x04
HEADER = "cosignature/v1\n"
_RAW = serialization.Encoding.Raw


class WitnessRefused(NoteError):
    """The witness will not cosign: not signed by the log, older than what it saw, or inconsistent with it."""


def cosigner_key_id(name: str, public_key: bytes) -> bytes:
    return typed_key_id(name, COSIGNATURE, public_key)


def message(text: str, timestamp: int) -> bytes:
    return f"{HEADER}time {timestamp}\n{text}".encode()


@dataclass(frozen=True)
class CosignerKey:
    """A witness's public key: the C2SP vkey ``name+hexid+base64(0x04 || key)``."""

    name: str
    id: bytes
    public_key: bytes

    @classmethod
    def parse(cls, text: str) -> CosignerKey:
        return cls(*parse_vkey(text, COSIGNATURE, "witness key", "Ed25519 cosignature vkey (type 0x04"))

    def vkey(self) -> str:
        material = base64.b64encode(bytes([COSIGNATURE]) + self.public_key).decode()
        return f"{self.name}+{self.id.hex()}+{material}"

    def verify(self, text: str, raw: bytes) -> int | None:
        """The cosignature's timestamp if ``raw`` (key id || timestamp || signature) is this key's over ``text``."""
        if len(raw) != 4 + 8 + 64 or raw[:4] != self.id:
            return None
        timestamp = int.from_bytes(raw[4:12], "big")
        if timestamp >= 1 << 63:
            return None
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(raw[12:], message(text, timestamp))
        except InvalidSignature:
            return None
        return timestamp


class Cosigner:
    def __init__(self, name: str, private_key: Ed25519PrivateKey) -> None:
        _check_name(name)
        self.name = name
        self._key = private_key
        public = private_key.public_key().public_bytes(_RAW, serialization.PublicFormat.Raw)
        self.key = CosignerKey(name, cosigner_key_id(name, public), public)

    @classmethod
    def generate(cls, name: str) -> Cosigner:
        return cls(name, Ed25519PrivateKey.generate())

    @classmethod
    def from_private_b64(cls, name: str, text: str) -> Cosigner:
        raw = _unb64(text.strip(), "witness signing key")
        if len(raw) != 32:
            raise NoteError(f"witness signing key: must be 32 bytes, got {len(raw)}")
        return cls(name, Ed25519PrivateKey.from_private_bytes(raw))

    @property
    def private_key_b64(self) -> str:
        raw = self._key.private_bytes(_RAW, serialization.PrivateFormat.Raw, serialization.NoEncryption())
        return base64.b64encode(raw).decode()

    def signature_line(self, text: str, timestamp: int) -> str:
        sig = self._key.sign(message(text, timestamp))
        raw = self.key.id + timestamp.to_bytes(8, "big") + sig
        return f"{DASH} {self.name} {base64.b64encode(raw).decode()}\n"


def split_note(note: str) -> tuple[str, list[str]]:
    """The note's text and its signature lines (each ending in a newline)."""
    cut = note.rfind("\n\n")
    if cut < 0 or not note.endswith("\n"):
        raise NoteError("not a signed note")
    return note[: cut + 1], [line + "\n" for line in note[cut + 2 : -1].split("\n")]


def add_cosignatures(note: str, lines: list[str]) -> str:
    """``note`` with these signature lines appended (lines already there are not repeated)."""
    text, sigs = split_note(note)
    for line in lines:
        line = line if line.endswith("\n") else line + "\n"
        if line not in sigs:
            sigs.append(line)
    if len(sigs) > MAX_SIGNATURES:
        raise NoteError(f"note would have more than {MAX_SIGNATURES} signatures")
    return text + "\n" + "".join(sigs)


def merge_cosignatures(note: str, submitted: str | None) -> str | None:
    """``note`` with the signature lines of ``submitted`` (a cosigned copy of the same checkpoint) added; None when
    ``submitted`` is missing, malformed or about another checkpoint. Lines are copied unchecked: verifiers count
    only valid cosignatures by the witness keys they trust."""
    if not submitted:
        return None
    try:
        text, sigs = split_note(submitted)
        if text != split_note(note)[0]:
            return None
        return add_cosignatures(note, sigs)
    except NoteError:
        return None


def trusted_cosignatures(note: str, submitted: str | None, witnesses: list[CosignerKey]) -> str | None:
    """``note`` with those signature lines of ``submitted`` that are valid cosignatures of it by ``witnesses``
    (one per witness); None when there are none. Anything else handed in (other keys, bad signatures, another
    checkpoint) is dropped, so what is stored is what a verifier trusting these witnesses would count."""
    if not submitted:
        return None
    try:
        text, _ = split_note(note)
        submitted_text, lines = split_note(submitted)
    except NoteError:
        return None
    if submitted_text != text:
        return None
    kept: list[str] = []
    names: set[str] = set()
    for line in lines:
        valid = cosigned_by(text + "\n" + line, witnesses)
        if valid and valid[0] not in names:
            names.add(valid[0])
            kept.append(line)
    return add_cosignatures(note, kept) if kept else None


def cosigned_by(note: str, witnesses: list[CosignerKey], now: float | None = None) -> list[str]:
    """Names of the witnesses (among ``witnesses``) with a valid cosignature on ``note``; unknown keys ignored.

    A cosignature dated more than 5 minutes in the future does not count (C2SP allows rejecting those)."""
    text, sigs = split_note(note)
    limit = (time.time() if now is None else now) + 300
    valid: list[str] = []
    for line in sigs:
        parts = line[:-1].split(" ")
        if len(parts) != 3 or parts[0] != DASH:
            continue
        try:
            raw = base64.b64decode(parts[2], validate=True)
        except ValueError:
            continue
        for key in witnesses:
            if key.name == parts[1] and key.name not in valid:
                stamp = key.verify(text, raw)
                if stamp is not None and stamp <= limit:
                    valid.append(key.name)
    return valid


def require_quorum(note: str, witnesses: list[CosignerKey], quorum: int) -> list[str]:
    names = cosigned_by(note, witnesses)
    if len(names) < quorum:
        have = ", ".join(names) or "none"
        raise NoteError(f"checkpoint has {len(names)} valid witness cosignatures ({have}); {quorum} required")
    return names


class Witness:
    """A cosigner that keeps the last (size, root) it cosigned per origin in a JSON file."""

    def __init__(self, cosigner: Cosigner, state_file: str | os.PathLike) -> None:
        self.cosigner = cosigner
        self.state_file = Path(state_file)

    def _load(self) -> dict:
        try:
            return json.loads(self.state_file.read_text())
        except FileNotFoundError:
            return {}

    def _save(self, state: dict) -> None:
        # Written whole and renamed: a crash leaves the old state or the new one, never half of either.
        fd, tmp = tempfile.mkstemp(dir=self.state_file.parent, prefix=".witness-")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(state, f, indent=1, sort_keys=True)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.state_file)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def seen(self, origin: str) -> tuple[int, bytes] | None:
        entry = self._load().get(origin)
        return (int(entry["size"]), base64.b64decode(entry["root"])) if entry else None

    def cosign(self, note: str, log_key: Verifier, proof: list[bytes], now: int | None = None) -> str:
        """The cosignature line for ``note`` once it is signed by ``log_key`` and consistent with what was seen.

        The first checkpoint seen for an origin is taken as it is (trust on first use); from then on each one
        must extend the last cosigned one, with ``proof`` the consistency proof from that size."""
        try:
            cp: Checkpoint = open_checkpoint(note, log_key)
        except NoteError as exc:
            raise WitnessRefused(f"not cosigning: {exc}") from None
        state = self._load()
        entry = state.get(cp.origin)
        if entry is not None:
            old_size, old_root = int(entry["size"]), base64.b64decode(entry["root"])
            if cp.size < old_size:
                raise WitnessRefused(f"not cosigning: {cp.size} records, fewer than the {old_size} already cosigned")
            try:
                tlog.verify_consistency(old_size, cp.size, old_root, cp.root, proof)
            except tlog.ProofError as exc:
                raise WitnessRefused(
                    f"not cosigning: not consistent with the {old_size}-record checkpoint cosigned before: {exc}"
                ) from None
        state[cp.origin] = {"size": cp.size, "root": base64.b64encode(cp.root).decode()}
        self._save(state)
        text = split_note(note)[0]
        return self.cosigner.signature_line(text, int(time.time()) if now is None else now)
