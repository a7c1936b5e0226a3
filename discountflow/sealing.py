"""Secrets the service must read back (webhook signing secrets, chat destinations' URLs), kept
encrypted.

Fernet (AES-128-CBC and HMAC-SHA256, from ``cryptography``) under a key derived from the app's
``SECRET_KEY`` by HKDF-SHA256, with one ``info`` per purpose: a copy of the database alone does
not give them away, and changing ``SECRET_KEY`` leaves them unreadable.
"""

from __future__ import annotations

import base64

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import current_app


class UnreadableSecret(RuntimeError):
    """A stored secret this ``SECRET_KEY`` cannot decrypt (the key changed since)."""


def _fernet(purpose: str) -> Fernet:
    name = f"discountflow.fernet:{purpose}"
    secret_key = current_app.config["SECRET_KEY"]
    cached = current_app.extensions.get(name)
    if cached is None or cached[0] != secret_key:
        material = secret_key.encode() if isinstance(secret_key, str) else secret_key
        info = f"discountflow {purpose}".encode()
        derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(material)
        cached = (secret_key, Fernet(base64.urlsafe_b64encode(derived)))
        current_app.extensions[name] = cached
    return cached[1]


def seal(value: str, purpose: str) -> str:
    """``value`` as it is stored."""
    return _fernet(purpose).encrypt(value.encode()).decode()


def unseal(stored: str, purpose: str, unreadable: str) -> str:
    """A stored value as it was sealed; ``UnreadableSecret(unreadable)`` if this
    ``SECRET_KEY`` cannot read it."""
    try:
        return _fernet(purpose).decrypt(stored.encode()).decode()
    except InvalidToken as error:
        raise UnreadableSecret(unreadable) from error
