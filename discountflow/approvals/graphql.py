"""Approvals and approval levels over GraphQL: the same services, rules and shapes as REST.

An ``Approval`` object is an ``ApprovalOut`` (the shape REST answers); its decisions, comments
and events are read for every approval of the response at once (``Context.loader``).
"""

from __future__ import annotations

import strawberry
from strawberry.types import Info

from ..audit.graphql import Event, Participant
from ..audit.schemas import EventOut
from ..graphql_base import (
    JSON,
    Connection,
    DateTime,
    Deleted,
    Long,
    actor,
    check_first,
    page,
    validated,
)
from . import levels, queries, services
from .models import ApprovalStatus, DecisionType, StepStatus
from .schemas import (
    ApprovalCreate,
    ApprovalListQuery,
    ApprovalOut,
    ApprovalUpdate,
    CommentInput,
    CommentOut,
    CommentRequiredInput,
    DecisionInput,
    DecisionOut,
    LevelCreate,
    LevelOut,
    LevelUpdate,
)

ApprovalStatusEnum = strawberry.enum(ApprovalStatus, name="ApprovalStatus")
StepStatusEnum = strawberry.enum(StepStatus, name="StepStatus")
DecisionTypeEnum = strawberry.enum(DecisionType, name="DecisionType")


# --- types -------------------------------------------------------------------------------------


@strawberry.type(description="One line of an approval, in minor units of its currency.")
class LineItem:
    id: strawberry.ID
    product: strawberry.ID | None = strawberry.field(
        description="The product of the price book, if any."
    )
    sku: str
    description: str
    custom: bool = strawberry.field(
        description="A custom line: its list price was typed in, not taken from the book."
    )
    quantity: int
    unit_list_price: Long = strawberry.field(
        description="The book's price when the line was saved (custom lines: as typed)."
    )
    unit_price: Long
    list_amount: Long
    amount: Long
    discount_amount: Long
    discount_percent: float


@strawberry.type(description="One level an approval passes in its current round.")
class Step:
    id: strawberry.ID
    position: int
    approval_level: strawberry.ID | None
    level_name: str
    level_rank: int
    status: StepStatusEnum
    decided_by: strawberry.ID | None
    decided: DateTime | None


@strawberry.type(description="A decision: approve, reject, request changes or auto-approve.")
class Decision:
    id: strawberry.ID
    approval: strawberry.ID
    step: strawberry.ID | None
    type: DecisionTypeEnum
    comment: str
    actor: Participant
    created: DateTime


@strawberry.type
class Comment:
    id: strawberry.ID
    approval: strawberry.ID
    body: str
    actor: Participant
    created: DateTime


@strawberry.type(description="A discount request on a deal. Totals are computed by the server.")
class Approval:
    id: strawberry.ID
    title: str
    customer: str
    deal_reference: str
    currency: str
    justification: str
    status: ApprovalStatusEnum
    requested_by: strawberry.ID
    list_amount: Long = strawberry.field(description="Sum of list prices, minor units.")
    amount: Long = strawberry.field(description="Sum of requested prices, minor units.")
    discount_amount: Long
    discount_percent: float
    max_line_discount_percent: float
    required_approval_level: strawberry.ID | None
    awaiting_approval_level: strawberry.ID | None
    submitted: DateTime | None
    decided: DateTime | None
    valid_until: DateTime | None
    metadata: JSON
    created: DateTime
    updated: DateTime

    # The object is an ApprovalOut: ``self`` below is that object.
    @strawberry.field
    def line_items(self, first: int) -> list[LineItem]:
        return self.line_items[: check_first(first)]

    @strawberry.field(description="The steps of the current submission, in order.")
    def steps(self, first: int) -> list[Step]:
        return self.steps[: check_first(first)]

    @strawberry.field(description="Its decisions, newest first.")
    def decisions(self, info: Info, first: int) -> list[Decision]:
        loader = info.context.loader(
            ("decisions", check_first(first)),
            lambda ids: queries.decisions_of(actor(info), ids, first),
        )
        return [DecisionOut.of(row) for row in loader.load(self.id)]

    @strawberry.field(description="Its comments, newest first.")
    def comments(self, info: Info, first: int) -> list[Comment]:
        loader = info.context.loader(
            ("comments", check_first(first)),
            lambda ids: queries.comments_of(actor(info), ids, first),
        )
        return [CommentOut.of(row) for row in loader.load(self.id)]

    @strawberry.field(description="Its audit trail, newest first.")
    def events(self, info: Info, first: int) -> list[Event]:
        loader = info.context.loader(
            ("events", check_first(first)), lambda ids: queries.events_of(actor(info), ids, first)
        )
        return [EventOut.of(row) for row in loader.load(self.id)]


@strawberry.type
class Amount:
    amount: Long
    currency: str


@strawberry.type(description='A limit of authority: "Manager up to 15 %, VP up to 30 %".')
class ApprovalLevel:
    id: strawberry.ID
    name: str
    rank: int
    max_discount_percent: float
    max_discount_amount: Amount | None
    created: DateTime
    updated: DateTime


# --- inputs (validated by the same pydantic models as REST) ------------------------------------


@strawberry.input(
    description="A product of the price book (product or sku), whose list price the book gives; "
    "or a custom line (description and unitListPrice), where the organization allows them."
)
class LineItemInput:
    quantity: int
    unit_price: Long
    product: strawberry.ID | None = strawberry.UNSET
    sku: str | None = strawberry.UNSET
    description: str | None = strawberry.UNSET
    unit_list_price: Long | None = strawberry.UNSET


@strawberry.input
class ApprovalCreateInput:
    title: str
    customer: str
    currency: str
    line_items: list[LineItemInput] | None = strawberry.UNSET
    deal_reference: str | None = strawberry.UNSET
    justification: str | None = strawberry.UNSET
    metadata: JSON | None = strawberry.UNSET
    requested_by: strawberry.ID | None = strawberry.UNSET
    submit: bool | None = strawberry.UNSET


@strawberry.input(description="Fields left out stay as they are; lineItems replaces the list.")
class ApprovalUpdateInput:
    title: str | None = strawberry.UNSET
    customer: str | None = strawberry.UNSET
    currency: str | None = strawberry.UNSET
    line_items: list[LineItemInput] | None = strawberry.UNSET
    deal_reference: str | None = strawberry.UNSET
    justification: str | None = strawberry.UNSET
    metadata: JSON | None = strawberry.UNSET


@strawberry.input
class AmountCapInput:
    amount: Long
    currency: str


@strawberry.input
class ApprovalLevelCreateInput:
    name: str
    rank: int
    max_discount_percent: float
    max_discount_amount: AmountCapInput | None = strawberry.UNSET


@strawberry.input(description="Fields left out stay as they are; a null cap removes it.")
class ApprovalLevelUpdateInput:
    name: str | None = strawberry.UNSET
    rank: int | None = strawberry.UNSET
    max_discount_percent: float | None = strawberry.UNSET
    max_discount_amount: AmountCapInput | None = strawberry.UNSET


# --- queries -----------------------------------------------------------------------------------


def _approval(info: Info, view) -> ApprovalOut:
    shaped = ApprovalOut.of(view)
    info.context.met([shaped.id])
    return shaped


@strawberry.type
class Query:
    @strawberry.field(description="Approvals, newest first; filter as GET /v2/approvals does.")
    def approvals(
        self,
        info: Info,
        first: int,
        after: str | None = None,
        status: list[ApprovalStatusEnum] | None = None,
        requested_by: strawberry.ID | None = None,
        awaiting_decision_by: strawberry.ID | None = None,
        customer: str | None = None,
    ) -> Connection[Approval]:
        query = validated(
            ApprovalListQuery,
            {
                "limit": first,
                "starting_after": after,
                "status": [each.value for each in status or ()],
                "requested_by": requested_by,
                "awaiting_decision_by": awaiting_decision_by,
                "customer": customer,
            },
            argument=None,
            names={"limit": "first", "starting_after": "after"},
        )
        views, has_more = queries.list_approvals(actor(info), query, page(first, after))
        found = [ApprovalOut.of(view) for view in views]
        info.context.met(each.id for each in found)
        return Connection.of(found, has_more)

    @strawberry.field(description="One approval; null (with an error) when there is none.")
    def approval(self, info: Info, id: strawberry.ID) -> Approval | None:
        return _approval(info, queries.get_approval(actor(info), id))

    @strawberry.field(description="The approval levels, newest first.")
    def approval_levels(
        self, info: Info, first: int, after: str | None = None
    ) -> Connection[ApprovalLevel]:
        found, has_more = levels.list_levels(actor(info), page(first, after))
        return Connection.of([LevelOut.of(level) for level in found], has_more)


# --- mutations ---------------------------------------------------------------------------------


@strawberry.type
class Mutation:
    @strawberry.mutation(description="Create a draft, or submit it at once with submit: true.")
    def create_approval(self, info: Info, input: ApprovalCreateInput) -> Approval | None:
        data = validated(ApprovalCreate, input)
        return _approval(info, services.create_approval(actor(info), data))

    @strawberry.mutation(description="Change a draft or an approval sent back for changes.")
    def update_approval(
        self, info: Info, id: strawberry.ID, input: ApprovalUpdateInput
    ) -> Approval | None:
        data = validated(ApprovalUpdate, input)
        return _approval(info, services.update_approval(actor(info), id, data))

    @strawberry.mutation(description="Delete a draft.")
    def delete_approval(self, info: Info, id: strawberry.ID) -> Deleted | None:
        services.delete_approval(actor(info), id)
        return Deleted(object="approval", id=id, deleted=True)

    @strawberry.mutation(description="Submit a draft or a changed approval; its route freezes.")
    def submit_approval(self, info: Info, id: strawberry.ID) -> Approval | None:
        return _approval(info, services.submit(actor(info), id))

    @strawberry.mutation(description="Approve the active step (never who took part in it).")
    def approve_approval(
        self, info: Info, id: strawberry.ID, comment: str | None = strawberry.UNSET
    ) -> Approval | None:
        data = validated(DecisionInput, {"comment": comment}, argument=None)
        return _approval(info, services.approve(actor(info), id, data.comment))

    @strawberry.mutation(description="Reject the whole approval (a comment is required).")
    def reject_approval(self, info: Info, id: strawberry.ID, comment: str) -> Approval | None:
        data = validated(CommentRequiredInput, {"comment": comment}, argument=None)
        return _approval(info, services.reject(actor(info), id, data.comment))

    @strawberry.mutation(description="Send the approval back for changes (a comment is required).")
    def request_changes(self, info: Info, id: strawberry.ID, comment: str) -> Approval | None:
        data = validated(CommentRequiredInput, {"comment": comment}, argument=None)
        return _approval(info, services.request_changes(actor(info), id, data.comment))

    @strawberry.mutation(description="Take a pending approval back to draft.")
    def recall_approval(self, info: Info, id: strawberry.ID) -> Approval | None:
        return _approval(info, services.recall(actor(info), id))

    @strawberry.mutation(description="Cancel a draft, pending or changes-requested approval.")
    def cancel_approval(
        self, info: Info, id: strawberry.ID, comment: str | None = strawberry.UNSET
    ) -> Approval | None:
        data = validated(DecisionInput, {"comment": comment}, argument=None)
        return _approval(info, services.cancel(actor(info), id, data.comment))

    @strawberry.mutation(description="Comment on an approval.")
    def add_comment(self, info: Info, approval_id: strawberry.ID, body: str) -> Comment | None:
        data = validated(CommentInput, {"body": body}, argument=None)
        return CommentOut.of(services.add_comment(actor(info), approval_id, data.body))

    @strawberry.mutation(description="Add an approval level (owner and admins).")
    def create_approval_level(
        self, info: Info, input: ApprovalLevelCreateInput
    ) -> ApprovalLevel | None:
        return LevelOut.of(levels.create_level(actor(info), validated(LevelCreate, input)))

    @strawberry.mutation(description="Change an approval level (routed steps keep theirs).")
    def update_approval_level(
        self, info: Info, id: strawberry.ID, input: ApprovalLevelUpdateInput
    ) -> ApprovalLevel | None:
        data = validated(LevelUpdate, input)
        return LevelOut.of(levels.update_level(actor(info), id, data))

    @strawberry.mutation(description="Delete an approval level no open step waits on.")
    def delete_approval_level(self, info: Info, id: strawberry.ID) -> Deleted | None:
        levels.delete_level(actor(info), id)
        return Deleted(object="approval_level", id=id, deleted=True)
