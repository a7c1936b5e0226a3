"""The organization and its members over GraphQL: the same services and rules as REST."""

from __future__ import annotations

import strawberry
from strawberry.types import Info

from ..graphql_base import Connection, DateTime, actor, page, validated
from . import services
from .models import CustomLineItems, Role
from .schemas import (
    REMINDER_DESCRIPTION,
    REMOVED_DESCRIPTION,
    MemberOut,
    MemberUpdate,
    OrganizationOut,
    OrganizationUpdate,
)

RoleEnum = strawberry.enum(Role, name="Role")
CustomLineItemsEnum = strawberry.enum(CustomLineItems, name="CustomLineItems")


@strawberry.type
class Organization:
    id: strawberry.ID
    name: str
    slug: str
    auto_approve_threshold_percent: float = strawberry.field(
        description="Discounts up to this percent are approved at once."
    )
    default_validity_days: int = strawberry.field(description="How long an approved price holds.")
    reminder_interval_hours: int = strawberry.field(description=REMINDER_DESCRIPTION)
    custom_line_items: CustomLineItemsEnum = strawberry.field(
        description="Whether line items may carry a typed list price (never approved at once)."
    )
    created: DateTime
    updated: DateTime


@strawberry.type
class Member:
    id: strawberry.ID
    email: str
    name: str
    role: RoleEnum
    approval_level: strawberry.ID | None = strawberry.field(
        description="The approval level the member decides at, if any."
    )
    created: DateTime
    removed: DateTime | None = strawberry.field(description=REMOVED_DESCRIPTION)


@strawberry.input
class OrganizationUpdateInput:
    name: str | None = strawberry.UNSET
    auto_approve_threshold_percent: float | None = strawberry.UNSET
    default_validity_days: int | None = strawberry.UNSET
    reminder_interval_hours: int | None = strawberry.UNSET
    custom_line_items: CustomLineItemsEnum | None = strawberry.UNSET


@strawberry.input(description="Fields left out stay as they are; a null approvalLevel clears it.")
class MemberUpdateInput:
    role: RoleEnum | None = strawberry.UNSET
    approval_level: strawberry.ID | None = strawberry.UNSET


@strawberry.type
class Query:
    @strawberry.field(description="The organization and its settings.")
    def organization(self, info: Info) -> Organization:
        return OrganizationOut.of(services.get_organization(actor(info)))

    @strawberry.field(description="The organization's members, newest first (not those removed).")
    def members(self, info: Info, first: int, after: str | None = None) -> Connection[Member]:
        found, has_more = services.list_members(actor(info), page(first, after))
        return Connection.of([MemberOut.of(member) for member in found], has_more)

    @strawberry.field(
        description="One member (one removed too); null (with an error) when there is none."
    )
    def member(self, info: Info, id: strawberry.ID) -> Member | None:
        return MemberOut.of(services.get_member(actor(info), id))


@strawberry.type
class Mutation:
    @strawberry.mutation(
        description="Change the name, threshold, validity, reminders or custom lines."
    )
    def update_organization(
        self, info: Info, input: OrganizationUpdateInput
    ) -> Organization | None:
        data = validated(OrganizationUpdate, input)
        return OrganizationOut.of(services.update_organization(actor(info), data))

    @strawberry.mutation(description="Change a member's role or approval level.")
    def update_member(
        self, info: Info, id: strawberry.ID, input: MemberUpdateInput
    ) -> Member | None:
        data = validated(MemberUpdate, input)
        return MemberOut.of(services.update_member(actor(info), id, data))

    @strawberry.mutation(
        description="Remove a member who left (owner and admins; never the owner, nobody "
        "themselves): they sign in to nothing and are told nothing; history still names them."
    )
    def remove_member(self, info: Info, id: strawberry.ID) -> Member | None:
        return MemberOut.of(services.remove_member(actor(info), id))
