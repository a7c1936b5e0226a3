"""The README is the front door, and the docs' pages the rest of the house: what they show works
when pasted, word for word. (Their examples are run by tests/test_docs.py; the receiver example
by tests/test_docs_guides.py; these are the checks across every page.)"""

from __future__ import annotations

import re
from pathlib import Path

from discountflow.auth.keys import parse_key

from .conftest import bearer

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").rglob("*.md"))]
README = "\n".join(page.read_text() for page in PAGES)  # every page, as one text
KEY_SHAPED = re.compile(r"\b[sr]k_(?:test|live)_[0-9A-Za-z_.]+")
SHELL_BLOCKS = re.findall(r"```sh\n(.*?)```", README, re.S)


def test_every_key_in_the_pages_is_well_formed_or_a_placeholder(client):
    found = KEY_SHAPED.findall(README)
    assert found
    for key in found:
        if key.endswith("...") or key in ("sk_test_", "rk_test_", "sk_live_", "rk_live_"):
            continue  # a placeholder
        if key == "sk_test_123456789":
            continue  # shown as the example of a malformed key, refused for its format
        assert parse_key(key) is not None, key
        response = client.get("/v2/me", headers=bearer(key))  # and no key of any organization
        assert response.status_code == 401, key


def test_one_name_for_the_key_throughout():
    # The key is $DISCOUNTFLOW_KEY on every page; the few examples that need a second key (a
    # read-only one, the new key of a roll) name it after it.
    variables = set(re.findall(r"\$(\w*KEY\w*)", "\n".join(SHELL_BLOCKS)))
    assert variables <= {"DISCOUNTFLOW_KEY", "DISCOUNTFLOW_READ_ONLY_KEY", "DISCOUNTFLOW_NEW_KEY"}
    assert "DISCOUNTFLOW_KEY" in variables
    assert "export DISCOUNTFLOW_KEY=" in (ROOT / "README.md").read_text()


def test_commands_use_one_form_of_flask_and_gunicorn():
    for block in SHELL_BLOCKS:
        for line in block.splitlines():
            for program in ("flask", "gunicorn"):
                for use in re.finditer(rf"(\S*){program} (--app|-c)", line):
                    assert use.group(1).endswith(".venv/bin/"), line
