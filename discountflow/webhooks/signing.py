"""Signing secrets: made, kept encrypted, and used to sign by the Standard Webhooks scheme.

A Standard Webhooks signature is an HMAC-SHA256 of ``{id}.{timestamp}.{body}`` under the
endpoint's secret, so whoever signs must hold the secret itself: it cannot be kept as a hash,
as API keys are. It is kept encrypted with Fernet (AES-128-CBC and HMAC-SHA256, from
``cryptography``) under a key derived from the app's ``SECRET_KEY`` (HKDF-SHA256, its own
``info``): a copy of the database alone does not give the secrets away, and changing
``SECRET_KEY`` leaves them unreadable (rotate each endpoint's secret afterwards).
"""

from __future__ import annotations

import base64
import secrets
from datetime import datetime

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import current_app
from standardwebhooks import Webhook

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32  # the specification asks for 24 to 64
_FERNET = "discountflow.webhook_fernet"


class UnreadableSecret(RuntimeError):
    """A stored secret this ``SECRET_KEY`` cannot decrypt (the key changed since)."""


def new_secret() -> str:
    """A fresh signing secret, ``whsec_`` and base64, as Standard Webhooks libraries take it."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def _fernet() -> Fernet:
    cached = current_app.extensions.get(_FERNET)
    if cached is None or cached[0] != current_app.config["SECRET_KEY"]:
        secret_key = current_app.config["SECRET_KEY"]
        material = secret_key.encode() if isinstance(secret_key, str) else secret_key
        derived = HKDF(
            algorithm=hashes.SHA256(),
            length=32,
            salt=None,
            info=b"discountflow webhook signing secrets",
        ).derive(material)
        cached = (secret_key, Fernet(base64.urlsafe_b64encode(derived)))
        current_app.extensions[_FERNET] = cached
    return cached[1]


def seal(secret: str) -> str:
    """A secret as it is stored."""
    return _fernet().encrypt(secret.encode()).decode()


def unseal(stored: str) -> str:
    """A stored secret as the signer needs it."""
    try:
        return _fernet().decrypt(stored.encode()).decode()
    except InvalidToken as error:
        raise UnreadableSecret(
            "The endpoint's signing secret cannot be read with this SECRET_KEY: rotate it."
        ) from error


def signature_headers(
    message_id: str, timestamp: datetime, body: str, secrets_: list[str]
) -> dict[str, str]:
    """The Standard Webhooks headers of one attempt, signed with each of ``secrets_`` (the
    current one, and the previous one while it still signs)."""
    signatures = [Webhook(secret).sign(message_id, timestamp, body) for secret in secrets_]
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": " ".join(signatures),
    }
