"""Chat and push messages by Apprise: which URLs a destination may hold, and sending to one.

One library speaks to Slack, Microsoft Teams (Power Automate workflows), Discord, Mattermost,
Rocket.Chat, Matrix, Google Chat, Telegram, Pushover, ntfy, Gotify and any JSON receiver, each
configured by one URL. Only those services are accepted: every one of them is an HTTPS API, and
none reaches the machine the service runs on (Apprise's syslog, desktop or email plugins do).

The webhooks' address rules apply (``webhooks.safety``). A URL that names its own host
(``mmosts://chat.example.com/…``, ``jsons://…``) must resolve only to public addresses unless
``WEBHOOK_ALLOW_PRIVATE`` is on; it is checked when saved and again before each message, and
the message's connections go to the addresses checked then (``guard_connections``), so a name
that answers another address meanwhile (DNS rebinding) cannot send it inside the network.
Redirects are never followed (Apprise's ``http_redirects`` off; a ``?redirect=yes`` in the URL
is refused), nor is Matrix's server discovery: the server a URL names would choose, by its
``/.well-known/matrix/client`` answer, another host to log in to and post to, unchecked. In
production the URL must use its service's secure scheme (``mmosts``, not ``mmost``) and keep
certificate checks on.

A URL holds the service's tokens: it is sealed in the database (``discountflow.sealing``),
shown masked by Apprise's own privacy mode, and never logged: an error Apprise reports has every
piece of the URL taken out before it is kept.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit, urlunsplit

import apprise
from urllib3.util import connection as urllib3_connection

from .. import sealing
from ..errors import InvalidParameter
from ..webhooks.safety import (
    Rules,
    UnsafeDestination,
    check_addresses,
    first_invisible,
    resolve,
)

PURPOSE = "notification destination urls"  # the key the URLs are sealed under (HKDF's info)
TIMEOUT_SECONDS = 4  # Apprise's connect and read timeouts (its ``cto`` and ``rto``)
# The services a destination may name, by their Apprise schemes (plain and secure).
SERVICES = frozenset(
    {
        "slack",
        "workflow",
        "workflows",
        "msteams",
        "discord",
        "mmost",
        "mmosts",
        "rocket",
        "rockets",
        "matrix",
        "matrixs",
        "gchat",
        "tgram",
        "pover",
        "ntfy",
        "ntfys",
        "gotify",
        "gotifys",
        "json",
        "jsons",
    }
)
ASSET = apprise.AppriseAsset(http_redirects=False)
_sending = threading.local()  # ``checked``: this thread sends a message whose host is checked


@dataclass(frozen=True)
class Checked:
    """A destination's URL, checked: its service's name and the URL masked."""

    url: str
    service: str
    masked: str


def quiet_libraries() -> None:
    """Keep the URLs' secrets out of the logs whatever the logging configuration: Apprise logs
    a service's full address (a Slack token is in its path) at DEBUG, and urllib3, under it, each
    request's path. Only their warnings are kept; Apprise's go to the send that captures them
    (``send``), which logs them with every piece of the URL taken out."""
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    apprise_log = logging.getLogger("apprise")
    apprise_log.setLevel(logging.WARNING)
    apprise_log.propagate = False
    if not apprise_log.handlers:
        apprise_log.addHandler(logging.NullHandler())


def guard_connections() -> None:
    """Make the connections Apprise opens (by requests, so urllib3) while a message to a
    checked host is sent go only to public addresses, resolved once and connected to as
    checked: requests would otherwise resolve the name again after ``send`` checked it."""
    original = urllib3_connection.create_connection
    if getattr(original, "guarded", False):
        return

    def create_connection(address, *args, **kwargs):
        if not getattr(_sending, "checked", False):
            return original(address, *args, **kwargs)
        host, port = address
        try:
            addresses = _public_addresses(host, port)
        except UnsafeDestination as error:
            raise OSError(str(error)) from None
        failure: OSError | None = None
        for each in addresses:
            try:
                return original((each, port), *args, **kwargs)
            except OSError as error:
                failure = error
        raise failure or OSError(f"{host} has no address")

    create_connection.guarded = True
    urllib3_connection.create_connection = create_connection


def _schemes(plugin: apprise.NotifyBase) -> set[str]:
    schemes = set()
    for attribute in ("protocol", "secure_protocol"):
        value = getattr(type(plugin), attribute, None) or ()
        schemes |= {value} if isinstance(value, str) else set(value)
    return schemes


def _names_its_host(plugin: apprise.NotifyBase) -> bool:
    """Whether the URL chooses the host Apprise connects to (a Mattermost of your own), not
    only a token for the service's own API (Slack)."""
    return bool(plugin.host) and any("{host}" in each for each in type(plugin).templates)


def _plugin(url: str) -> apprise.NotifyBase | None:
    """Apprise's plugin for ``url`` (``None`` if it is not an Apprise URL), talking to the host
    the URL names only: Matrix's server discovery off (its ``discovery=yes`` is ignored)."""
    plugin = apprise.Apprise.instantiate(url, asset=ASSET, suppress_exceptions=True)
    if getattr(plugin, "discovery", False):
        plugin.discovery = False
    return plugin


def check(url: str, rules: Rules) -> Checked:
    """The URL, with what is shown of it, or ``parameter_invalid`` saying what is wrong."""

    def refuse(message: str) -> InvalidParameter:
        return InvalidParameter(message, param="url")

    url = url.strip()
    found = first_invisible(url)
    if found is not None:
        position, character = found
        raise refuse(
            "A destination URL holds no spaces, tabs, line breaks or other invisible characters "
            f"(U+{ord(character):04X} at character {position})."
        )
    plugin = _plugin(url)
    if plugin is None or not _schemes(plugin) & SERVICES:
        raise refuse(
            "Not a URL of a supported service: use an Apprise URL for Slack, Microsoft Teams "
            "(workflows://), Discord, Mattermost, Rocket.Chat, Matrix, Google Chat, Telegram, "
            "Pushover, ntfy, Gotify or a JSON receiver (jsons://)."
        )
    if plugin.redirects:
        raise refuse("Redirects are never followed: leave redirect=yes out of the URL.")
    if plugin.port is not None and not 1 <= plugin.port <= 65535:  # (a port= option too)
        raise refuse("The URL's port is not a number from 1 to 65535.")
    if rules.https_only:
        if getattr(type(plugin), "protocol", None) and not plugin.secure:
            secure = type(plugin).secure_protocol
            secure = secure if isinstance(secure, str) else secure[0]
            raise refuse(
                f"Destinations use https in production: {secure}://, not {urlsplit(url).scheme}://."
            )
        if not plugin.verify_certificate:
            raise refuse("Certificates are checked in production: leave verify=no out of the URL.")
    if _names_its_host(plugin) and not rules.allow_private:
        try:
            check_public(plugin)
        except UnsafeDestination as error:
            raise refuse(str(error)) from None
        except OSError as error:
            raise refuse(f"{plugin.host} cannot be resolved just now.") from error
    return Checked(url=url, service=str(plugin.service_name), masked=_masked(plugin))


def _masked(plugin: apprise.NotifyBase) -> str:
    """The URL as it is shown: Apprise's privacy form without its options (the query), and
    every part that may be a secret and that Apprise leaves whole — a JSON receiver's path, an
    ntfy topic — shortened as Apprise shortens a token (``jsons://hooks.example.com/h...s/S...T``).
    The host stays when it is a server's name."""
    shown = urlsplit(plugin.url(privacy=True))
    netloc = shown.netloc
    # A channel (#sales) is shown; so is a user (@ana) of a service whose URL holds no host of
    # its own (Slack's), where no path of a receiver could begin with @.
    kept = "#" if _names_its_host(plugin) else "#@"
    if not _names_its_host(plugin):  # the "host" is a token or a topic
        userinfo, at, host = netloc.rpartition("@")
        netloc = userinfo + at + _shortened(host, kept)
    path = "/".join(_shortened(unquote(part), kept) for part in shown.path.split("/"))
    return urlunsplit((shown.scheme, netloc, path, "", ""))


def _shortened(part: str, kept: str) -> str:
    if not part or "..." in part or part[0] in kept:  # shortened by Apprise already, or kept
        return part
    return f"{part[0]}...{part[-1]}" if len(part) > 4 else "..."


def check_public(plugin: apprise.NotifyBase) -> None:
    """Refuse a host with any non-public address (``UnsafeDestination``; ``OSError`` if it
    does not resolve)."""
    _public_addresses(plugin.host, plugin.port or (443 if plugin.secure else 80))


def _public_addresses(host: str, port: int) -> list[str]:
    """The host's addresses, every one public (``UnsafeDestination`` otherwise; ``OSError`` if
    it does not resolve)."""
    host = host.removeprefix("[").removesuffix("]")  # an IPv6 address, as a URL has it
    try:
        addresses = resolve(host, port)
    except UnicodeError as error:
        raise OSError(str(error)) from error
    check_addresses(host, addresses)
    return addresses


def seal(url: str) -> str:
    return sealing.seal(url, PURPOSE)


def unseal(stored: str) -> str:
    return sealing.unseal(
        stored,
        PURPOSE,
        "The destination's URL cannot be read with this SECRET_KEY: enter it again.",
    )


@dataclass(frozen=True)
class ChatMessage:
    """What one destination is told."""

    title: str
    body: str


def _without(text: str, url: str) -> str:
    """``text`` with every piece of ``url`` (tokens, passwords, the host) taken out."""
    pieces = sorted(
        {piece for piece in re.split(r"[/:@?&=#.%,+]+", url) if len(piece) >= 4},
        key=len,
        reverse=True,
    )
    for piece in pieces:
        text = text.replace(piece, "****")
    return text


def send(url: str, message: ChatMessage, rules: Rules) -> tuple[bool, str]:
    """Send ``message`` to one destination; return whether it went and, if not, why (with
    nothing of the URL in it)."""
    plugin = _plugin(url)
    if plugin is None:
        return False, "its URL is no longer a valid Apprise URL"
    checked = _names_its_host(plugin) and not rules.allow_private
    if checked:
        try:
            check_public(plugin)
        except (UnsafeDestination, OSError) as error:
            return False, _without(str(error), url)[:500]
    plugin.socket_connect_timeout = plugin.socket_read_timeout = TIMEOUT_SECONDS
    with apprise.LogCapture(level=logging.WARNING) as captured:
        _sending.checked = checked  # its connections: to public addresses only (as checked)
        try:
            sent = plugin.notify(
                title=message.title, body=message.body, body_format=apprise.NotifyFormat.TEXT
            )
        except Exception as error:  # noqa: BLE001 - a plugin's own failure is this send's
            sent, captured_error = False, f"{type(error).__name__}: {error}"
        else:
            captured_error = ""
        finally:
            _sending.checked = False
        said = captured.getvalue()
    if sent:
        return True, ""
    lines = [line.split(" - ", 2)[-1] for line in said.splitlines() if line.strip()]
    reason = "; ".join(lines[-3:]) or captured_error or f"{plugin.service_name} refused it"
    return False, _without(reason, url)[:500]
