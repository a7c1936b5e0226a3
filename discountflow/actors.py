"""Who is acting, with whose authority, through which surface: the one ``Actor`` of every service.

Every service takes an ``Actor`` and decides from it alone, so a surface (REST, GraphQL, the
dashboard, the CLI) never decides authority on its own and a new surface cannot forget a rule:

* a **member** acts with their own role and approval level;
* an **API key** acts for its organization with the owner's authority, limited by its scope:
  a read-only key may read everything the owner may, and change nothing;
* the **CLI** acts as the organization's owner;
* the **system** (auto-approval, the expiry sweep) acts for nobody in particular.
"""

from __future__ import annotations

import enum
from functools import cached_property
from typing import Any

from sqlalchemy import func, select

from .database import begin_write, require_usable_id
from .errors import Conflict, NotFound, PermissionDenied, ReadOnlyKey
from .extensions import db
from .organizations.models import Organization, Role, User


class Surface(enum.StrEnum):
    API = "api"
    GRAPHQL = "graphql"
    DASHBOARD = "dashboard"
    CLI = "cli"
    SYSTEM = "system"


class Actor:
    """A member, an API key (with the owner's authority) or the system, in one organization.

    The member behind a key (the owner) is loaded only when a rule needs it, so a key's plain
    reads cost no query.
    """

    def __init__(
        self,
        organization_id: str,
        *,
        surface: Surface | str,
        user: User | None = None,
        api_key_id: str | None = None,
        read_only: bool = False,
        system: bool = False,
    ) -> None:
        if user is None and api_key_id is None and not system:
            raise ValueError("an actor is a member, an API key or the system")
        self.organization_id = organization_id
        self.surface = Surface(surface)
        self.api_key_id = api_key_id
        self.read_only = read_only
        self.is_system = system
        if user is not None:
            self.__dict__["user"] = user

    # --- making actors ---------------------------------------------------------------------

    @classmethod
    def for_user(cls, user: User, surface: Surface | str) -> Actor:
        """A member acting for themselves (the dashboard)."""
        return cls(user.organization_id, surface=surface, user=user)

    @classmethod
    def for_api_key(
        cls,
        organization_id: str,
        key_id: str,
        *,
        read_only: bool,
        surface: Surface | str = Surface.API,
    ) -> Actor:
        """An API key, acting with the owner's authority and limited by its scope."""
        return cls(organization_id, surface=surface, api_key_id=key_id, read_only=read_only)

    @classmethod
    def for_cli(cls, organization: Organization) -> Actor:
        """The command line, acting as the organization's owner."""
        return cls.for_user(owner_of(organization.id), Surface.CLI)

    @classmethod
    def system(cls, organization_id: str) -> Actor:
        """The service itself (auto-approval, the expiry sweep)."""
        return cls(organization_id, surface=Surface.SYSTEM, system=True)

    # --- who this is -------------------------------------------------------------------------

    @cached_property
    def user(self) -> User:
        """The member whose authority this is: the owner, for an API key."""
        if self.is_system:
            raise PermissionDenied("The system acts for no member.")
        return owner_of(self.organization_id)

    @property
    def type(self) -> str:
        if self.is_system:
            return "system"
        return "api_key" if self.api_key_id is not None else "user"

    @property
    def person_id(self) -> str:
        """The member this actor counts as (a key counts as the owner it acts for)."""
        return self.user.id

    @property
    def role(self) -> str:
        return Role.OWNER.value if self.api_key_id is not None else self.user.role

    @property
    def is_owner(self) -> bool:
        return self.role == Role.OWNER.value

    @property
    def manages_organization(self) -> bool:
        return self.role in (Role.OWNER.value, Role.ADMIN.value)

    @property
    def sees_all_approvals(self) -> bool:
        """Approvers, admins and the owner see every approval of the organization."""
        return self.manages_organization or self.user.approval_level_id is not None

    # --- rules every service shares ----------------------------------------------------------

    def require_write(self) -> None:
        """Refuse a read-only key, whatever surface it came through."""
        if self.read_only:
            raise ReadOnlyKey()

    def require_manager(self, what: str) -> None:
        if not self.manages_organization:
            raise PermissionDenied(f"Only the owner and admins may {what}.")

    def require_owner(self, what: str) -> None:
        if not self.is_owner or self.api_key_id is not None:
            raise PermissionDenied(f"Only the organization owner may {what}.")

    def recorded_as(self) -> dict[str, Any]:
        """The columns every decision, comment and event stores about who acted."""
        if self.is_system:
            return {
                "actor_type": "system",
                "actor_user_id": None,
                "api_key_id": None,
                "surface": Surface.SYSTEM.value,
            }
        return {
            "actor_type": self.type,
            "actor_user_id": self.user.id,
            "api_key_id": self.api_key_id,
            "surface": self.surface.value,
        }

    def __repr__(self) -> str:
        who = self.api_key_id or ("system" if self.is_system else self.__dict__.get("user"))
        return f"<Actor {who} of {self.organization_id} via {self.surface.value}>"


def writing(actor: Actor) -> None:
    """Start a service's write: refuse a read-only actor, then open a write transaction.

    Every service that changes anything calls this first.
    """
    actor.require_write()
    begin_write()


def fetch(actor: Actor, model: Any, object_id: str, noun: str, *, for_update: bool = False) -> Any:
    """Return the ``model`` row of the actor's organization with this id (locked until the
    commit when ``for_update``), or 404 (another organization's id is exactly as missing as an
    unknown one)."""
    require_usable_id(object_id)
    statement = select(model).where(
        model.id == object_id, model.organization_id == actor.organization_id
    )
    if for_update:
        statement = statement.with_for_update()
    found = db.session.execute(statement).scalar_one_or_none()
    if found is None:
        raise NotFound(f"No such {noun}: {object_id!r}.", param="id")
    return found


def owner_of(organization_id: str) -> User:
    """Return an organization's one owner."""
    return db.session.execute(
        select(User).where(User.organization_id == organization_id, User.role == Role.OWNER.value)
    ).scalar_one()


def require_room(actor: Actor, model: Any, most: int, refusal: str) -> None:
    """Refuse (``409 conflict``, ``refusal``) one more ``model`` row than ``most`` in the
    actor's organization. The organization's row is locked meanwhile on PostgreSQL, so two
    creations at once cannot both take the last place (SQLite's writers run one at a time)."""
    db.session.execute(
        select(Organization.id).where(Organization.id == actor.organization_id).with_for_update()
    ).scalar_one()
    count = db.session.execute(
        select(func.count())
        .select_from(model)
        .where(model.organization_id == actor.organization_id)
    ).scalar_one()
    if count >= most:
        raise Conflict(refusal)
