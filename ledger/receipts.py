"""Signed search receipts, verifiable offline by anyone holding the public key.

A receipt is a JWS (RFC 7515) in compact form, `header.payload.signature`, signed with Ed25519
(`"alg": "EdDSA"`, RFC 8037). The payload is the JSON of `contracts.ReceiptClaims`: the query id,
the customer, every charged passage with its price and split, and the total. The service
publishes its public key as a JWK set at `/v1/keys/receipts`, so a customer or an owner can check
a receipt with any JOSE library, or with `verify_receipt` below, without asking us.

Deletion receipts (`contracts.RevocationClaims`, what a revocation removed from each store) are
signed with the same key, with their own `typ`, so neither kind can pass for the other.

The signing key is one PEM file (PKCS#8, mode 0600) shared by every process of a deployment. It
is created on first start; concurrent first starts race to link a complete file into place and
the losers load the winner's, so all processes sign with one key.
"""

from __future__ import annotations

import base64
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from contracts import InvalidInput, ReceiptClaims, RevocationClaims, RevocationReceipt

TYPE = "fairshare-receipt+jws"
REVOCATION_TYPE = "fairshare-revocation+jws"
_claims_decoder = msgspec.json.Decoder(ReceiptClaims)
_revocation_decoder = msgspec.json.Decoder(RevocationClaims)


class ReceiptInvalid(InvalidInput):
    """The receipt is malformed, signed by another key, or altered."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError as exc:
        raise ReceiptInvalid("receipt is not base64url") from exc


def key_id(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


class ReceiptSigner:
    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        self.public_key = private_key.public_key()
        self.key_id = key_id(self.public_key)
        self._header = self._header_of(TYPE)
        self._revocation_header = self._header_of(REVOCATION_TYPE)

    def _header_of(self, typ: str) -> str:
        return _b64(msgspec.json.encode({"alg": "EdDSA", "kid": self.key_id, "typ": typ}))

    @classmethod
    def load_or_create(cls, path: Path) -> ReceiptSigner:
        path = Path(path)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            pem = Ed25519PrivateKey.generate().private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".receipt-key-")
            try:
                os.write(fd, pem)
                os.fsync(fd)
                os.close(fd)
                os.link(tmp, path)  # fails if another process created it first: use theirs
            except FileExistsError:
                pass
            finally:
                os.unlink(tmp)
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise InvalidInput(f"{path} does not hold an Ed25519 private key")
        return cls(key)

    def sign(self, claims: ReceiptClaims) -> str:
        return self._sign(self._header, msgspec.json.encode(claims))

    def sign_revocation(self, claims: RevocationClaims) -> str:
        """A deletion receipt: `claims` signed as a `fairshare-revocation+jws`."""
        return self._sign(self._revocation_header, msgspec.json.encode(claims))

    def _sign(self, header: str, payload: bytes) -> str:
        signing_input = f"{header}.{_b64(payload)}"
        signature = self._key.sign(signing_input.encode("ascii"))
        return f"{signing_input}.{_b64(signature)}"

    def jwks(self) -> dict[str, Any]:
        return {"keys": [public_jwk(self.public_key)]}


def public_jwk(public_key: Ed25519PublicKey) -> dict[str, str]:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": _b64(raw),
        "kid": key_id(public_key),
        "use": "sig",
        "alg": "EdDSA",
    }


def receipt_header(token: str) -> dict[str, Any]:
    """The JWS header of a receipt (unverified): `alg`, `kid`, `typ`."""
    parts = token.split(".")
    if len(parts) != 3:
        raise ReceiptInvalid("receipt must have three dot-separated parts")
    try:
        header = msgspec.json.decode(_unb64(parts[0]))
    except msgspec.DecodeError as exc:
        raise ReceiptInvalid("receipt header is not JSON") from exc
    if not isinstance(header, dict):
        raise ReceiptInvalid("receipt header is not a JSON object")
    return header


def verify_receipt(token: str, jwks: dict[str, Any]) -> ReceiptClaims:
    """The receipt's claims if a key in `jwks` signed exactly this token; else ReceiptInvalid."""
    try:
        return _claims_decoder.decode(_verified_payload(token, jwks))
    except msgspec.DecodeError as exc:
        raise ReceiptInvalid(f"receipt claims are malformed: {exc}") from exc


def verify_revocation_receipt(token: str, jwks: dict[str, Any]) -> RevocationClaims:
    """A deletion receipt's claims if a key in `jwks` signed exactly this token as one (its
    `typ`); else ReceiptInvalid."""
    if receipt_header(token).get("typ") != REVOCATION_TYPE:
        raise ReceiptInvalid(f"not a deletion receipt (typ must be {REVOCATION_TYPE})")
    try:
        return _revocation_decoder.decode(_verified_payload(token, jwks))
    except msgspec.DecodeError as exc:
        raise ReceiptInvalid(f"deletion receipt claims are malformed: {exc}") from exc


def revocation_receipt(token: str, jwks: dict[str, Any]) -> RevocationReceipt:
    """A stored deletion receipt as the API and CLI show it, verified against `jwks`."""
    claims = verify_revocation_receipt(token, jwks)
    return RevocationReceipt(
        revocation_id=claims.revocation_id,
        dataset_id=claims.dataset_id,
        key_id=str(receipt_header(token).get("kid", "")),
        jws=token,
        claims=claims,
    )


def _verified_payload(token: str, jwks: dict[str, Any]) -> bytes:
    """The payload bytes of `token` if a key in `jwks` signed exactly it; else ReceiptInvalid."""
    header = receipt_header(token)
    parts = token.split(".")
    if header.get("alg") != "EdDSA":
        raise ReceiptInvalid("receipt is not signed with EdDSA")
    jwk = next((k for k in jwks.get("keys", []) if k.get("kid") == header.get("kid")), None)
    if jwk is None or jwk.get("crv") != "Ed25519":
        raise ReceiptInvalid(f"no Ed25519 key with kid {header.get('kid')!r}")
    public_key = Ed25519PublicKey.from_public_bytes(_unb64(jwk["x"]))
    try:
        public_key.verify(_unb64(parts[2]), f"{parts[0]}.{parts[1]}".encode("ascii"))
    except InvalidSignature as exc:
        raise ReceiptInvalid("receipt signature does not match its content") from exc
    return _unb64(parts[1])
