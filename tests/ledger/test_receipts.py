"""Receipts: Ed25519 JWS over a search's charges, checkable offline with only the public key."""

from __future__ import annotations

import base64
import json
import multiprocessing
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from contracts import ReceiptClaims, ReceiptLine
from ledger.receipts import ReceiptInvalid, ReceiptSigner, verify_receipt

CLAIMS = ReceiptClaims(
    query_id="q1",
    customer_id="cus_1",
    issued_at=datetime(2026, 11, 24, 12, 0, tzinfo=UTC),
    currency="USD",
    cost_micros=5_333,
    hits=[
        ReceiptLine(
            rank=1,
            chunk_id="c1",
            document_id="d1",
            dataset_id="guides",
            owner_id="acme",
            licence_id="std-v1",
            price_micros=4_000,
            owner_micros=2_800,
            platform_micros=1_200,
        ),
        ReceiptLine(
            rank=2,
            chunk_id="c2",
            document_id="d2",
            dataset_id="notes",
            owner_id="zeta",
            licence_id="n-v1",
            price_micros=1_333,
            owner_micros=1_000,
            platform_micros=333,
        ),
    ],
)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_receipt_round_trips_and_verifies_with_plain_cryptography(tmp_path: Path) -> None:
    signer = ReceiptSigner.load_or_create(tmp_path / "k.pem")
    token = signer.sign(CLAIMS)
    assert verify_receipt(token, signer.jwks()) == CLAIMS
    # What a customer does offline with nothing but the published JWK and `cryptography`:
    jwk = signer.jwks()["keys"][0]
    header, payload, signature = token.split(".")
    Ed25519PublicKey.from_public_bytes(_unb64(jwk["x"])).verify(
        _unb64(signature), f"{header}.{payload}".encode()
    )
    assert json.loads(_unb64(header)) == {
        "alg": "EdDSA",
        "kid": jwk["kid"],
        "typ": "fairshare-receipt+jws",
    }
    assert json.loads(_unb64(payload))["hits"][1]["owner_micros"] == 1_000


def test_altered_receipt_is_refused(tmp_path: Path) -> None:
    signer = ReceiptSigner.load_or_create(tmp_path / "k.pem")
    header, payload, signature = signer.sign(CLAIMS).split(".")
    claims = json.loads(_unb64(payload))
    claims["cost_micros"] = 1
    forged = f"{header}.{_b64(json.dumps(claims).encode())}.{signature}"
    with pytest.raises(ReceiptInvalid, match="signature does not match"):
        verify_receipt(forged, signer.jwks())
    other = ReceiptSigner.load_or_create(tmp_path / "other.pem")
    with pytest.raises(ReceiptInvalid, match="no Ed25519 key"):
        verify_receipt(other.sign(CLAIMS), signer.jwks())
    for junk in ("", "a.b", "a.b.c", f"{header}.{payload}"):
        with pytest.raises(ReceiptInvalid):
            verify_receipt(junk, signer.jwks())


def test_key_file_is_private_and_stable(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "receipt.pem"
    first = ReceiptSigner.load_or_create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert ReceiptSigner.load_or_create(path).key_id == first.key_id


def _key_id(path: str) -> str:
    return ReceiptSigner.load_or_create(Path(path)).key_id


def test_processes_starting_together_agree_on_one_key(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.pem")
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        ids = pool.map(_key_id, [path] * 8)
    assert len(set(ids)) == 1
    assert list(tmp_path.iterdir()) == [Path(path)]  # no temp files left behind
