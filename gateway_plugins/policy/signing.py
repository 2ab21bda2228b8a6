"""Policy authenticity: the operator signs every policy document with a per-Gateway Ed25519 key; proxies verify.

A signed document is ``MAGIC || signature (64 bytes) || payload`` where the payload is the encoded policy (JSON,
or gzip+JSON) exactly as before, and the signature covers ``DOMAIN || payload``. Ed25519 signatures are
deterministic, so an unchanged policy keeps the same bytes and the operator writes nothing.

The private key lives in a Secret only the operator reads; proxies get the public key (``KUBEGATE_POLICY_PUBLIC_KEY``
or ``KUBEGATE_POLICY_PUBLIC_KEY_FILE``, base64 of the 32 raw bytes). A writer of Redis or of the ConfigMap
without the private key cannot produce a document a proxy takes.
"""

from __future__ import annotations

import base64
import binascii

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gateway_plugins.policy.schema import PolicyError

MAGIC = b"KGSIG1\n"
DOMAIN = b"kubegate.dev/policy/v1 signature\x00"
SIG_LEN = 64
_RAW = serialization.Encoding.Raw


class PolicySignatureError(PolicyError):
    """The document is not signed by this Gateway's key (unsigned, truncated, forged or signed by another key)."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: str, what: str, length: int) -> bytes:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{what}: not base64") from None
    if len(raw) != length:
        raise ValueError(f"{what}: must be {length} bytes, got {len(raw)}")
    return raw


class PolicySigner:
    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        self.public_key_b64 = _b64(private_key.public_key().public_bytes(_RAW, serialization.PublicFormat.Raw))

    @classmethod
    def generate(cls) -> PolicySigner:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_private_b64(cls, text: str) -> PolicySigner:
        return cls(Ed25519PrivateKey.from_private_bytes(_unb64(text, "policy signing key", 32)))

    @property
    def private_key_b64(self) -> str:
        raw = self._key.private_bytes(_RAW, serialization.PrivateFormat.Raw, serialization.NoEncryption())
        return _b64(raw)

    def verifier(self) -> PolicyVerifier:
        return PolicyVerifier.from_public_b64(self.public_key_b64)

    def sign(self, payload: bytes) -> bytes:
        return MAGIC + self._key.sign(DOMAIN + payload) + payload


class PolicyVerifier:
    def __init__(self, public_key: Ed25519PublicKey) -> None:
        self._key = public_key

    @classmethod
    def from_public_b64(cls, text: str) -> PolicyVerifier:
        return cls(Ed25519PublicKey.from_public_bytes(_unb64(text, "policy public key", 32)))

    def open(self, blob: bytes | str) -> bytes:
        """The payload of a signed document; :class:`PolicySignatureError` unless the signature verifies."""
        data = blob.encode() if isinstance(blob, str) else blob
        if not data.startswith(MAGIC) or len(data) < len(MAGIC) + SIG_LEN:
            raise PolicySignatureError("invalid policy: <signature>: document is not signed")
        sig = data[len(MAGIC) : len(MAGIC) + SIG_LEN]
        payload = data[len(MAGIC) + SIG_LEN :]
        try:
            self._key.verify(sig, DOMAIN + payload)
        except InvalidSignature:
            raise PolicySignatureError("invalid policy: <signature>: does not verify with this Gateway's key") from None
        return payload


def is_signed(blob: bytes | str) -> bool:
    return (blob.encode() if isinstance(blob, str) else blob).startswith(MAGIC)
