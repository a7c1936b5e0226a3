"""What the approvals API accepts and returns: the validated inputs services take, and the one
shape of each resource (REST, OpenAPI and GraphQL alike)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, StrictBool, StringConstraints, ValidationInfo, field_validator

from ..products.schemas import SKU_LENGTH
from ..schemas import (
    MAX_UNIT_PRICE,
    ActorOut,
    Currency,
    Input,
    Integer,
    ListOf,
    ListQuery,
    ObjectId,
    Out,
    Percent,
    Recorded,
    Time,
    Timestamp,
    optional,
    percent_of,
    text,
    to_percent,
)
from .models import ApprovalStatus, DecisionType, StepStatus

# What an approval may hold: the API's models below and the dashboard's forms both use these.
MAX_LINE_ITEMS = 100
TITLE_LENGTH = CUSTOMER_LENGTH = 200
DEAL_REFERENCE_LENGTH = LEVEL_NAME_LENGTH = 100
DESCRIPTION_LENGTH = 500
JUSTIFICATION_LENGTH = COMMENT_LENGTH = 5000
MAX_QUANTITY = 1_000_000
MAX_METADATA_KEYS = 20

MetadataKey = Annotated[str, StringConstraints(strict=True, min_length=1, max_length=40)]
MetadataValue = Annotated[str, StringConstraints(strict=True, max_length=500)]
Metadata = Annotated[dict[MetadataKey, MetadataValue], Field(max_length=MAX_METADATA_KEYS)]
CommentText = text(COMMENT_LENGTH, min_length=1)
Title = text(TITLE_LENGTH, min_length=1)
Customer = text(CUSTOMER_LENGTH, min_length=1)
CustomerSearch = text(CUSTOMER_LENGTH)
DealReference = text(DEAL_REFERENCE_LENGTH)
Justification = text(JUSTIFICATION_LENGTH)
Sku = text(SKU_LENGTH)
Description = text(DESCRIPTION_LENGTH, min_length=1)
LevelName = text(LEVEL_NAME_LENGTH, min_length=1)


# --- input -------------------------------------------------------------------------------------


class LineItemInput(Input):
    """A line of the price book — ``product`` or ``sku``, whose list price the book gives in
    the approval's currency — or, where the organization allows them, a custom line: no product,
    a ``description`` and a typed ``unit_list_price``. The services apply these rules."""

    product: ObjectId = optional(description="A product of the price book (`prd_…`).")
    sku: Sku = optional(description="Or the SKU of a product of the price book.")
    description: Description = optional(
        description="Required on a custom line; a product's line takes the product's name "
        "when it is left out."
    )
    quantity: Integer = Field(ge=1, le=MAX_QUANTITY)
    unit_list_price: Integer = optional(
        ge=1,
        le=MAX_UNIT_PRICE,
        description="Custom lines only: the list price of one unit, in minor units. A "
        "product's line takes it from the price book (sending it there is refused).",
    )
    unit_price: Integer = Field(
        ge=0, le=MAX_UNIT_PRICE, description="Requested price of one unit, in minor units."
    )

    @field_validator("unit_price")
    @classmethod
    def _not_above_list(cls, value: int, info: ValidationInfo) -> int:
        list_price = info.data.get("unit_list_price")
        if list_price is not None and value > list_price:
            raise ValueError("unit_price must not be above unit_list_price")
        return value

    @property
    def names_a_product(self) -> bool:
        return self.product is not None or bool(self.sku)


LineItems = Annotated[list[LineItemInput], Field(max_length=MAX_LINE_ITEMS)]


class ApprovalCreate(Input):
    title: Title
    customer: Customer
    currency: Currency = Field(description="ISO 4217 code, such as USD.")
    deal_reference: DealReference = ""
    justification: Justification = ""
    line_items: LineItems = []
    metadata: Metadata = {}
    requested_by: ObjectId = optional(
        description="The member asking (admins, the owner and API keys may name another)."
    )
    submit: StrictBool = Field(False, description="Submit at once instead of saving a draft.")


class ApprovalUpdate(Input):
    """Fields left out stay as they are; ``line_items`` replaces the whole list."""

    title: Title = optional()
    customer: Customer = optional()
    currency: Currency = optional()
    deal_reference: DealReference = optional()
    justification: Justification = optional()
    line_items: LineItems = optional()
    metadata: Metadata = optional()


class NoInput(Input):
    """An action that takes no parameters: an empty body, or none."""


class DecisionInput(Input):
    comment: CommentText = optional()


class CommentRequiredInput(Input):
    comment: CommentText


class CommentInput(Input):
    body: CommentText


class AmountCap(Input):
    """The largest total discount a level approves, in minor units of one currency."""

    amount: Integer = Field(ge=0, le=MAX_UNIT_PRICE * MAX_QUANTITY)
    currency: Currency


class LevelCreate(Input):
    name: LevelName
    rank: Integer = Field(ge=1, le=100, description="1 is the lowest level.")
    max_discount_percent: Percent = Field(description="The largest line discount it approves.")
    max_discount_amount: AmountCap | None = Field(
        None,
        description="Optionally also the largest total discount it approves. An approval in "
        "another currency goes to a higher level.",
    )


class LevelUpdate(Input):
    name: LevelName = optional()
    rank: Integer = optional(ge=1, le=100)
    max_discount_percent: Percent = optional()
    max_discount_amount: AmountCap | None = optional(description="`null` removes the cap.")


class ApprovalListQuery(ListQuery):
    status: list[ApprovalStatus] = Field(
        [], description="Only approvals in these statuses (repeat the parameter)."
    )
    requested_by: ObjectId = optional(description="Only approvals this member asked for.")
    awaiting_decision_by: ObjectId = optional(
        description="Only pending approvals this member may decide now."
    )
    customer: CustomerSearch = optional(description="Customer name contains this text.")
    created_gte: Timestamp = optional(
        alias="created[gte]", description="Created at or after this time (RFC 3339)."
    )
    created_lte: Timestamp = optional(
        alias="created[lte]", description="Created at or before this time (RFC 3339)."
    )


# --- output ------------------------------------------------------------------------------------


class LineItemOut(Out):
    object: Literal["line_item"]
    id: str
    product: str | None = Field(
        validation_alias="product_id", description="The product of the price book, if any."
    )
    sku: str
    description: str
    custom: bool = Field(
        description="A custom line: its list price was typed in, not taken from the book."
    )
    quantity: int
    unit_list_price: int = Field(
        description="List price of one unit, minor units: the book's price when the line was "
        "saved (it does not follow later changes to the book)."
    )
    unit_price: int
    list_amount: int
    amount: int
    discount_amount: int
    discount_percent: float

    @classmethod
    def read(cls, item: Any) -> Any:
        list_amount = item.quantity * item.unit_list_price
        amount = item.quantity * item.unit_price
        return super().read(
            item,
            list_amount=list_amount,
            amount=amount,
            discount_amount=list_amount - amount,
            discount_percent=percent_of(
                item.unit_list_price - item.unit_price, item.unit_list_price
            ),
        )


class StepOut(Out):
    object: Literal["approval_step"]
    id: str
    position: int
    approval_level: str | None = Field(validation_alias="approval_level_id")
    level_name: str
    level_rank: int
    status: StepStatus
    decided_by: str | None = Field(validation_alias="decided_by_id")
    decided: Time | None = Field(validation_alias="decided_at")


class ApprovalOut(Out):
    object: Literal["approval"]
    id: str
    title: str
    customer: str
    deal_reference: str
    currency: str
    justification: str
    status: ApprovalStatus
    requested_by: str = Field(validation_alias="requested_by_id")
    line_items: list[LineItemOut]
    list_amount: int = Field(description="Sum of list prices, minor units.")
    amount: int = Field(description="Sum of requested prices, minor units.")
    discount_amount: int
    discount_percent: float
    max_line_discount_percent: float
    required_approval_level: str | None = Field(validation_alias="required_level_id")
    awaiting_approval_level: str | None = Field(validation_alias="awaiting_level_id")
    steps: list[StepOut] = Field(description="The steps of the current submission.")
    submitted: Time | None = Field(validation_alias="submitted_at")
    decided: Time | None = Field(validation_alias="decided_at")
    valid_until: Time | None
    metadata: dict[str, str] = Field(validation_alias="metadata_")
    created: Time = Field(validation_alias="created_at")
    updated: Time = Field(validation_alias="updated_at")

    @classmethod
    def read(cls, view: Any) -> Any:
        """An approval with its line items and current steps (a ``queries.ApprovalView``)."""
        approval = view.approval
        discount = approval.list_amount - approval.amount
        return super().read(
            approval,
            status=view.status,
            line_items=[LineItemOut.read(item) for item in view.line_items],
            steps=[StepOut.read(step) for step in view.steps],
            discount_amount=discount,
            discount_percent=percent_of(discount, approval.list_amount),
            max_line_discount_percent=to_percent(approval.max_line_discount_bps),
        )


class ApprovalList(ListOf):
    data: list[ApprovalOut]


class AmountOut(Out):
    amount: int
    currency: str

    @classmethod
    def cap_of(cls, level: Any) -> AmountOut | None:
        """A level's amount cap, if it has one."""
        if level.max_discount_amount is None:
            return None
        return cls(amount=level.max_discount_amount, currency=level.max_discount_currency)


class RouteStepOut(Out):
    position: int
    approval_level: str
    level_name: str
    level_rank: int
    max_discount_percent: float
    max_discount_amount: AmountOut | None


class PreviewOut(Out):
    object: Literal["approval_route"]
    approval: str
    auto_approve: bool
    reason: str = Field(description="Why the route is what it is, in a sentence.")
    max_line_discount_percent: float
    auto_approve_threshold_percent: float
    required_approval_level: str | None
    steps: list[RouteStepOut]

    @classmethod
    def of(cls, approval_id: str, route: Any) -> PreviewOut:
        """The route (a ``routing.Route``) a submit of this approval would take."""
        steps = [
            RouteStepOut(
                position=position,
                approval_level=level.id,
                level_name=level.name,
                level_rank=level.rank,
                max_discount_percent=to_percent(level.max_discount_bps),
                max_discount_amount=AmountOut.cap_of(level),
            )
            for position, level in enumerate(route.levels, start=1)
        ]
        return super().of(
            route,
            approval=approval_id,
            max_line_discount_percent=to_percent(route.max_line_discount_bps),
            auto_approve_threshold_percent=to_percent(route.threshold_bps),
            required_approval_level=route.required.id if route.required else None,
            steps=steps,
        )


class DecisionOut(Recorded):
    object: Literal["decision"]
    id: str
    approval: str = Field(validation_alias="approval_id")
    step: str | None = Field(validation_alias="step_id")
    type: DecisionType
    comment: str
    actor: ActorOut
    created: Time = Field(validation_alias="created_at")


class DecisionList(ListOf):
    data: list[DecisionOut]


class CommentOut(Recorded):
    object: Literal["comment"]
    id: str
    approval: str = Field(validation_alias="approval_id")
    body: str
    actor: ActorOut
    created: Time = Field(validation_alias="created_at")


class CommentList(ListOf):
    data: list[CommentOut]


class LevelOut(Out):
    object: Literal["approval_level"]
    id: str
    name: str
    rank: int
    max_discount_percent: float
    max_discount_amount: AmountOut | None
    created: Time = Field(validation_alias="created_at")
    updated: Time = Field(validation_alias="updated_at")

    @classmethod
    def read(cls, level: Any) -> Any:
        return super().read(
            level,
            max_discount_percent=to_percent(level.max_discount_bps),
            max_discount_amount=AmountOut.cap_of(level),
        )


class LevelList(ListOf):
    data: list[LevelOut]
