"""The API key format: build a key, and check one's shape and checksum without the database.

A key reads ``<type>_<env>_<lookup id>_<secret><checksum>``, for example::

    sk_test_4fQ9rT2mXc8L_0aZ3kP9sV1yB7nQ2wE5rT8uJ6hx2Lw

* ``sk`` full access or ``rk`` read-only; ``test`` (staging) or ``live`` (production);
* a 12-character public lookup id (base62), which is also the key's id ``key_<lookup id>``;
* a 22-character secret from :mod:`secrets` (22 base62 characters hold 130.9 bits);
* a 6-character checksum: CRC32 of everything before it, in base62, as GitHub's tokens do,
  so a mistyped or truncated key is refused before any database work.

The whole key is 49 bytes, under bcrypt's 72-byte limit.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

from ..database import BASE62, random_base62

LOOKUP_ID_LENGTH = 12
SECRET_LENGTH = 22
CHECKSUM_LENGTH = 6
MAX_KEY_BYTES = 72  # bcrypt 5 raises ValueError beyond this

ENVIRONMENT_TAGS = {"staging": "test", "production": "live"}
_TAG_ENVIRONMENTS = {tag: env for env, tag in ENVIRONMENT_TAGS.items()}

_KEY_PATTERN = re.compile(
    rf"(?P<type>sk|rk)_(?P<tag>test|live)_(?P<lookup>[0-9A-Za-z]{{{LOOKUP_ID_LENGTH}}})_"
    rf"[0-9A-Za-z]{{{SECRET_LENGTH}}}(?P<checksum>[0-9A-Za-z]{{{CHECKSUM_LENGTH}}})"
)


@dataclass(frozen=True)
class ParsedKey:
    key_id: str
    environment: str
    read_only: bool


def _base62(number: int, width: int) -> str:
    digits = []
    while number:
        number, remainder = divmod(number, 62)
        digits.append(BASE62[remainder])
    return "".join(reversed(digits)).rjust(width, "0")


def checksum(body: str) -> str:
    """Return the 6-character base62 CRC32 checksum of ``body``."""
    return _base62(zlib.crc32(body.encode("ascii")), CHECKSUM_LENGTH)


def build_key(environment: str, read_only: bool) -> tuple[str, str]:
    """Return a new ``(key_id, key)`` pair for the environment and scope."""
    lookup_id = random_base62(LOOKUP_ID_LENGTH)
    body = (
        f"{'rk' if read_only else 'sk'}_{ENVIRONMENT_TAGS[environment]}_{lookup_id}_"
        f"{random_base62(SECRET_LENGTH)}"
    )
    key = body + checksum(body)
    assert len(key.encode()) <= MAX_KEY_BYTES
    return f"key_{lookup_id}", key


def parse_key(presented: str) -> ParsedKey | None:
    """Return what a key's text says about it, or ``None`` if its format or checksum is wrong."""
    if len(presented) > MAX_KEY_BYTES:
        return None
    match = _KEY_PATTERN.fullmatch(presented)
    if match is None or checksum(presented[:-CHECKSUM_LENGTH]) != match["checksum"]:
        return None
    return ParsedKey(
        key_id=f"key_{match['lookup']}",
        environment=_TAG_ENVIRONMENTS[match["tag"]],
        read_only=match["type"] == "rk",
    )


def prefix_for(environment: str, read_only: bool) -> str:
    """Return the visible prefix of keys of this environment and scope (``sk_test_`` …)."""
    return f"{'rk' if read_only else 'sk'}_{ENVIRONMENT_TAGS[environment]}_"
