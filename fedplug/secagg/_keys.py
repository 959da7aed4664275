"""Long-term Ed25519 identity keys, per-run X25519 exchange keys, and signed key bundles."""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from fedplug._errors import SecureAggregationError
from fedplug._validation import check_known_keys, quoted

_BUNDLE_DOMAIN = b"fedplug/secagg/key-bundle/v2"
_SESSION_DOMAIN = b"fedplug/secagg/session/v1"
NONCE_BYTES = 16
_RAW = serialization.Encoding.Raw, serialization.PublicFormat.Raw


def _length_prefixed(*parts: bytes) -> bytes:
    # Length prefixes make the encoding injective: no two tuples sign the same bytes.
    return b"".join(len(p).to_bytes(4, "big") + p for p in parts)


def bundle_payload(run_id: str, pod: str, exchange_public: bytes, nonce: bytes) -> bytes:
    """The exact bytes a pod signs for its bundle (domain-separated, length-prefixed)."""
    return _length_prefixed(
        _BUNDLE_DOMAIN, run_id.encode(), pod.encode(), bytes(exchange_public), bytes(nonce)
    )


def new_nonce() -> bytes:
    """A pod's fresh contribution to a run's session id."""
    return secrets.token_bytes(NONCE_BYTES)


def b64decode_key(value: bytes | str, *, what: str) -> bytes:
    """Raw bytes of a key given as bytes or as a base64 string."""
    if isinstance(value, bytes):
        return value
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise SecureAggregationError(
            f"{what} is not valid base64 ({value!r}); copy the key exactly as "
            "IdentityKey.public_b64() printed it"
        ) from exc


class IdentityKey:
    """A pod's long-term Ed25519 signing key; its public half is what peers pin."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        if not isinstance(private_key, Ed25519PrivateKey):
            raise SecureAggregationError(
                f"identity key must be an Ed25519 private key, got {type(private_key).__name__}"
            )
        self._key = private_key

    @classmethod
    def generate(cls) -> IdentityKey:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_pem(cls, data: bytes, *, source: str = "the PEM data") -> IdentityKey:
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise SecureAggregationError(
                f"cannot read an identity key from {source}: {exc}; it must be an unencrypted "
                "PKCS8 PEM Ed25519 private key (delete the file to have a new one created)"
            ) from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise SecureAggregationError(
                f"{source} holds a {type(key).__name__}, not an Ed25519 private key; use an "
                "Ed25519 key (delete the file to have a new one created)"
            )
        return cls(key)

    def to_pem(self) -> bytes:
        return self._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    @classmethod
    def load_or_create(cls, path: str | os.PathLike[str]) -> IdentityKey:
        """Load the key at ``path``, or create it there (mode 0600) if the file does not exist."""
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # O_EXCL: never overwrite a key another process created meanwhile.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        except OSError as exc:
            raise SecureAggregationError(
                f"cannot create identity key file {path}: {exc}; choose a writable key_file"
            ) from exc
        else:
            key = cls.generate()
            with os.fdopen(fd, "wb") as handle:
                handle.write(key.to_pem())
            return key
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise SecureAggregationError(
                f"cannot read identity key file {path}: {exc}; fix its permissions or path"
            ) from exc
        return cls.from_pem(data, source=f"identity key file {path}")

    @classmethod
    def load_private(cls, path: str | os.PathLike[str]) -> IdentityKey:
        """Load the key at ``path``, which must be this user's own private regular file.

        Opened without following a symbolic link and checked on the open file, so a file
        swapped in after a check (by another user who can write the key's folder) is never
        used; a missing key is an error, never created here.
        """
        path = Path(path)
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | os.O_NONBLOCK)
        except OSError as exc:
            raise SecureAggregationError(
                f"cannot open identity key file {path}: {exc}; it must be a regular file "
                "(not a symbolic link); create it with `fedplug pod keys POD.yaml`"
            ) from exc
        with os.fdopen(fd, "rb") as handle:
            info = os.fstat(handle.fileno())
            problem = None
            if not stat.S_ISREG(info.st_mode):
                problem = "is not a regular file"
            elif hasattr(os, "geteuid") and info.st_uid != os.geteuid():
                problem = "belongs to another user"
            elif info.st_mode & 0o077:
                problem = f"is readable or writable by other users (chmod 600 {path})"
            if problem:
                raise SecureAggregationError(f"identity key file {path} {problem}")
            data = handle.read()
        return cls.from_pem(data, source=f"identity key file {path}")

    def public_bytes(self) -> bytes:
        return self._key.public_key().public_bytes(*_RAW)

    def public_b64(self) -> str:
        return base64.b64encode(self.public_bytes()).decode("ascii")

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data)


def new_exchange_key() -> X25519PrivateKey:
    """A fresh X25519 key; one per run, never stored."""
    return X25519PrivateKey.generate()


def exchange_public_bytes(private_key: X25519PrivateKey) -> bytes:
    return private_key.public_key().public_bytes(*_RAW)


_BUNDLE_FIELDS = ("pod", "identity_public", "exchange_public", "nonce", "signature")
_BUNDLE_LENGTHS = {
    "identity_public": 32,
    "exchange_public": 32,
    "nonce": NONCE_BYTES,
    "signature": 64,
}


@dataclass(frozen=True)
class KeyBundle:
    """What a pod publishes at run setup: its exchange key and a fresh nonce, signed by its
    identity key for the server's setup id."""

    pod: str
    identity_public: bytes
    exchange_public: bytes
    nonce: bytes
    signature: bytes

    @classmethod
    def create(
        cls, identity: IdentityKey, pod: str, run_id: str, exchange_public: bytes, nonce: bytes
    ) -> KeyBundle:
        signature = identity.sign(bundle_payload(run_id, pod, exchange_public, nonce))
        return cls(pod, identity.public_bytes(), bytes(exchange_public), bytes(nonce), signature)

    def to_dict(self) -> dict[str, str]:
        out = {"pod": self.pod}
        for name in _BUNDLE_FIELDS[1:]:
            out[name] = base64.b64encode(getattr(self, name)).decode("ascii")
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> KeyBundle:
        if not isinstance(data, Mapping):
            raise SecureAggregationError(
                f"a key bundle must be a mapping with keys {list(_BUNDLE_FIELDS)}, "
                f"got {type(data).__name__}"
            )
        pod = data.get("pod")
        who = f"key bundle of pod {pod!r}"
        exactly = f"a bundle has exactly the keys {quoted(_BUNDLE_FIELDS)}"
        check_known_keys(data, _BUNDLE_FIELDS, where=who, error=SecureAggregationError, fix=exactly)
        missing = [k for k in _BUNDLE_FIELDS if k not in data]
        if missing:
            raise SecureAggregationError(f"{who}: missing key(s) {quoted(missing)}; {exactly}")
        if not isinstance(pod, str) or not pod:
            raise SecureAggregationError(
                f"key bundle field 'pod' must be a non-empty string, got {pod!r}"
            )
        raw: dict[str, bytes] = {}
        for name, length in _BUNDLE_LENGTHS.items():
            value = data[name]
            if not isinstance(value, str):
                raise SecureAggregationError(
                    f"{who}: field {name!r} must be a base64 string, got {type(value).__name__}"
                )
            raw[name] = b64decode_key(value, what=f"{who}, field {name!r}")
            if len(raw[name]) != length:
                raise SecureAggregationError(
                    f"{who}: field {name!r} decodes to {len(raw[name])} bytes, expected "
                    f"{length}; the bundle was truncated or altered in transit"
                )
        return cls(
            pod, raw["identity_public"], raw["exchange_public"], raw["nonce"], raw["signature"]
        )


def bundle_is_valid(bundle: KeyBundle, run_id: str) -> bool:
    """Whether ``bundle``'s signature is valid for ``run_id`` under its own identity key."""
    try:
        public = Ed25519PublicKey.from_public_bytes(bundle.identity_public)
        public.verify(
            bundle.signature,
            bundle_payload(run_id, bundle.pod, bundle.exchange_public, bundle.nonce),
        )
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def verify_bundle(bundle: KeyBundle, run_id: str) -> None:
    """Raise SecureAggregationError unless ``bundle`` is correctly signed for ``run_id``."""
    if not bundle_is_valid(bundle, run_id):
        raise SecureAggregationError(
            f"key bundle of pod {bundle.pod!r} has an invalid signature for run {run_id!r}; "
            "it was altered in transit or signed for another run: restart the pod's run setup"
        )


def session_id(run_id: str, bundles: list[KeyBundle]) -> str:
    """The id a run's masks are bound to: the server's setup id and every pod's bundle.

    Each pod's fresh nonce and exchange key enter it, so no server can make two runs share
    a session id, or replay an old roster under an id of its choosing.
    """
    parts = [_SESSION_DOMAIN, run_id.encode()]
    for b in sorted(bundles, key=lambda b: b.pod):
        parts += [b.pod.encode(), b.identity_public, b.exchange_public, b.nonce]
    return hashlib.sha256(_length_prefixed(*parts)).hexdigest()
