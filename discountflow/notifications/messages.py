"""The emails themselves: subject, plain text and HTML (escaped) parts, and headers that no
value can add to.

Every value that reaches a header (a title in the subject, a member's name) has its line breaks
and other control characters folded into spaces; ``EmailMessage`` refuses any that would still
carry one. The HTML part is rendered with autoescape, so names, titles, deal references and
comments are text, never markup. Links go to this deployment's dashboard only (``PUBLIC_URL``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import parseaddr
from typing import Any
from urllib.parse import quote, urlsplit

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from ..currencies import format_money as money
from ..currencies import format_percent as percent
from ..database import rfc3339
from ..schemas import percent_of
from .models import NotificationKind

# The dashboard's address when PUBLIC_URL is not set: gunicorn's default bind, seen from the
# machine itself (good enough for the demo and local staging; production requires PUBLIC_URL
# once MAIL_URL is set).
FALLBACK_PUBLIC_URL = "http://127.0.0.1:8000"
LOG_SENDER = "DiscountFlow <discountflow@localhost>"  # the From of emails written to the log
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]+")

_templates = Environment(
    loader=PackageLoader("discountflow.notifications", "templates"),
    autoescape=select_autoescape(["html"]),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)
_templates.filters.update(money=money, percent=percent)


def one_line(value: str) -> str:
    """A value made fit for a header: line breaks and control characters folded to a space."""
    return _CONTROL.sub(" ", value).strip()


def public_url(configured: str | None) -> str:
    """The dashboard's base address, without a trailing slash."""
    return (configured or FALLBACK_PUBLIC_URL).rstrip("/")


def approval_link(base: str, approval_id: str) -> str:
    """The approval's page in the dashboard (signing in first: nothing is decided by a link)."""
    return f"{base}/approvals/{quote(approval_id, safe='')}"


@dataclass(frozen=True)
class Content:
    """What one email says: rendered from the approval as it is when the email is sent."""

    kind: str
    recipient_name: str
    recipient_email: str
    approval: Any
    requester_name: str
    actor_name: str  # who decided or commented ("" for the system)
    comment: str  # the decision's or the comment's text
    level_name: str  # the active step's level, for a decision requested
    link: str
    auto: bool = False  # an auto-approval
    waited: str = ""  # how long the step has waited, for a reminder ("25 hours")


def subject_of(content: Content) -> str:
    """What the email asks or tells, e.g. ``Approve 18 % on ACME renewal — 12,400.00 USD``."""
    approval = content.approval
    title = one_line(approval.title)
    offer = (
        f"{percent(approval.max_line_discount_bps / 100)} on {title} — "
        f"{money(approval.amount, approval.currency)}"
    )
    kind = content.kind
    if kind == NotificationKind.DECISION_REQUESTED:
        return f"Approve {offer}"
    if kind == NotificationKind.REMINDER:
        return f"Reminder: approve {offer}"
    if kind == NotificationKind.APPROVED:
        return f"Approved: {offer}"
    if kind == NotificationKind.REJECTED:
        return f"Rejected: {offer}"
    if kind == NotificationKind.CHANGES_REQUESTED:
        return f"Changes requested: {offer}"
    return f"New comment on {title} from {one_line(content.actor_name) or 'DiscountFlow'}"


def _context(content: Content) -> dict[str, Any]:
    approval = content.approval
    discount = approval.list_amount - approval.amount
    return {
        "c": content,
        "a": approval,
        "kind": content.kind,
        "discount": discount,
        "discount_percent": percent_of(discount, approval.list_amount),
        "largest_percent": approval.max_line_discount_bps / 100,
        "valid_until": rfc3339(approval.valid_until) if approval.valid_until else "",
        "subject": subject_of(content),
    }


def compose(content: Content, sender: str, message_id: str) -> EmailMessage:
    """The email: headers, a plain text part and an HTML part (``ValueError`` if a header
    would still hold a line break, which ``one_line`` makes impossible)."""
    context = _context(content)
    message = EmailMessage()
    message["Subject"] = context["subject"]
    message["From"] = sender
    message["To"] = Address(one_line(content.recipient_name), addr_spec=content.recipient_email)
    message["Message-ID"] = message_id
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies to it
    message.set_content(_templates.get_template("notifications/email.txt").render(context))
    html = _templates.get_template("notifications/email.html").render(context)
    message.add_alternative(html, subtype="html")
    return message


def chat_message(content: Content) -> tuple[str, str]:
    """A chat or push message's title and plain text body (the service escapes it)."""
    context = _context(content)
    body = _templates.get_template("notifications/chat.txt").render(context)
    return context["subject"], body


def digest(
    name: str, address: str, contents: list[Content], sender: str, base: str, message_id: str
) -> EmailMessage:
    """One email with every notification a member's daily digest holds."""
    count = len(contents)
    subject = f"DiscountFlow: {count} update{'s' if count != 1 else ''} from the last day"
    context = {
        "name": one_line(name),
        "subject": subject,
        "intro": "Here is what happened to the requests you follow since your last digest:",
        "items": [{"subject": subject_of(each), "link": each.link} for each in contents],
        "base": base,
    }
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = sender
    message["To"] = Address(one_line(name), addr_spec=address)
    message["Message-ID"] = message_id
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(_templates.get_template("notifications/digest.txt").render(context))
    html = _templates.get_template("notifications/digest.html").render(context)
    message.add_alternative(html, subtype="html")
    return message


def trial_message(recipient: str, sender: str, base: str) -> EmailMessage:
    """The email ``flask notifications test`` sends."""
    message = EmailMessage()
    message["Subject"] = "DiscountFlow test email"
    message["From"] = sender
    message["To"] = recipient
    message["Auto-Submitted"] = "auto-generated"
    text = f"This is a test email from DiscountFlow: MAIL_URL works.\n\nThe dashboard: {base}/\n"
    message.set_content(text)
    return message


def message_id(notification_id: str, base: str) -> str:
    """A Message-ID made from the notification (a digest: from its first one): a message sent
    again after a worker died mid-send carries the same one, so mail clients show it once."""
    host = urlsplit(base).hostname or "discountflow.invalid"
    return f"<{notification_id}@{host}>"


TRIAL_TITLE = "DiscountFlow test message"


def trial_chat(base: str) -> tuple[str, str]:
    """The message a destination's test sends."""
    return TRIAL_TITLE, f"This destination works: DiscountFlow's messages arrive here.\n{base}/"


def envelope_sender(sender: str) -> str:
    """The bare address of a From header (``Approvals <a@example.com>`` → ``a@example.com``)."""
    return parseaddr(sender)[1]
