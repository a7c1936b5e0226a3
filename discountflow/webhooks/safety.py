"""Where webhooks may be sent: no server-side request forgery.

In production an endpoint's URL must be ``https`` and its host must resolve only to public
addresses — not loopback, private, link-local (cloud metadata at 169.254.169.254), shared,
multicast or reserved ones — unless ``WEBHOOK_ALLOW_PRIVATE`` is on (receivers on the LAN of
a self-hosted box). The URL is checked when it is saved and again at every connection the
worker opens: the worker resolves the name itself, checks every address, and connects to the
address it checked (TLS still verifies the certificate for the name), so a DNS answer that
changes in between cannot send a delivery inside the network. Redirects are never followed.

An IPv6 address that carries an IPv4 address — IPv4-mapped (``::ffff:0:0/96``), IPv4-compatible
(``::/96``), 6to4 (``2002::/16``) and NAT64's well-known prefix (``64:ff9b::/96``, which a NAT64
gateway turns into the IPv4 address inside) — is judged by the IPv4 address it carries:
``64:ff9b::a00:1`` is 10.0.0.1, refused; ``64:ff9b::808:808`` is 8.8.8.8, allowed. NAT64's
local-use prefix (``64:ff9b:1::/48``) is refused whole: where the IPv4 address sits in it is the
local network's choice (any of RFC 6052's layouts), so what it reaches cannot be told from here.

Everywhere, a URL holds no whitespace, control or invisible formatting characters (a space is
``%20``) and no port 0.
"""

from __future__ import annotations

import ipaddress
import socket
import time
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpcore

from ..errors import InvalidParameter
from .schemas import MAX_URL_LENGTH


class UnsafeDestination(httpcore.ConnectError):
    """A host that resolves to an address webhooks may not reach."""


NAT64_WELL_KNOWN = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052: the last 32 bits
NAT64_LOCAL_USE = ipaddress.IPv6Network("64:ff9b:1::/48")  # RFC 8215: laid out as a site chooses
IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")  # RFC 4291 (deprecated): the last 32 bits


def carried_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address a connection to ``ip`` may reach through a translator or a tunnel."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    if ip.sixtofour is not None:
        return ip.sixtofour  # 2002:a00:1:: is routed to 10.0.0.1
    if ip in NAT64_WELL_KNOWN or (ip in IPV4_COMPATIBLE and int(ip) > 1):  # (:: and ::1 aside)
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # a scoped IPv6 address: its zone off
    if isinstance(ip, ipaddress.IPv6Address):
        if ip in NAT64_LOCAL_USE:
            return False
        carried = carried_ipv4(ip)
        if carried is not None:
            ip = carried
    return ip.is_global and not ip.is_multicast


def _shown(address: str) -> str:
    """An address for a message, with what it carries (``64:ff9b::a00:1 (carrying 10.0.0.1)``)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if not isinstance(ip, ipaddress.IPv6Address):
        return address
    if ip in NAT64_LOCAL_USE:
        return f"{address} (a local-use NAT64 address)"
    carried = carried_ipv4(ip)
    return f"{address} (carrying {carried})" if carried is not None else address


# Characters a URL never holds as they are (RFC 3986 has them percent-encoded): controls (CR,
# LF, TAB among them), spaces and line or paragraph separators (U+2028), and invisible format
# characters (U+200B, the bidirectional overrides) that make a URL read as another one. Left
# in, they are saved, echoed by the API and written into the audit log as they are.
_INVISIBLE = frozenset({"Cc", "Cf", "Cs", "Zs", "Zl", "Zp"})


def first_invisible(url: str) -> tuple[int, str] | None:
    """The first character of ``url`` it may not hold, and its position (from 1)."""
    for position, character in enumerate(url, start=1):
        if unicodedata.category(character) in _INVISIBLE:
            return position, character
    return None


def resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (in the resolver's order)."""
    found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(info[4][0] for info in found))


def check_addresses(host: str, addresses: Iterable[str]) -> None:
    """Refuse a host with any non-public address (all of them, or a rebinding can pick one)."""
    for address in addresses:
        if not _public(address):
            raise UnsafeDestination(
                f"{host} resolves to {_shown(address)}, a loopback, private, link-local or "
                "reserved address: webhooks go to public addresses only (WEBHOOK_ALLOW_PRIVATE "
                "lifts this for receivers on your own network)."
            )


@dataclass(frozen=True)
class Rules:
    https_only: bool
    allow_private: bool


def check_url(url: str, rules: Rules) -> str:
    """The URL as it is stored, or ``parameter_invalid`` saying what is wrong with it."""

    def refuse(message: str) -> InvalidParameter:
        return InvalidParameter(message, param="url")

    url = url.strip()
    if len(url) > MAX_URL_LENGTH:
        raise refuse(f"A webhook URL has at most {MAX_URL_LENGTH} characters.")
    found = first_invisible(url)
    if found is not None:
        position, character = found
        raise refuse(
            "A webhook URL holds no spaces, tabs, line breaks or other invisible characters "
            f"(U+{ord(character):04X} at character {position}): percent-encode it (a space is %20)."
        )
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise refuse("A webhook URL starts with https:// and names a host.")
    if rules.https_only and parts.scheme != "https":
        raise refuse("Webhook URLs must use https in production.")
    if parts.username is not None or parts.password is not None:
        raise refuse("Leave credentials out of the URL: the signature authenticates us.")
    if parts.fragment:
        raise refuse("A webhook URL has no #fragment.")
    try:
        port = parts.port
    except ValueError as error:
        raise refuse("The URL's port is not a number from 1 to 65535.") from error
    if port == 0:  # (urlsplit's range starts at 0; nothing listens there)
        raise refuse("The URL's port is not a number from 1 to 65535.")
    if port is None:
        port = 443 if parts.scheme == "https" else 80
    if not rules.allow_private:
        try:
            addresses = resolve(parts.hostname, port)
        except (OSError, UnicodeError) as error:
            raise refuse(f"{parts.hostname} cannot be resolved just now.") from error
        try:
            check_addresses(parts.hostname, addresses)
        except UnsafeDestination as error:
            raise refuse(str(error)) from None
    return url


class _DeadlineStream(httpcore.NetworkStream):
    """A connection whose every read and write stops at the delivery's deadline."""

    def __init__(self, stream: httpcore.NetworkStream, backend: GuardedBackend) -> None:
        self._stream = stream
        self._backend = backend

    def _timeout(self, timeout: float | None) -> float:
        left = self._backend.deadline - time.monotonic()
        if left <= 0:
            raise httpcore.ReadTimeout("the delivery's time is up")
        return left if timeout is None else min(timeout, left)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, self._timeout(timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, self._timeout(timeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(self, ssl_context, server_hostname=None, timeout=None):
        stream = self._stream.start_tls(ssl_context, server_hostname, self._timeout(timeout))
        return _DeadlineStream(stream, self._backend)

    def get_extra_info(self, info: str):
        return self._stream.get_extra_info(info)


class GuardedBackend(httpcore.SyncBackend):
    """httpcore's sockets, connecting only to checked addresses, within a deadline."""

    def __init__(self, allow_private: bool) -> None:
        self.allow_private = allow_private
        self.deadline = float("inf")  # set before each delivery (time.monotonic())

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        try:
            addresses = resolve(host, port)
        except (OSError, UnicodeError) as error:
            raise httpcore.ConnectError(f"{host} cannot be resolved: {error}") from error
        if not self.allow_private:
            check_addresses(host, addresses)
        failure: Exception | None = None
        for address in addresses:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise httpcore.ConnectTimeout("the delivery's time is up")
            try:
                stream = super().connect_tcp(
                    address,
                    port,
                    timeout=left if timeout is None else min(timeout, left),
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as error:
                failure = error
                continue
            return _DeadlineStream(stream, self)
        raise failure or httpcore.ConnectError(f"{host} has no address")
