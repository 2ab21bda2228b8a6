"""Signed checkpoints of the audit log: C2SP ``signed-note`` (Ed25519) carrying a C2SP ``tlog-checkpoint``.

A checkpoint's text is ``<origin>\\n<tree size>\\n<base64 root hash>\\n``; the note is that text, a blank line,
then one line per signature ``— <key name> <base64(key id || Ed25519 signature over the text)>\\n``, where the
key id is ``SHA-256(key name || 0x0A || 0x01 || public key)[:4]``. The verifier key travels as the C2SP vkey
string ``<name>+<hex key id>+<base64(0x01 || public key)>``: that string alone checks a checkpoint.

For kubegate the key name is the log's origin, ``kubegate.dev/<namespace>/<gateway>/<first 8 of the Gateway's
uid>``; the private key is a per-Gateway Secret only the operator reads (never mounted in a proxy), so whoever
holds the audit HMAC key (the proxies) can re-chain records but cannot sign a checkpoint over them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gateway_plugins.policy.audit.tlog import HASH_SIZE

ED25519 = 0x01
DASH = "\u2014"
MAX_SIGNATURES = 16
_RAW = serialization.Encoding.Raw


class NoteError(ValueError):
    """A note or checkpoint that is malformed, not signed by the expected key, or whose signature fails."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise NoteError(f"{what}: not base64") from None


def origin_for(namespace: str, gateway: str, uid: str) -> str:
    return f"kubegate.dev/{namespace}/{gateway}/{uid.replace('-', '')[:8]}"


def _check_name(name: str) -> None:
    if not name or any(c.isspace() or c == "+" for c in name):
        raise NoteError(f"key name {name!r}: must be non-empty, without spaces or '+'")


def typed_key_id(name: str, key_type: int, public_key: bytes) -> bytes:
    """signed-note's key id: the first 4 bytes of SHA-256(name || 0x0A || type || key)."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([key_type]) + public_key).digest()[:4]


def key_id(name: str, public_key: bytes) -> bytes:
    return typed_key_id(name, ED25519, public_key)


def parse_vkey(text: str, key_type: int, what: str, kind: str) -> tuple[str, bytes, bytes]:
    """(name, key id, 32-byte Ed25519 key) of a C2SP vkey ``name+hexid+base64(type||key)`` of ``key_type``; the id
    must match the name and key. ``what`` and ``kind`` word the errors ("public key", "Ed25519 vkey (type 0x01")."""
    name, sep, rest = text.strip().partition("+")
    hex_id, sep2, material = rest.partition("+")
    if not sep or not sep2 or not re.fullmatch(r"[0-9a-f]{8}", hex_id):
        raise NoteError(f"{what}: expected a vkey '<name>+<8 hex digits>+<base64>'")
    _check_name(name)
    raw = _unb64(material, what)
    if len(raw) != 33 or raw[0] != key_type:
        raise NoteError(f"{what}: not an {kind}, 32 bytes)")
    if typed_key_id(name, key_type, raw[1:]) != bytes.fromhex(hex_id):
        raise NoteError(f"{what}: key id does not match its name and key")
    return name, bytes.fromhex(hex_id), raw[1:]


def vkey(name: str, public_key: bytes) -> str:
    _check_name(name)
    return f"{name}+{key_id(name, public_key).hex()}+{_b64(bytes([ED25519]) + public_key)}"


@dataclass(frozen=True)
class Verifier:
    name: str
    id: bytes
    public_key: bytes

    @classmethod
    def parse(cls, text: str) -> Verifier:
        """A C2SP vkey ``name+hexid+base64(0x01||key)``; the id must match the name and key."""
        return cls(*parse_vkey(text, ED25519, "public key", "Ed25519 vkey (type 0x01"))

    def vkey(self) -> str:
        return vkey(self.name, self.public_key)

    def verify(self, text: str, signature: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, text.encode())
        except InvalidSignature:
            return False
        return True


class NoteSigner:
    def __init__(self, name: str, private_key: Ed25519PrivateKey) -> None:
        _check_name(name)
        self.name = name
        self._key = private_key
        self.public_key = private_key.public_key().public_bytes(_RAW, serialization.PublicFormat.Raw)
        self.id = key_id(name, self.public_key)

    @classmethod
    def generate(cls, name: str) -> NoteSigner:
        return cls(name, Ed25519PrivateKey.generate())

    @classmethod
    def from_private_b64(cls, name: str, text: str) -> NoteSigner:
        raw = _unb64(text.strip(), "checkpoint signing key")
        if len(raw) != 32:
            raise NoteError(f"checkpoint signing key: must be 32 bytes, got {len(raw)}")
        return cls(name, Ed25519PrivateKey.from_private_bytes(raw))

    @property
    def private_key_b64(self) -> str:
        raw = self._key.private_bytes(_RAW, serialization.PrivateFormat.Raw, serialization.NoEncryption())
        return _b64(raw)

    def vkey(self) -> str:
        return vkey(self.name, self.public_key)

    def verifier(self) -> Verifier:
        return Verifier(self.name, self.id, self.public_key)

    def sign(self, text: str) -> str:
        """The signed note of ``text`` (which must end in a newline)."""
        _check_text(text)
        sig = self._key.sign(text.encode())
        return f"{text}\n{DASH} {self.name} {_b64(self.id + sig)}\n"


def _check_text(text: str) -> None:
    if not text.endswith("\n"):
        raise NoteError("note text must end with a newline")
    if any(ord(c) < 0x20 and c != "\n" for c in text):
        raise NoteError("note contains a control character")


def open_note(note: str, verifier: Verifier) -> str:
    """The note's text, once a signature by ``verifier`` checks out (C2SP signed-note §Signatures)."""
    _check_text(note)
    cut = note.rfind("\n\n")
    if cut < 0:
        raise NoteError("not a signed note: no blank line before the signatures")
    text, sig_block = note[: cut + 1], note[cut + 2 :]
    lines = sig_block.split("\n")
    if lines[-1] != "" or len(lines) < 2:
        raise NoteError("not a signed note: no signature line")
    lines = lines[:-1]
    if len(lines) > MAX_SIGNATURES:
        raise NoteError(f"note has more than {MAX_SIGNATURES} signatures")
    verified = False
    for line in lines:
        parts = line.split(" ")
        if len(parts) != 3 or parts[0] != DASH:
            raise NoteError(f"malformed signature line {line!r}")
        name, raw = parts[1], _unb64(parts[2], "signature")
        if len(raw) < 5:
            raise NoteError("signature too short")
        if name != verifier.name or raw[:4] != verifier.id:
            continue  # someone else's signature (a cosigner): ignored
        if len(raw) != 4 + 64 or not verifier.verify(text, raw[4:]):
            raise NoteError(f"signature by {name} does not verify (note altered or forged)")
        verified = True
    if not verified:
        raise NoteError(f"note is not signed by {verifier.name}+{verifier.id.hex()}")
    return text


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = field(default=())

    def text(self) -> str:
        return "".join(f"{line}\n" for line in (self.origin, str(self.size), _b64(self.root), *self.extensions))


def parse_checkpoint(text: str) -> Checkpoint:
    """C2SP tlog-checkpoint body: origin, decimal size, base64 root hash, optional extension lines."""
    if not text.endswith("\n"):
        raise NoteError("checkpoint must end with a newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise NoteError("checkpoint needs origin, tree size and root hash lines")
    origin, size_text, root_text, *ext = lines
    if not origin:
        raise NoteError("checkpoint origin is empty")
    if not re.fullmatch(r"0|[1-9][0-9]*", size_text) or int(size_text) >= 1 << 64:
        raise NoteError(f"checkpoint tree size {size_text!r} is not a decimal number")
    root = _unb64(root_text, "checkpoint root hash")
    if len(root) != HASH_SIZE or _b64(root) != root_text:
        raise NoteError("checkpoint root hash must be 32 bytes, base64")
    if any(not line for line in ext):
        raise NoteError("checkpoint has an empty extension line")
    return Checkpoint(origin, int(size_text), root, tuple(ext))


def sign_checkpoint(signer: NoteSigner, size: int, root: bytes) -> str:
    return signer.sign(Checkpoint(signer.name, size, root).text())


def open_checkpoint(note: str, verifier: Verifier) -> Checkpoint:
    """The checkpoint in ``note`` once its signature by ``verifier`` checks out and its origin is that key's."""
    cp = parse_checkpoint(open_note(note, verifier))
    if cp.origin != verifier.name:
        raise NoteError(f"checkpoint origin {cp.origin!r} is not the log of key {verifier.name!r}")
    return cp
