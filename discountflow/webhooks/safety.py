"""Where webhooks may be sent: no server-side request forgery.

In production an endpoint's URL must be ``https`` and its host must resolve only to public
addresses — not loopback, private, link-local (cloud metadata at 169.254.169.254), shared,
multicast or reserved ones — unless ``WEBHOOK_ALLOW_PRIVATE`` is on (receivers on the LAN of
a self-hosted box). The URL is checked when it is saved and again at every connection the
worker opens: the worker resolves the name itself, checks every address, and connects to the
address it checked (TLS still verifies the certificate for the name), so a DNS answer that
changes in between cannot send a delivery inside the network. Redirects are never followed.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpcore

from ..errors import InvalidParameter
from .schemas import MAX_URL_LENGTH


class UnsafeDestination(httpcore.ConnectError):
    """A host that resolves to an address webhooks may not reach."""


def _public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # a scoped IPv6 address: its zone off
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    return ip.is_global and not ip.is_multicast


def resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (in the resolver's order)."""
    found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(info[4][0] for info in found))


def check_addresses(host: str, addresses: Iterable[str]) -> None:
    """Refuse a host with any non-public address (all of them, or a rebinding can pick one)."""
    for address in addresses:
        if not _public(address):
            raise UnsafeDestination(
                f"{host} resolves to {address}, a loopback, private, link-local or reserved "
                "address: webhooks go to public addresses only (WEBHOOK_ALLOW_PRIVATE lifts "
                "this for receivers on your own network)."
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
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as error:
        raise refuse("The URL's port is not a number from 1 to 65535.") from error
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
