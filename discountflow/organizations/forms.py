"""The dashboard's forms for the organization's settings and its members (Flask-WTF)."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import EmailField, IntegerField, PasswordField, SelectField, StringField
from wtforms.validators import DataRequired, InputRequired, Length, Optional

from ..dashboard.forms import choices

ROLES = [("member", "Member"), ("admin", "Admin")]
CUSTOM_LINES = [
    ("allowed", "Allowed (never approved at once)"),
    ("forbidden", "Forbidden: every line names a product"),
]


class OrganizationForm(FlaskForm):
    name = StringField("Organization name", validators=[DataRequired(), Length(max=200)])
    auto_approve_threshold_percent = StringField(
        "Auto-approve discounts up to (%)", validators=[DataRequired()]
    )
    default_validity_days = IntegerField(
        "An approved price is valid for (days)", validators=[DataRequired()]
    )
    # InputRequired, not DataRequired: 0 (no reminders) is an answer.
    reminder_interval_hours = IntegerField(
        "Remind deciders of a request waiting at one step after (hours; 0: never)",
        validators=[InputRequired()],
    )
    custom_line_items = SelectField(
        "Custom line items (a typed list price instead of the price book's)",
        choices=choices(CUSTOM_LINES),
    )


class MemberForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired(), Length(max=254)])
    name = StringField("Name", validators=[Optional(), Length(max=200)])
    role = SelectField("Role", choices=choices(ROLES))
    password = PasswordField("Initial password", validators=[DataRequired(), Length(max=200)])


class RoleForm(FlaskForm):
    role = SelectField("Role", choices=choices(ROLES))


class LevelAssignmentForm(FlaskForm):
    approval_level = SelectField("Approval level", choices=[], validate_choice=True)


class RemoveMemberForm(FlaskForm):
    """The confirmation of a removal: its CSRF token alone (the member is in the URL)."""
