"""The dashboard's notification forms (Flask-WTF), turned into the API's own input models."""

from __future__ import annotations

from typing import Any

from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    RadioField,
    SelectField,
    SelectMultipleField,
    StringField,
    widgets,
)
from wtforms.validators import DataRequired, Length, Optional

from ..dashboard.forms import choices
from .models import DIGEST_HOUR, NotificationKind
from .schemas import DESCRIPTIONS, KIND_DESCRIPTIONS, MAX_URL_LENGTH

KINDS = [kind.value for kind in NotificationKind]


def _label(kind: str) -> str:
    """``Email when my request is approved.`` → ``My request is approved``."""
    said = DESCRIPTIONS[kind].removeprefix("Email when ").rstrip(".")
    return said[:1].upper() + said[1:]


class PreferencesForm(FlaskForm):
    """My notifications: each kind of email on or off, one by one or in a daily digest."""

    decision_requested = BooleanField(_label("decision_requested"))
    reminder = BooleanField(_label("reminder"))
    approved = BooleanField(_label("approved"))
    rejected = BooleanField(_label("rejected"))
    changes_requested = BooleanField(_label("changes_requested"))
    commented = BooleanField(_label("commented"))
    delivery = RadioField(
        "Send them",
        choices=choices(
            [
                ("each", "One by one, as they happen"),
                ("digest", "Once a day, together (a daily digest)"),
            ]
        ),
        default="each",
    )
    digest_hour = SelectField(
        "The digest comes at",
        choices=choices([(str(hour), f"{hour:02d}:00 UTC") for hour in range(24)]),
        default=str(DIGEST_HOUR),
    )

    def fill(self, preferences: Any) -> None:
        for kind in KINDS:
            getattr(self, kind).data = getattr(preferences, kind)
        self.delivery.data = "digest" if preferences.digest else "each"
        self.digest_hour.data = str(preferences.digest_hour)

    def as_input(self) -> dict[str, Any]:
        """The form as the body ``PATCH /v2/members/me/notification_preferences`` takes."""
        return {kind: bool(getattr(self, kind).data) for kind in KINDS} | {
            "digest": self.delivery.data == "digest",
            "digest_hour": int(self.digest_hour.data),  # one of the choices: validated
        }


class KindsField(SelectMultipleField):
    """The kinds a destination hears of, as checkboxes."""

    widget = widgets.ListWidget(prefix_label=False)
    option_widget = widgets.CheckboxInput()


class DestinationForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired(), Length(max=100)])
    url = StringField(
        "Apprise URL",
        validators=[Optional(), Length(max=MAX_URL_LENGTH)],
        description="slack://…, https://hooks.slack.com/services/…, workflows://… (Microsoft "
        "Teams), discord://…, mmosts://… (Mattermost), ntfys://…, jsons://…",
    )
    events = KindsField(
        "Tell it when",
        choices=choices(
            [(kind.value, said.capitalize()) for kind, said in KIND_DESCRIPTIONS.items()]
        ),
        default=KINDS,
    )
    enabled = BooleanField("Enabled", default=True)

    def as_input(self, creating: bool) -> dict[str, Any]:
        """The form as the body the API takes (a blank URL keeps the one saved)."""
        data = {
            "name": (self.name.data or "").strip(),
            "events": list(self.events.data or []),
            "enabled": bool(self.enabled.data),
        }
        url = (self.url.data or "").strip()
        if url or creating:
            data["url"] = url
        return data
