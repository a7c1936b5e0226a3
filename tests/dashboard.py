"""Helpers to use the dashboard through the test client, as a browser would."""

from __future__ import annotations

import re

from .conftest import PASSWORD

_TOKEN = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"|value="([^"]+)"[^>]*name="csrf_token"')


_TOKENS = re.compile(r'name="csrf-token" content="[^"]+"|' + _TOKEN.pattern)


def without_csrf_tokens(text: str) -> str:
    """A page with its CSRF tokens (the layout's meta, each form's) as ``<csrf>``, to compare
    two pages: a token is signed with the second it was made in, so pages a second apart
    differ there and nowhere else."""
    return _TOKENS.sub("<csrf>", text)


def csrf_token(client, path: str = "/sign-in") -> str:
    """The CSRF token of the client's session, read from a page's form as a browser would."""
    page = client.get(path)
    found = _TOKEN.search(page.text)
    assert found, f"no CSRF token on {path}"
    return found.group(1) or found.group(2)


def sign_in(client, email: str, password: str = PASSWORD, **extra):
    token = csrf_token(client)
    return client.post(
        "/sign-in", data={"email": email, "password": password, "csrf_token": token, **extra}
    )


def post_form(client, path: str, data: dict | None = None, *, token_from: str = "/inbox"):
    """Submit a form with the session's CSRF token."""
    return client.post(path, data={"csrf_token": csrf_token(client, token_from), **(data or {})})


def nav_links(page, label: str = "Main") -> list[str]:
    """The link texts of a page's navigation: the main one, or ``label="Settings"`` (its tabs)."""
    nav = re.search(rf'<nav aria-label="{label}"[^>]*>(.*?)</nav>', page.text, re.S)
    return re.findall(r">([^<]+)</a>", nav.group(1)) if nav else []
