"""The pieces of dropout recovery: per-exchange pair keys, sealed shares, survivor receipts.

- A pair's masks for one exchange come from an *exchange pair key*, HKDF of the pair
  secret and the exchange (session, exchange number, participants). A pod reveals it for
  a peer that dropped out of that exchange; it reveals nothing about any other exchange.
- A pod's shares of its self-mask seed travel through the server sealed (AES-256-GCM)
  under a key only the two pods can derive from their pair secret, bound to the session,
  the exchange, the sender and the recipient.
- After a dropout, each survivor signs the survivor set it is told (a *receipt*) and
  commits to it; a pod unmasks only with every survivor's receipt for its very set, so a
  server cannot tell pods different sets (the consistency step of Bonawitz et al.).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from fedplug._errors import SecureAggregationError
from fedplug.secagg._keys import _length_prefixed

_EXCHANGE_KEY_DOMAIN = b"fedplug/secagg/exchange-pair-key/v1"
_SEAL_DOMAIN = b"fedplug/secagg/sealed-share/v1"
_RECEIPT_DOMAIN = b"fedplug/secagg/survivors/v1"
_SEAL_NONCE = 12


def _hkdf(secret: bytes, *info: bytes) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=_length_prefixed(*info)
    ).derive(secret)


def exchange_pair_key(pair_secret: bytes, session: str, exchange: int, digest: bytes) -> bytes:
    """The key of one pair's masks in one exchange (over the participants of ``digest``)."""
    return _hkdf(
        pair_secret, _EXCHANGE_KEY_DOMAIN, session.encode(), exchange.to_bytes(8, "big"), digest
    )


def _binding(session: str, exchange: int, sender: str, recipient: str) -> bytes:
    return _length_prefixed(
        _SEAL_DOMAIN,
        session.encode(),
        exchange.to_bytes(8, "big"),
        sender.encode(),
        recipient.encode(),
    )


def seal(
    pair_secret: bytes, session: str, exchange: int, sender: str, recipient: str, data: bytes
) -> bytes:
    """``data`` encrypted and authenticated for ``recipient`` only (nonce || ciphertext)."""
    binding = _binding(session, exchange, sender, recipient)
    key = _hkdf(pair_secret, binding)
    nonce = secrets.token_bytes(_SEAL_NONCE)
    return nonce + AESGCM(key).encrypt(nonce, data, binding)


def open_sealed(
    pair_secret: bytes, session: str, exchange: int, sender: str, recipient: str, sealed: bytes
) -> bytes:
    """The data ``sender`` sealed for ``recipient`` in this exchange, or an error."""
    binding = _binding(session, exchange, sender, recipient)
    key = _hkdf(pair_secret, binding)
    try:
        return AESGCM(key).decrypt(sealed[:_SEAL_NONCE], sealed[_SEAL_NONCE:], binding)
    except (InvalidTag, ValueError, TypeError) as exc:
        raise SecureAggregationError(
            f"the share pod {sender!r} sealed for pod {recipient!r} in exchange {exchange} "
            "does not open: it was altered, or sealed for another exchange or pod"
        ) from exc


def receipt_payload(session: str, exchange: int, survivors: Iterable[str]) -> bytes:
    """What a survivor signs: the session, the exchange and the survivor set it was told."""
    names = sorted(set(survivors))
    return _length_prefixed(
        _RECEIPT_DOMAIN, session.encode(), exchange.to_bytes(8, "big"), *(n.encode() for n in names)
    )


def receipt_is_valid(
    identity_public: bytes, signature: bytes, session: str, exchange: int, survivors: Iterable[str]
) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(identity_public).verify(
            signature, receipt_payload(session, exchange, survivors)
        )
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True
