"""Identity keys, key files and signed key bundles."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from fedplug._errors import SecureAggregationError
from fedplug.secagg import (
    IdentityKey,
    KeyBundle,
    bundle_payload,
    exchange_public_bytes,
    new_exchange_key,
    verify_bundle,
)
from fedplug.secagg._keys import new_nonce


def _bundle(pod: str = "pod-a", run_id: str = "run-1") -> tuple[IdentityKey, KeyBundle]:
    identity = IdentityKey.generate()
    exchange = exchange_public_bytes(new_exchange_key())
    return identity, KeyBundle.create(identity, pod, run_id, exchange, new_nonce())


def test_identity_pem_round_trip_and_public_key() -> None:
    key = IdentityKey.generate()
    again = IdentityKey.from_pem(key.to_pem())
    assert again.public_bytes() == key.public_bytes()
    assert len(key.public_bytes()) == 32
    assert base64.b64decode(key.public_b64()) == key.public_bytes()
    assert b"BEGIN PRIVATE KEY" in key.to_pem()


def test_load_or_create_makes_a_private_file_then_reuses_it(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "pod-a.pem"
    created = IdentityKey.load_or_create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    loaded = IdentityKey.load_or_create(str(path))
    assert loaded.public_bytes() == created.public_bytes()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest  # never rewritten


def test_garbled_key_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.pem"
    path.write_bytes(b"not a key")
    with pytest.raises(SecureAggregationError, match=r"broken\.pem.*delete the file"):
        IdentityKey.load_or_create(path)
    assert path.read_bytes() == b"not a key"


def test_non_ed25519_key_is_refused(tmp_path: Path) -> None:
    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path = tmp_path / "ec.pem"
    path.write_bytes(pem)
    with pytest.raises(SecureAggregationError, match=r"ec\.pem holds a .*not an Ed25519"):
        IdentityKey.load_or_create(path)


def test_bundle_verifies_and_round_trips_through_json() -> None:
    _, bundle = _bundle()
    verify_bundle(bundle, "run-1")
    data = json.loads(json.dumps(bundle.to_dict()))
    assert set(data) == {"pod", "identity_public", "exchange_public", "nonce", "signature"}
    assert KeyBundle.from_dict(data) == bundle


@pytest.mark.parametrize(
    "change",
    [
        {"pod": "pod-b"},
        {"exchange_public": bytes(32)},
        {"nonce": bytes(16)},
        {"identity_public": IdentityKey.generate().public_bytes()},
        {"signature": bytes(64)},
    ],
)
def test_any_altered_field_fails_verification(change: dict[str, object]) -> None:
    _, bundle = _bundle()
    altered = dataclasses.replace(bundle, **change)
    with pytest.raises(SecureAggregationError, match=r"invalid signature for run 'run-1'"):
        verify_bundle(altered, "run-1")


def test_bundle_is_bound_to_its_run() -> None:
    _, bundle = _bundle(run_id="run-1")
    with pytest.raises(SecureAggregationError, match=r"pod 'pod-a'.*run 'run-2'"):
        verify_bundle(bundle, "run-2")


def test_payload_encoding_is_injective() -> None:
    key, nonce = bytes(range(32)), bytes(16)
    assert bundle_payload("ab", "c", key, nonce) != bundle_payload("a", "bc", key, nonce)
    assert bundle_payload("r", "p", key, nonce).startswith(
        b"\x00\x00\x00\x1cfedplug/secagg/key-bundle/v2"
    )


def test_from_dict_errors_name_the_pod_and_field() -> None:
    _, bundle = _bundle()
    data = bundle.to_dict()
    with pytest.raises(SecureAggregationError, match=r"pod 'pod-a'.*missing key\(s\) 'signature'"):
        KeyBundle.from_dict({k: v for k, v in data.items() if k != "signature"})
    with pytest.raises(SecureAggregationError, match=r"pod 'pod-a'.*unknown key 'extra'"):
        KeyBundle.from_dict({**data, "extra": "x"})
    with pytest.raises(SecureAggregationError, match=r"pod 'pod-a'.*'exchange_public'.*base64"):
        KeyBundle.from_dict({**data, "exchange_public": "@@@"})
    short = base64.b64encode(bytes(31)).decode()
    with pytest.raises(SecureAggregationError, match=r"'identity_public' decodes to 31 bytes"):
        KeyBundle.from_dict({**data, "identity_public": short})
    with pytest.raises(SecureAggregationError, match="'pod' must be a non-empty string"):
        KeyBundle.from_dict({**data, "pod": ""})
    with pytest.raises(SecureAggregationError, match="must be a mapping"):
        KeyBundle.from_dict(["pod-a"])  # type: ignore[arg-type]


def test_load_private_refuses_links_loose_modes_and_missing_files(tmp_path: Path) -> None:
    """A pod's identity key is read only from its owner's own private file (issue 10)."""
    import os

    key = IdentityKey.generate()
    path = tmp_path / "pod.pem"
    path.write_bytes(key.to_pem())
    path.chmod(0o600)
    assert IdentityKey.load_private(path).public_bytes() == key.public_bytes()
    # Someone swaps in a link to their own key: never followed.
    theirs = tmp_path / "theirs.pem"
    theirs.write_bytes(IdentityKey.generate().to_pem())
    theirs.chmod(0o600)
    link = tmp_path / "link.pem"
    link.symlink_to(theirs)
    with pytest.raises(SecureAggregationError, match="not a symbolic link"):
        IdentityKey.load_private(link)
    path.chmod(0o644)
    with pytest.raises(SecureAggregationError, match="chmod 600"):
        IdentityKey.load_private(path)
    with pytest.raises(SecureAggregationError, match="fedplug pod keys"):
        IdentityKey.load_private(tmp_path / "missing.pem")
    assert not (tmp_path / "missing.pem").exists()
    path.chmod(0o600)
    real = os.geteuid
    try:
        os.geteuid = lambda: real() + 1  # type: ignore[assignment]
        with pytest.raises(SecureAggregationError, match="belongs to another user"):
            IdentityKey.load_private(path)
    finally:
        os.geteuid = real  # type: ignore[assignment]
