"""The dashboard's forms for signing in, API keys and members (Flask-WTF, with CSRF tokens)."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import EmailField, HiddenField, PasswordField, SelectChoice, SelectField, StringField
from wtforms.validators import DataRequired, Length, Optional

SLOTS = [("full", "Full access"), ("read_only", "Read-only")]
GRACE_CHOICES = [("1", "1 hour"), ("24", "24 hours"), ("168", "7 days"), ("720", "30 days")]
ROLES = [("member", "Member"), ("admin", "Admin")]


def choices(pairs: list[tuple[str, str]]) -> list[SelectChoice]:
    """WTForms options from (value, label) pairs."""
    return [SelectChoice(value, label) for value, label in pairs]


class SignInForm(FlaskForm):
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


class MemberForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired(), Length(max=254)])
    name = StringField("Name", validators=[Optional(), Length(max=200)])
    role = SelectField("Role", choices=choices(ROLES))
    password = PasswordField("Initial password", validators=[DataRequired(), Length(max=200)])


class RoleForm(FlaskForm):
    role = SelectField("Role", choices=choices(ROLES))


class LevelAssignmentForm(FlaskForm):
    approval_level = SelectField("Approval level", choices=[], validate_choice=True)
