"""bcrypt for passwords and API keys, at the configured cost."""

from __future__ import annotations

import bcrypt
from flask import current_app

MAX_SECRET_BYTES = 72  # bcrypt 5 raises ValueError beyond this


def hash_secret(secret: str) -> str:
    """Return a bcrypt hash of a password or key at the configured cost (``BCRYPT_ROUNDS``)."""
    rounds = current_app.config["BCRYPT_ROUNDS"]
    return bcrypt.hashpw(secret.encode(), bcrypt.gensalt(rounds)).decode()
