"""Sample approvals for the demo organization."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from ..auth.models import Organization, User
from ..database import utcnow
from ..extensions import db
from .models import Approval

SAMPLES = [
    ("Acme renewal, 3-year commitment", "Acme Corp", "USD"),
    ("Globex expansion to 200 seats", "Globex", "EUR"),
    ("Initech pilot", "Initech", "USD"),
]


def create_sample_approvals(organization: Organization) -> None:
    """Add a few draft approvals requested by the demo's sales rep."""
    rep = db.session.execute(
        select(User).where(
            User.organization_id == organization.id, User.email == "rep@demo.example"
        )
    ).scalar_one()
    now = utcnow()
    for age, (title, customer, currency) in enumerate(SAMPLES):
        created = now - timedelta(hours=age + 1)
        db.session.add(
            Approval(
                organization_id=organization.id,
                requested_by_id=rep.id,
                title=title,
                customer=customer,
                currency=currency,
                created_at=created,
                updated_at=created,
            )
        )
    db.session.commit()
