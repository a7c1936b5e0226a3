"""The audit trail over GraphQL: ``events``, and who acted (the ``Actor`` of every record)."""

from __future__ import annotations

import enum

import strawberry
from strawberry.types import Info

from ..actors import Surface
from ..graphql_base import JSON, Connection, DateTime, actor, page, validated
from . import services
from .schemas import EventListQuery, EventOut

SurfaceEnum = strawberry.enum(Surface, name="Surface")


@strawberry.enum(name="ActorType")
class ActorType(enum.StrEnum):
    USER = "user"
    API_KEY = "api_key"
    SYSTEM = "system"


@strawberry.type(name="Actor", description="Who acted: a member, an API key, or the system.")
class Participant:
    type: ActorType
    user: strawberry.ID | None = strawberry.field(
        description="The member, or the owner whose authority a key uses."
    )
    api_key: strawberry.ID | None = strawberry.field(
        description="The public id of the key that acted, if one did."
    )
    surface: SurfaceEnum


@strawberry.type(description="One change in the organization: what, who, through which surface.")
class Event:
    id: strawberry.ID
    type: str = strawberry.field(description="What happened, such as `approval.approved`.")
    approval: strawberry.ID | None
    actor: Participant
    data: JSON
    created: DateTime


@strawberry.type
class Query:
    @strawberry.field(description="The organization's audit trail, newest first (type: kind.*).")
    def events(
        self, info: Info, first: int, after: str | None = None, type: list[str] | None = None
    ) -> Connection[Event]:
        query = validated(
            EventListQuery,
            {"limit": first, "starting_after": after, "type": type},
            argument=None,
            names={"limit": "first", "starting_after": "after"},
        )
        found, has_more = services.list_events(actor(info), page(first, after), query.type)
        return Connection.of([EventOut.of(event) for event in found], has_more)
