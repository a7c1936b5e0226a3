"""What the audit trail's API accepts and returns."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints

from ..schemas import ActorOut, ListOf, ListQuery, Recorded, Time

# Every type of event the services record (webhook endpoints subscribe to these).
EVENT_TYPES = frozenset(
    {
        *(
            f"approval.{action}"
            for action in (
                "created",
                "updated",
                "submitted",
                "step_approved",
                "approved",
                "rejected",
                "changes_requested",
                "recalled",
                "canceled",
                "deleted",
                "expired",
            )
        ),
        "comment.created",
        "api_key.generated",
        "api_key.rolled",
        "api_key.revoked",
        "member.added",
        "member.role_changed",
        "member.level_changed",
        "member.signed_out_everywhere",
        "member.password_reset",
        "member.removed",
        "member.notification_preferences_changed",
        "approval_level.created",
        "approval_level.updated",
        "approval_level.deleted",
        "organization.created",
        "organization.updated",
        "product.created",
        "product.updated",
        "product.archived",
        "product.deleted",
        "webhook_endpoint.created",
        "webhook_endpoint.updated",
        "webhook_endpoint.secret_rotated",
        "webhook_endpoint.disabled",
        "webhook_endpoint.enabled",
        "webhook_endpoint.deleted",
        "notification_destination.created",
        "notification_destination.updated",
        "notification_destination.enabled",
        "notification_destination.disabled",
        "notification_destination.tested",
        "notification_destination.deleted",
    }
)
EVENT_KINDS = frozenset(each.split(".", 1)[0] for each in EVENT_TYPES)

# ``approval.approved``, or every type of a kind: ``api_key.*``.
EventType = Annotated[
    str, StringConstraints(strict=True, max_length=48, pattern=r"^[a-z_]+\.([a-z_]+|\*)$")
]


class EventListQuery(ListQuery):
    type: list[EventType] = Field(
        [],
        max_length=20,
        description="Only events of these types (repeat the parameter); `api_key.*` matches "
        "every type of a kind.",
    )


class EventOut(Recorded):
    object: Literal["event"]
    id: str
    type: str = Field(description="What happened, such as `approval.approved`.")
    approval: str | None = Field(
        validation_alias="approval_id", description="The approval it concerns, if any."
    )
    actor: ActorOut
    data: dict[str, Any]
    created: Time = Field(validation_alias="created_at")


class EventList(ListOf):
    data: list[EventOut]
