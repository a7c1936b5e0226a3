"""What the approvals API accepts and returns. Services take the validated inputs."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    Field,
    StrictBool,
    StringConstraints,
    ValidationInfo,
    field_validator,
)

from ..currencies import CURRENCIES
from ..schemas import (
    Input,
    Integer,
    ListOf,
    ListQuery,
    ObjectId,
    Percent,
    Timestamp,
    optional,
    text,
)
from .models import ApprovalStatus, DecisionType, StepStatus

MAX_LINE_ITEMS = 100
MAX_QUANTITY = 1_000_000
# 10^10 minor units a unit; with 10^6 units and 100 lines a total stays below 2^63.
MAX_UNIT_PRICE = 10_000_000_000
MAX_METADATA_KEYS = 20

Currency = Annotated[str, StringConstraints(strict=True, pattern=r"^[A-Za-z]{3}$", to_upper=True)]
MetadataKey = Annotated[str, StringConstraints(strict=True, min_length=1, max_length=40)]
MetadataValue = Annotated[str, StringConstraints(strict=True, max_length=500)]
Metadata = Annotated[dict[MetadataKey, MetadataValue], Field(max_length=MAX_METADATA_KEYS)]
CommentText = text(5000, min_length=1)
Title = text(200, min_length=1)
Customer = text(200, min_length=1)
CustomerSearch = text(200)
DealReference = text(100)
Justification = text(5000)
Sku = text(100)
Description = text(500, min_length=1)
LevelName = text(100, min_length=1)


def _known_currency(code: str) -> str:
    if code not in CURRENCIES:
        raise ValueError(f"{code} is not an ISO 4217 currency code")
    return code


# --- input -------------------------------------------------------------------------------------


class LineItemInput(Input):
    sku: Sku = ""
    description: Description
    quantity: Integer = Field(ge=1, le=MAX_QUANTITY)
    unit_list_price: Integer = Field(
        ge=1, le=MAX_UNIT_PRICE, description="List price of one unit, in minor units."
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

    _currency = field_validator("currency")(_known_currency)


class ApprovalUpdate(Input):
    """Fields left out stay as they are; ``line_items`` replaces the whole list."""

    title: Title = optional()
    customer: Customer = optional()
    currency: Currency = optional()
    deal_reference: DealReference = optional()
    justification: Justification = optional()
    line_items: LineItems = optional()
    metadata: Metadata = optional()

    _currency = field_validator("currency")(_known_currency)


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

    _currency = field_validator("currency")(_known_currency)


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


class SettingsUpdate(Input):
    name: Title = optional()
    auto_approve_threshold_percent: Percent = optional(
        description="Discounts up to this percent are approved at once."
    )
    default_validity_days: Integer = optional(
        ge=1, le=365, description="How long an approved price holds."
    )


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


class ActorOut(BaseModel):
    type: Literal["user", "api_key", "system"]
    user: str | None = Field(description="The member, or the owner whose authority a key uses.")
    api_key: str | None
    surface: Literal["api", "dashboard", "cli", "system"]


class LineItemOut(BaseModel):
    object: Literal["line_item"]
    id: str
    sku: str
    description: str
    quantity: int
    unit_list_price: int
    unit_price: int
    list_amount: int
    amount: int
    discount_amount: int
    discount_percent: float


class StepOut(BaseModel):
    object: Literal["approval_step"]
    id: str
    position: int
    approval_level: str | None
    level_name: str
    level_rank: int
    status: StepStatus
    decided_by: str | None
    decided: AwareDatetime | None


class ApprovalOut(BaseModel):
    object: Literal["approval"]
    id: str
    title: str
    customer: str
    deal_reference: str
    currency: str
    justification: str
    status: ApprovalStatus
    requested_by: str
    line_items: list[LineItemOut]
    list_amount: int = Field(description="Sum of list prices, minor units.")
    amount: int = Field(description="Sum of requested prices, minor units.")
    discount_amount: int
    discount_percent: float
    max_line_discount_percent: float
    required_approval_level: str | None
    awaiting_approval_level: str | None
    steps: list[StepOut] = Field(description="The steps of the current submission.")
    submitted: AwareDatetime | None
    decided: AwareDatetime | None
    valid_until: AwareDatetime | None
    metadata: dict[str, str]
    created: AwareDatetime
    updated: AwareDatetime


class ApprovalList(ListOf):
    data: list[ApprovalOut]


class AmountOut(BaseModel):
    amount: int
    currency: str


class RouteStepOut(BaseModel):
    position: int
    approval_level: str
    level_name: str
    level_rank: int
    max_discount_percent: float
    max_discount_amount: AmountOut | None


class PreviewOut(BaseModel):
    object: Literal["approval_route"]
    approval: str
    auto_approve: bool
    max_line_discount_percent: float
    auto_approve_threshold_percent: float
    required_approval_level: str | None
    steps: list[RouteStepOut]


class DecisionOut(BaseModel):
    object: Literal["decision"]
    id: str
    approval: str
    step: str | None
    type: DecisionType
    comment: str
    actor: ActorOut
    created: AwareDatetime


class DecisionList(ListOf):
    data: list[DecisionOut]


class CommentOut(BaseModel):
    object: Literal["comment"]
    id: str
    approval: str
    body: str
    actor: ActorOut
    created: AwareDatetime


class CommentList(ListOf):
    data: list[CommentOut]


class EventOut(BaseModel):
    object: Literal["event"]
    id: str
    type: str
    approval: str | None
    actor: ActorOut
    data: dict
    created: AwareDatetime


class EventList(ListOf):
    data: list[EventOut]


class LevelOut(BaseModel):
    object: Literal["approval_level"]
    id: str
    name: str
    rank: int
    max_discount_percent: float
    max_discount_amount: AmountOut | None
    created: AwareDatetime
    updated: AwareDatetime


class LevelList(ListOf):
    data: list[LevelOut]


class SettingsOut(BaseModel):
    object: Literal["organization"]
    id: str
    name: str
    slug: str
    auto_approve_threshold_percent: float
    default_validity_days: int
    created: AwareDatetime
    updated: AwareDatetime


class MemberOut(BaseModel):
    object: Literal["member"]
    id: str
    email: str
    name: str
    role: Literal["owner", "admin", "member"]
    approval_level: str | None
    created: AwareDatetime


class MemberList(ListOf):
    data: list[MemberOut]


class DeletedOut(BaseModel):
    object: str
    id: str
    deleted: Literal[True]
