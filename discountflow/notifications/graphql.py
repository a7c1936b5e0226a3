"""Notifications over GraphQL: the caller's email preferences, the organization's chat and
push destinations, and what was sent — the same services and rules as REST."""

from __future__ import annotations

import strawberry
from strawberry.types import Info

from ..graphql_base import Connection, DateTime, Deleted, actor, page, validated
from . import destinations, services
from .models import Channel, NotificationKind, NotificationStatus
from .schemas import (
    DestinationCreate,
    DestinationOut,
    DestinationUpdate,
    NotificationListQuery,
    NotificationOut,
    NotificationPreferencesOut,
    NotificationPreferencesUpdate,
)

KindEnum = strawberry.enum(NotificationKind, name="NotificationKind")
StatusEnum = strawberry.enum(NotificationStatus, name="NotificationStatus")
ChannelEnum = strawberry.enum(Channel, name="NotificationChannel")


@strawberry.type(description="Which kinds of email a member wants, and how.")
class NotificationPreferences:
    member: strawberry.ID
    decision_requested: bool
    reminder: bool
    approved: bool
    rejected: bool
    changes_requested: bool
    commented: bool
    digest: bool = strawberry.field(description="Once a day, together, at digestHour.")
    digest_hour: int = strawberry.field(
        description="The digest's hour (UTC, 0-23): 8 unless chosen."
    )
    updated: DateTime | None


@strawberry.input(description="Kinds left out stay as they are.")
class NotificationPreferencesInput:
    decision_requested: bool | None = strawberry.UNSET
    reminder: bool | None = strawberry.UNSET
    approved: bool | None = strawberry.UNSET
    rejected: bool | None = strawberry.UNSET
    changes_requested: bool | None = strawberry.UNSET
    commented: bool | None = strawberry.UNSET
    digest: bool | None = strawberry.UNSET
    digest_hour: int | None = strawberry.UNSET


@strawberry.type(description="A chat or push destination of the organization (by Apprise).")
class NotificationDestination:
    id: strawberry.ID
    name: str
    service: str
    url: str = strawberry.field(description="Its URL, every token and password hidden.")
    events: list[KindEnum]
    enabled: bool
    last_attempt: DateTime | None
    last_error: str | None
    created: DateTime
    updated: DateTime


@strawberry.input
class NotificationDestinationCreateInput:
    name: str
    url: str
    events: list[KindEnum] | None = strawberry.UNSET
    enabled: bool | None = strawberry.UNSET


@strawberry.input(description="Fields left out stay as they are.")
class NotificationDestinationUpdateInput:
    name: str | None = strawberry.UNSET
    url: str | None = strawberry.UNSET
    events: list[KindEnum] | None = strawberry.UNSET
    enabled: bool | None = strawberry.UNSET


@strawberry.type(description="One member or destination told of one event.")
class Notification:
    id: strawberry.ID
    channel: ChannelEnum
    kind: str
    event: strawberry.ID
    approval: strawberry.ID | None
    recipient: strawberry.ID | None
    destination: strawberry.ID | None
    status: StatusEnum
    attempts: int
    last_attempt: DateTime | None
    last_error: str
    created: DateTime
    sent: DateTime | None


@strawberry.type
class Query:
    @strawberry.field(description="Which kinds of email the caller wants.")
    def notification_preferences(self, info: Info) -> NotificationPreferences:
        return NotificationPreferencesOut.of(services.get_preferences(actor(info)))

    @strawberry.field(description="The chat and push destinations, newest first (owner, admins).")
    def notification_destinations(
        self, info: Info, first: int, after: str | None = None
    ) -> Connection[NotificationDestination]:
        found, has_more = destinations.list_destinations(actor(info), page(first, after))
        return Connection.of([DestinationOut.of(each) for each in found], has_more)

    @strawberry.field(description="One destination; null (with an error) when none.")
    def notification_destination(
        self, info: Info, id: strawberry.ID
    ) -> NotificationDestination | None:
        return DestinationOut.of(destinations.get_destination(actor(info), id))

    @strawberry.field(description="The organization's notifications, newest first.")
    def notifications(
        self,
        info: Info,
        first: int,
        after: str | None = None,
        status: list[StatusEnum] | None = None,
        channel: ChannelEnum | None = None,
        destination: strawberry.ID | None = None,
    ) -> Connection[Notification]:
        query = validated(
            NotificationListQuery,
            {
                "status": [each.value for each in status or ()],
                "channel": channel.value if channel else None,
                "destination": destination,
            },
            argument=None,
        )
        found, has_more = destinations.list_notifications(actor(info), query, page(first, after))
        return Connection.of([NotificationOut.of(each) for each in found], has_more)


@strawberry.type
class Mutation:
    @strawberry.mutation(description="Turn kinds of email on or off, or choose the digest.")
    def update_notification_preferences(
        self, info: Info, input: NotificationPreferencesInput
    ) -> NotificationPreferences | None:
        data = validated(NotificationPreferencesUpdate, input)
        return NotificationPreferencesOut.of(services.update_preferences(actor(info), data))

    @strawberry.mutation(description="Add a destination: its URL is never shown again.")
    def create_notification_destination(
        self, info: Info, input: NotificationDestinationCreateInput
    ) -> NotificationDestination | None:
        data = validated(DestinationCreate, input)
        return DestinationOut.of(destinations.create_destination(actor(info), data))

    @strawberry.mutation(description="Change a destination, or enable or disable it.")
    def update_notification_destination(
        self, info: Info, id: strawberry.ID, input: NotificationDestinationUpdateInput
    ) -> NotificationDestination | None:
        data = validated(DestinationUpdate, input)
        return DestinationOut.of(destinations.update_destination(actor(info), id, data))

    @strawberry.mutation(description="Delete a destination.")
    def delete_notification_destination(self, info: Info, id: strawberry.ID) -> Deleted | None:
        destinations.delete_destination(actor(info), id)
        return Deleted(object="notification_destination", id=id, deleted=True)

    @strawberry.mutation(description="Send the destination a test message now.")
    def send_notification_destination_test(
        self, info: Info, id: strawberry.ID
    ) -> Notification | None:
        return NotificationOut.of(destinations.send_test(actor(info), id))
