"""What the audit trail's API accepts and returns."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints

from ..schemas import ActorOut, ListOf, ListQuery, Out, Time

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


class EventOut(Out):
    object: Literal["event"]
    id: str
    type: str = Field(description="What happened, such as `approval.approved`.")
    approval: str | None = Field(description="The approval it concerns, if any.")
    actor: ActorOut
    data: dict[str, Any]
    created: Time

    sources = Out.sources | {"approval": "approval_id"}


class EventList(ListOf):
    data: list[EventOut]
