"""bcrypt for passwords and API keys, at the configured cost."""

from __future__ import annotations

import bcrypt
from flask import current_app

from . import metrics

MAX_SECRET_BYTES = 72  # bcrypt 5 raises ValueError beyond this


def hash_secret(secret: str) -> str:
    """Return a bcrypt hash of a password or key at the configured cost (``BCRYPT_ROUNDS``)."""
    rounds = current_app.config["BCRYPT_ROUNDS"]
    return bcrypt.hashpw(secret.encode(), bcrypt.gensalt(rounds)).decode()


def check_secret(secret: str | bytes, stored: str | bytes, kind: str) -> bool:
    """Check a password or key against its bcrypt hash, counted by ``kind`` in the metrics
    (``discountflow_bcrypt_verifications_total``)."""
    metrics.count_bcrypt(kind)
    secret = secret.encode() if isinstance(secret, str) else secret
    return bcrypt.checkpw(secret, stored.encode() if isinstance(stored, str) else stored)
