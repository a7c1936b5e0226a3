"""The dashboard's webhook forms (Flask-WTF), turned into the API's own input models."""

from __future__ import annotations

import re
from typing import Any

from flask_wtf import FlaskForm
from wtforms import BooleanField, HiddenField, StringField
from wtforms.validators import DataRequired, Length, Optional

from .schemas import MAX_URL_LENGTH


class EndpointForm(FlaskForm):
    url = StringField("URL", validators=[DataRequired(), Length(max=MAX_URL_LENGTH)])
    description = StringField("Description", validators=[Optional(), Length(max=500)])
    events = StringField(
        "Events (separated by commas: approval.approved, product.*, or * for all)",
        validators=[DataRequired(), Length(max=2000)],
        default="*",
    )
    enabled = BooleanField("Enabled", default=True)
    nonce = HiddenField()  # a creating form works once (the secret is shown once)


class NonceForm(FlaskForm):
    nonce = HiddenField()


def endpoint_input(form: EndpointForm) -> dict[str, Any]:
    """The form as the body ``POST /v2/webhook_endpoints`` takes."""
    events = [each for each in re.split(r"[\s,]+", form.events.data or "") if each]
    return {
        "url": (form.url.data or "").strip(),
        "description": form.description.data or "",
        "events": events,
        "enabled": bool(form.enabled.data),
    }
