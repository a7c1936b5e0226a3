"""The dashboard's forms for signing in and API keys (Flask-WTF, with CSRF tokens)."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import EmailField, HiddenField, PasswordField, SelectField, StringField
from wtforms.validators import DataRequired, Length, Optional

from ..dashboard.forms import choices

SLOTS = [("full", "Full access"), ("read_only", "Read-only")]
GRACE_CHOICES = [("1", "1 hour"), ("24", "24 hours"), ("168", "7 days"), ("720", "30 days")]


class SignInForm(FlaskForm):
    organization = StringField("Organization", validators=[Optional(), Length(max=64)])
    email = EmailField("Email", validators=[DataRequired(), Length(max=254)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=200)])
    next = HiddenField()


class KeyForm(FlaskForm):
    """Generate or revoke a slot's key; ``nonce`` makes a reloaded POST do nothing."""

    slot = SelectField("Key", choices=choices(SLOTS))
    nonce = HiddenField()


class RollKeyForm(KeyForm):
    grace_hours = SelectField("The current key keeps working for", choices=choices(GRACE_CHOICES))


class SignOutForm(FlaskForm):
    pass
