"""The stack a Flask developer would write for ``GET /v2/me``, to measure DiscountFlow against.

Flask, Flask-HTTPAuth's bearer check looking the key up by the SHA-256 hex of the presented key
in a Flask-SQLAlchemy table, a Flask-Limiter decorator at 1,000 requests a minute per key (its
``memory://`` storage and its default strategy, as the one-box default), and one JSON log line
per request on stdout through :mod:`logging`. It answers the body DiscountFlow's ``/v2/me``
answers, built from its own rows.

``gunicorn -c gunicorn.conf.py 'bench.typical_app:create_app()'`` with ``TYPICAL_DATABASE_URL``
naming its database; :func:`store_keys` fills it (``bench/me_vs_typical.py`` stores the
SHA-256 of the keys DiscountFlow issued, so both sides serve the same keys).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import time
from datetime import datetime

from flask import Blueprint, Flask, g, jsonify, request
from flask_httpauth import HTTPTokenAuth
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_sqlalchemy import SQLAlchemy
from limits import parse
from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

RATE_LIMIT = "1000 per minute"


class Base(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)
auth = HTTPTokenAuth(scheme="Bearer")
limiter = Limiter(get_remote_address, storage_uri="memory://")
access_log = logging.getLogger("typical.access")
bp = Blueprint("api", __name__, url_prefix="/v2")


class Organization(db.Model):
    __tablename__ = "organizations"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    slug: Mapped[str] = mapped_column(String(64), unique=True)


class ApiKey(db.Model):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)  # SHA-256 hex of the key
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"))
    environment: Mapped[str] = mapped_column(String(16))
    read_only: Mapped[bool]
    revoked_at: Mapped[datetime | None]
    # Read with the key in one query: the answer names the organization.
    organization: Mapped[Organization] = relationship(lazy="joined")


@auth.verify_token
def verify_token(token: str) -> ApiKey | None:
    digest = hashlib.sha256(token.encode()).hexdigest()
    return db.session.execute(
        db.select(ApiKey).filter_by(key_hash=digest, revoked_at=None)
    ).scalar_one_or_none()


@auth.error_handler
def unauthorized(status: int):
    response = jsonify(error="invalid_api_key", message="Invalid or missing API key.")
    response.status_code = status
    return response


@bp.get("/me")
@auth.login_required
@limiter.limit(RATE_LIMIT, key_func=lambda: auth.current_user().id)  # after the key's check
def me():
    key: ApiKey = auth.current_user()
    limit = parse(RATE_LIMIT)
    return jsonify(
        object="api_key_session",
        organization={
            "object": "organization",
            "id": key.organization.id,
            "name": key.organization.name,
            "slug": key.organization.slug,
        },
        key_id=key.id,
        environment=key.environment,
        read_only=key.read_only,
        rate_limit={"limit": limit.amount, "window_seconds": limit.get_expiry()},
    )


def create_app(database_url: str | None = None) -> Flask:
    app = Flask(__name__)
    app.config["SQLALCHEMY_DATABASE_URI"] = database_url or os.environ["TYPICAL_DATABASE_URL"]
    app.config["RATELIMIT_HEADERS_ENABLED"] = True  # X-RateLimit-*, as DiscountFlow sends
    db.init_app(app)
    limiter.init_app(app)
    app.register_blueprint(bp)

    @app.errorhandler(429)
    def too_many_requests(error):
        response = jsonify(error="rate_limited", message=f"Over the limit: {error.description}")
        response.status_code = 429
        return response

    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    access_log.handlers[:] = [handler]
    access_log.setLevel(logging.INFO)
    access_log.propagate = False

    @app.before_request
    def start_timer():
        g.started = time.perf_counter()

    @app.after_request
    def log_request(response):
        user = auth.current_user()
        access_log.info(
            json.dumps(
                {
                    "method": request.method,
                    "path": request.path,
                    "status": response.status_code,
                    "duration_ms": round((time.perf_counter() - g.started) * 1000, 2),
                    "remote_addr": request.remote_addr,
                    "api_key": user.id if user else None,
                }
            )
        )
        return response

    with app.app_context():
        db.create_all()
    return app


def store_keys(app: Flask, sessions: dict[str, dict]) -> None:
    """Store each key (its text → what DiscountFlow's ``/v2/me`` answered for it) by the
    SHA-256 of its text, with its organization."""
    with app.app_context():
        for key, answer in sessions.items():
            organization = answer["organization"]
            if db.session.get(Organization, organization["id"]) is None:
                db.session.add(
                    Organization(
                        id=organization["id"], name=organization["name"], slug=organization["slug"]
                    )
                )
            db.session.add(
                ApiKey(
                    id=answer["key_id"],
                    key_hash=hashlib.sha256(key.encode()).hexdigest(),
                    organization_id=organization["id"],
                    environment=answer["environment"],
                    read_only=answer["read_only"],
                )
            )
        db.session.commit()
