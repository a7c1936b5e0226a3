"""Signing secrets: made, kept encrypted, and used to sign by the Standard Webhooks scheme.

A Standard Webhooks signature is an HMAC-SHA256 of ``{id}.{timestamp}.{body}`` under the
endpoint's secret, so whoever signs must hold the secret itself: it cannot be kept as a hash,
as API keys are. It is kept encrypted (``discountflow.sealing``): a copy of the database alone
does not give the secrets away, and changing ``SECRET_KEY`` leaves them unreadable (rotate each
endpoint's secret afterwards).
"""

from __future__ import annotations

import base64
import secrets
from datetime import datetime

from standardwebhooks import Webhook

from .. import sealing
from ..sealing import UnreadableSecret

__all__ = ["UnreadableSecret", "new_secret", "seal", "signature_headers", "unseal"]

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32  # the specification asks for 24 to 64
PURPOSE = "webhook signing secrets"  # HKDF's info (as it has always been)


def new_secret() -> str:
    """A fresh signing secret, ``whsec_`` and base64, as Standard Webhooks libraries take it."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def seal(secret: str) -> str:
    """A secret as it is stored."""
    return sealing.seal(secret, PURPOSE)


def unseal(stored: str) -> str:
    """A stored secret as the signer needs it."""
    return sealing.unseal(
        stored,
        PURPOSE,
        "The endpoint's signing secret cannot be read with this SECRET_KEY: rotate it.",
    )


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
