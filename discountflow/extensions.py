"""Flask extensions, created unbound; the application factory binds them with ``init_app``."""

from __future__ import annotations

from flask import g
from flask_limiter import Limiter
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase

# Stable constraint names, so migrations can refer to them (FlaskBB's convention).
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def _rate_limit_key() -> str:
    """Key rate limits by the authenticated API key (set by the /v2 authentication hook)."""
    principal = g.get("api_key")
    return principal.key_id if principal is not None else ""


db = SQLAlchemy(model_class=Base)
limiter = Limiter(key_func=_rate_limit_key)
