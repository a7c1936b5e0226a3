"""What the notifications API accepts and returns: a member's email preferences."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, StrictBool

from ..schemas import Input, Out, Time, optional

DESCRIPTIONS = {
    "decision_requested": "Email when a request waits for my decision.",
    "reminder": "Email when a request has waited for my decision past the reminder interval.",
    "approved": "Email when my request is approved.",
    "rejected": "Email when my request is rejected.",
    "changes_requested": "Email when changes to my request are asked for.",
    "commented": "Email when someone comments on a request I took part in.",
}


class NotificationPreferencesUpdate(Input):
    """Kinds left out stay as they are."""

    decision_requested: StrictBool = optional(description=DESCRIPTIONS["decision_requested"])
    reminder: StrictBool = optional(description=DESCRIPTIONS["reminder"])
    approved: StrictBool = optional(description=DESCRIPTIONS["approved"])
    rejected: StrictBool = optional(description=DESCRIPTIONS["rejected"])
    changes_requested: StrictBool = optional(description=DESCRIPTIONS["changes_requested"])
    commented: StrictBool = optional(description=DESCRIPTIONS["commented"])


class NotificationPreferencesOut(Out):
    object: Literal["notification_preferences"]
    member: str = Field(validation_alias="user_id", description="The member they belong to.")
    decision_requested: bool = Field(description=DESCRIPTIONS["decision_requested"])
    reminder: bool = Field(description=DESCRIPTIONS["reminder"])
    approved: bool = Field(description=DESCRIPTIONS["approved"])
    rejected: bool = Field(description=DESCRIPTIONS["rejected"])
    changes_requested: bool = Field(description=DESCRIPTIONS["changes_requested"])
    commented: bool = Field(description=DESCRIPTIONS["commented"])
    updated: Time | None = Field(
        validation_alias="updated_at",
        description="When the member last changed them (null: never).",
    )
