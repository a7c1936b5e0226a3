"""Running the documentation's examples, and comparing what they print with what the page shows.

An example marked ``<!-- run -->`` is run against a fresh demo served by gunicorn: a ``sh``
block by bash in the repository's folder (``$DISCOUNTFLOW_KEY`` is the demo's key), an ``http``
block sent as written, a ``graphql`` block posted to ``/v2/graphql`` with the key. The block
marked ``<!-- output -->`` after it is what it must print:

* an HTTP response (``HTTP/1.1 401 …``): the same status, every header shown, the same body;
* JSON (one value, or several one after the other): equal values, where a string ``"..."``
  (or one holding ``...``) stands for any value, a last list item ``"..."`` for any further
  items, and a key ``"..."`` for any further keys;
* anything else: the same text, whitespace aside, where ``...`` stands for anything.
"""

from __future__ import annotations

import doctest
import json
import os
import re
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
ANY = "..."


def as_served(text: str, values: dict[str, str]) -> str:
    """An example as the demo at ``values["base_url"]`` shows it: the page's placeholders, and
    the demo's address where the README names it (``http://127.0.0.1:8000``)."""
    from discountflow.docs.pages import DEMO_ADDRESS, substitute

    return substitute(text, values).replace(DEMO_ADDRESS, values["base_url"])


@dataclass
class Run:
    """A running demo the examples speak to."""

    base_url: str
    key: str
    environ: dict[str, str]


def run(example, values: dict[str, str], demo: Run) -> str:
    """What a runnable example prints (the page's placeholders filled in for ``demo``)."""
    text = as_served(example.text, values)
    if example.language == "sh":
        return _shell(text, example.marker, demo)
    if example.language == "http":
        return _http(text, demo)
    if example.language == "graphql":
        body = json.dumps({"query": text}).encode()
        request = urllib.request.Request(
            f"{demo.base_url}/v2/graphql",
            data=body,
            headers={"Authorization": f"Bearer {demo.key}", "Content-Type": "application/json"},
        )
        return _send(request, with_head=False)
    raise AssertionError(f"cannot run a {example.language!r} block:\n{text}")


def _shell(text: str, marker: str, demo: Run) -> str:
    expected_exit = int(marker.rpartition(" ")[2]) if "exit" in marker else 0
    environ = {
        **os.environ,
        **demo.environ,
        "DISCOUNTFLOW_KEY": demo.key,
        "PATH": f"{ROOT / '.venv' / 'bin'}:{os.environ['PATH']}",
    }
    environ.pop("CI", None)  # a documented command runs as a person runs it
    done = subprocess.run(
        ["bash", "-o", "pipefail", "-c", text],
        cwd=ROOT,
        env=environ,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,  # one stream, in the order a terminal shows them
        text=True,
        timeout=120,
    )
    shown = done.stdout
    assert done.returncode == expected_exit, f"exit {done.returncode}:\n{text}\n{shown}"
    return shown


def _http(text: str, demo: Run) -> str:
    head, _, body = text.partition("\n\n")
    request_line, *header_lines = head.splitlines()
    method, target, _ = request_line.split(" ", 2)
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        if name.lower() != "host":
            headers[name.strip()] = value.strip().replace("$DISCOUNTFLOW_KEY", demo.key)
    request = urllib.request.Request(
        f"{demo.base_url}{target}",
        method=method,
        headers=headers,
        data=body.encode() if body.strip() else None,
    )
    return _send(request, with_head=True)


def _send(request: urllib.request.Request, *, with_head: bool) -> str:
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - our server
            status, reason, headers, body = (
                response.status,
                response.reason,
                response.headers,
                response.read(),
            )
    except urllib.error.HTTPError as error:
        status, reason, headers, body = error.code, error.reason, error.headers, error.read()
    text = body.decode()
    if not with_head:
        return text
    lines = [f"HTTP/1.1 {status} {reason}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return "\n".join(lines) + "\n\n" + text


# --- comparing ----------------------------------------------------------------------------------


def differences(expected: str, actual: str) -> list[str]:
    """How ``actual`` differs from the ``expected`` the page shows (nothing: it matches)."""
    actual = actual.replace("\r\n", "\n")
    if expected.startswith("HTTP/"):
        return _response_differences(expected, actual)
    expected_values, actual_values = _json_values(expected), _json_values(actual)
    if expected_values is not None:
        if actual_values is None:
            return [f"JSON was shown, this was printed:\n{actual}"]
        return _value_differences(expected_values, actual_values, "output")
    checker = doctest.OutputChecker()
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    if checker.check_output(expected.strip() + "\n", actual.strip() + "\n", flags):
        return []
    return [f"shown:\n{expected}\nprinted:\n{actual}"]


def _response_differences(expected: str, actual: str) -> list[str]:
    expected_head, _, expected_body = expected.partition("\n\n")
    actual_head, _, actual_body = actual.partition("\n\n")
    if not actual_head.startswith("HTTP/"):
        return [f"an HTTP response was shown, this was printed:\n{actual}"]
    found = []
    expected_status, *expected_headers = expected_head.splitlines()
    actual_status, *actual_headers = actual_head.splitlines()
    if expected_status.split()[1] != actual_status.split()[1]:
        found.append(f"status: shown {expected_status!r}, got {actual_status!r}")
    received = {}
    for line in actual_headers:
        name, _, value = line.partition(":")
        received[name.strip().lower()] = value.strip()
    for line in expected_headers:
        name, _, value = line.partition(":")
        got = received.get(name.strip().lower())
        if got is None or not _text_matches(value.strip(), got):
            found.append(f"header {name.strip()}: shown {value.strip()!r}, got {got!r}")
    found += differences(expected_body, actual_body) if expected_body.strip() else []
    return found


def _json_values(text: str) -> list | None:
    """The JSON values ``text`` holds one after the other, or ``None`` if it is not JSON."""
    decoder, values, at = json.JSONDecoder(), [], 0
    text = text.strip()
    if not text or text[0] not in "[{":
        return None
    while at < len(text):
        try:
            value, at = decoder.raw_decode(text, at)
        except ValueError:
            return None
        values.append(value)
        while at < len(text) and text[at].isspace():
            at += 1
    return values


def _text_matches(shown: str, got: str) -> bool:
    pattern = ".*".join(re.escape(part) for part in shown.split(ANY))
    return re.fullmatch(pattern, got, re.S) is not None


def _value_differences(shown, got, where: str) -> list[str]:
    if isinstance(shown, str) and ANY in shown:
        if shown == ANY or (isinstance(got, str) and _text_matches(shown, got)):
            return []
        return [f"{where}: shown {shown!r}, got {got!r}"]
    if isinstance(shown, dict):
        if not isinstance(got, dict):
            return [f"{where}: shown an object, got {got!r}"]
        found = []
        open_ended = shown.get(ANY) == ANY
        keys = [key for key in shown if key != ANY]
        missing = [key for key in keys if key not in got]
        extra = [] if open_ended else [key for key in got if key not in shown]
        if missing or extra:
            found.append(f"{where}: keys missing {missing}, not shown {extra}")
        for key in keys:
            if key in got:
                found += _value_differences(shown[key], got[key], f"{where}.{key}")
        return found
    if isinstance(shown, list):
        if not isinstance(got, list):
            return [f"{where}: shown a list, got {got!r}"]
        open_ended = bool(shown) and shown[-1] == ANY
        items = shown[:-1] if open_ended else shown
        if len(got) < len(items) or (not open_ended and len(got) != len(items)):
            return [f"{where}: shown {len(items)} items, got {len(got)}"]
        found = []
        for number, item in enumerate(items):
            found += _value_differences(item, got[number], f"{where}[{number}]")
        return found
    if shown != got or type(shown) is not type(got):
        return [f"{where}: shown {shown!r}, got {got!r}"]
    return []
