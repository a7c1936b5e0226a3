"""What the notifications API accepts and returns: a member's email preferences, the
organization's chat and push destinations, and the notifications sent."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, StrictBool

from ..schemas import Input, Integer, ListOf, ListQuery, Out, Time, optional, text
from .models import Channel, NotificationKind, NotificationStatus

DESCRIPTIONS = {
    "decision_requested": "Email when a request waits for my decision.",
    "reminder": "Email when a request has waited for my decision past the reminder interval.",
    "approved": "Email when my request is approved.",
    "rejected": "Email when my request is rejected.",
    "changes_requested": "Email when changes to my request are asked for.",
    "commented": "Email when someone comments on a request I took part in.",
    "digest": "Send these emails once a day, together, at digest_hour, instead of one by one.",
    "digest_hour": "The hour (UTC, 0-23) the daily digest is sent at: 8 unless chosen.",
}


class NotificationPreferencesUpdate(Input):
    """Kinds left out stay as they are."""

    decision_requested: StrictBool = optional(description=DESCRIPTIONS["decision_requested"])
    reminder: StrictBool = optional(description=DESCRIPTIONS["reminder"])
    approved: StrictBool = optional(description=DESCRIPTIONS["approved"])
    rejected: StrictBool = optional(description=DESCRIPTIONS["rejected"])
    changes_requested: StrictBool = optional(description=DESCRIPTIONS["changes_requested"])
    commented: StrictBool = optional(description=DESCRIPTIONS["commented"])
    digest: StrictBool = optional(description=DESCRIPTIONS["digest"])
    digest_hour: Integer = optional(ge=0, le=23, description=DESCRIPTIONS["digest_hour"])


class NotificationPreferencesOut(Out):
    object: Literal["notification_preferences"]
    member: str = Field(validation_alias="user_id", description="The member they belong to.")
    decision_requested: bool = Field(description=DESCRIPTIONS["decision_requested"])
    reminder: bool = Field(description=DESCRIPTIONS["reminder"])
    approved: bool = Field(description=DESCRIPTIONS["approved"])
    rejected: bool = Field(description=DESCRIPTIONS["rejected"])
    changes_requested: bool = Field(description=DESCRIPTIONS["changes_requested"])
    commented: bool = Field(description=DESCRIPTIONS["commented"])
    digest: bool = Field(description=DESCRIPTIONS["digest"])
    digest_hour: int = Field(description=DESCRIPTIONS["digest_hour"])
    updated: Time | None = Field(
        validation_alias="updated_at",
        description="When the member last changed them (null: never).",
    )


# --- the organization's chat and push destinations ---------------------------------------------

MAX_URL_LENGTH = 2048
KIND_DESCRIPTIONS = {
    NotificationKind.DECISION_REQUESTED: "a request waits for a decision",
    NotificationKind.REMINDER: "a request has waited past the reminder interval",
    NotificationKind.APPROVED: "a request is approved",
    NotificationKind.REJECTED: "a request is rejected",
    NotificationKind.CHANGES_REQUESTED: "changes to a request are asked for",
    NotificationKind.COMMENTED: "a request is commented on",
}
Kinds = Annotated[
    list[NotificationKind],
    Field(min_length=1, max_length=len(NotificationKind)),
    AfterValidator(lambda kinds: list(dict.fromkeys(kinds))),
]
Name = text(100, min_length=1)
AppriseUrl = text(MAX_URL_LENGTH, min_length=1)
_URL = (
    "An Apprise URL: `slack://…`, `https://hooks.slack.com/services/…`, `workflows://…` "
    "(Microsoft Teams), `discord://…`, `mmosts://…` (Mattermost), `ntfys://…`, `jsons://…`."
)
_KINDS = "What it is told of: " + "; ".join(
    f"`{kind.value}`: {said}" for kind, said in KIND_DESCRIPTIONS.items()
)


class DestinationCreate(Input):
    name: Name = Field(description="What the people who manage it call it (`#sales-approvals`).")
    url: AppriseUrl = Field(description=_URL)
    events: Kinds = Field(list(NotificationKind), description=_KINDS)
    enabled: StrictBool = True


class DestinationUpdate(Input):
    """Fields left out stay as they are."""

    name: Name = optional()
    url: AppriseUrl = optional(description=_URL)
    events: Kinds = optional(description=_KINDS)
    enabled: StrictBool = optional()


class DestinationOut(Out):
    object: Literal["notification_destination"]
    id: str
    name: str
    service: str = Field(description="The service its URL names (`Slack`, `ntfy`).")
    url: str = Field(
        validation_alias="masked_url",
        description="Its URL with every token and password hidden (`slack://T...2/B...D/x...z/`):"
        " the URL itself is never shown again.",
    )
    events: list[NotificationKind]
    enabled: bool
    last_attempt: Time | None = Field(validation_alias="last_attempt_at")
    last_error: str | None = Field(description="Why its last attempt failed; null if it worked.")
    created: Time = Field(validation_alias="created_at")
    updated: Time = Field(validation_alias="updated_at")

    @classmethod
    def read(cls, destination: Any, **values: Any) -> Any:
        return super().read(destination, last_error=destination.last_error or None, **values)


class DestinationList(ListOf):
    data: list[DestinationOut]


class NotificationListQuery(ListQuery):
    status: list[NotificationStatus] = Field(
        [], description="Only notifications in these statuses (repeat the parameter)."
    )
    channel: Channel | None = Field(None, description="Only emails, or only chat messages.")
    destination: str | None = Field(None, description="Only those sent to this destination.")


class NotificationOut(Out):
    object: Literal["notification"]
    id: str
    channel: Channel
    kind: str = Field(description="What it tells (`decision_requested`, …, or `test`).")
    event: str = Field(validation_alias="event_id", description="The event that caused it.")
    approval: str | None = Field(validation_alias="approval_id")
    recipient: str | None = Field(
        validation_alias="recipient_id", description="The member told (an email)."
    )
    destination: str | None = Field(
        validation_alias="destination_id", description="The destination told (a chat message)."
    )
    status: NotificationStatus
    attempts: int
    last_attempt: Time | None = Field(validation_alias="last_attempt_at")
    last_error: str = Field(description="Why the last attempt failed or was skipped, if it was.")
    created: Time = Field(validation_alias="created_at")
    sent: Time | None = Field(validation_alias="sent_at")


class NotificationList(ListOf):
    data: list[NotificationOut]
