"""What the organization and members API accepts and returns."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from ..schemas import (
    Input,
    Integer,
    ListOf,
    ObjectId,
    Out,
    Percent,
    Time,
    optional,
    text,
    to_percent,
)

OrganizationName = text(200, min_length=1)
REMOVED_DESCRIPTION = (
    "When the member was removed from the organization (they left): they sign in to nothing, "
    "decide nothing and are told nothing, and history still names them; null for a member."
)
REMINDER_DESCRIPTION = (
    "Hours a request may wait at one step before its deciders are reminded by email (once "
    "per interval); 0: no reminders."
)


class OrganizationUpdate(Input):
    name: OrganizationName = optional()
    auto_approve_threshold_percent: Percent = optional(
        description="Discounts up to this percent are approved at once."
    )
    default_validity_days: Integer = optional(
        ge=1, le=365, description="How long an approved price holds."
    )
    reminder_interval_hours: Integer = optional(ge=0, le=720, description=REMINDER_DESCRIPTION)
    custom_line_items: Literal["allowed", "forbidden"] = optional(
        description="Whether line items may carry a typed list price instead of a product of "
        "the price book (custom lines are never approved at once)."
    )


class MemberUpdate(Input):
    """Fields left out stay as they are."""

    role: Literal["admin", "member"] = optional(
        description="The member's role (the owner's role cannot change)."
    )
    approval_level: ObjectId | None = optional(
        description="The approval level that makes the member an approver; `null`: none."
    )


class OrganizationOut(Out):
    object: Literal["organization"]
    id: str
    name: str
    slug: str
    auto_approve_threshold_percent: float
    default_validity_days: int
    reminder_interval_hours: int = Field(description=REMINDER_DESCRIPTION)
    custom_line_items: Literal["allowed", "forbidden"]
    created: Time = Field(validation_alias="created_at")
    updated: Time = Field(validation_alias="updated_at")

    @classmethod
    def read(cls, organization: Any) -> Any:
        percent = to_percent(organization.auto_approve_threshold_bps)
        return super().read(organization, auto_approve_threshold_percent=percent)


class MemberOut(Out):
    object: Literal["member"]
    id: str
    email: str
    name: str
    role: Literal["owner", "admin", "member"]
    approval_level: str | None = Field(
        validation_alias="approval_level_id",
        description="The level the member approves at, if any.",
    )
    created: Time = Field(validation_alias="created_at")
    removed: Time | None = Field(validation_alias="removed_at", description=REMOVED_DESCRIPTION)


class MemberList(ListOf):
    data: list[MemberOut]
