"""The README is the front door: what it shows works when pasted, word for word."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from discountflow.auth.keys import parse_key

from .conftest import bearer

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
KEY_SHAPED = re.compile(r"\b[sr]k_(?:test|live)_[0-9A-Za-z_.]+")
SHELL_BLOCKS = re.findall(r"```sh\n(.*?)```", README, re.S)


def test_every_key_in_the_readme_is_well_formed_or_a_placeholder(client):
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
    variables = set(re.findall(r"\$(\w*KEY\w*)", "\n".join(SHELL_BLOCKS)))
    assert variables == {"DISCOUNTFLOW_KEY"}
    assert "export DISCOUNTFLOW_KEY=" in README


def test_commands_use_one_form_of_flask_and_gunicorn():
    for block in SHELL_BLOCKS:
        for line in block.splitlines():
            for program in ("flask", "gunicorn"):
                for use in re.finditer(rf"(\S*){program} (--app|-c)", line):
                    assert use.group(1).endswith(".venv/bin/"), line


@pytest.fixture
def demo_key(runner) -> str:
    """The key the front door's first command prints: the demo organization's."""
    from .test_cli import key_from

    result = runner.invoke(args=["demo"])
    assert result.exit_code == 0, result.output
    return key_from(result.output)


def test_the_create_example_creates_an_approval(client, demo_key):
    example = next(block for block in SHELL_BLOCKS if "Idempotency-Key: crm-deal-4711" in block)
    body = json.loads(re.search(r"-d '(.*)'", example, re.S).group(1))
    response = client.post(
        "/v2/approvals", json=body, headers={**bearer(demo_key), "Idempotency-Key": "crm-1"}
    )
    assert response.status_code == 201, response.get_json()
    (line,) = response.get_json()["line_items"]
    assert (line["sku"], line["unit_list_price"], line["custom"]) == ("SEAT-PRO", 12000, False)


@pytest.mark.parametrize("marker", ["crm-deal-4712", "me { id organization { name } }"])
def test_the_graphql_examples_run(client, demo_key, marker):
    example = next(block for block in SHELL_BLOCKS if marker in block)
    for body in re.findall(r"-d '(.*?)'", example, re.S):
        response = client.post(
            "/v2/graphql", data=body, content_type="application/json", headers=bearer(demo_key)
        )
        assert response.status_code == 200, response.get_data(as_text=True)
        assert "errors" not in response.get_json(), response.get_json()


def test_the_webhook_receiver_example_verifies_and_dedupes(monkeypatch):
    from datetime import UTC, datetime

    from standardwebhooks import Webhook

    from discountflow.webhooks.signing import new_secret

    (example,) = [
        block
        for block in re.findall(r"```python\n(.*?)```", README, re.S)
        if "standardwebhooks" in block
    ]
    secret = new_secret()
    monkeypatch.setenv("DISCOUNTFLOW_WEBHOOK_SECRET", secret)
    namespace: dict = {"__name__": "receiver_example"}
    exec(compile(example, "README receiver", "exec"), namespace)  # noqa: S102 - our own README
    client = namespace["receiver"].test_client()
    body = json.dumps(
        {
            "id": "evt_1",
            "type": "approval.approved",
            "created": "x",
            "data": {"object": {"id": "apr_1"}},
        }
    )
    signed = Webhook(secret).sign("evt_1", datetime.now(UTC), body)
    headers = {
        "webhook-id": "evt_1",
        "webhook-timestamp": str(int(datetime.now(UTC).timestamp())),
        "webhook-signature": signed,
        "content-type": "application/json",
    }
    assert client.post("/hooks/discountflow", data=body, headers=headers).status_code == 204
    assert client.post("/hooks/discountflow", data=body, headers=headers).status_code == 204
    assert namespace["seen"] == {"evt_1"}
    forged = {
        **headers,
        "webhook-signature": Webhook(new_secret()).sign("evt_1", datetime.now(UTC), body),
    }
    assert client.post("/hooks/discountflow", data=body, headers=forged).status_code == 400


def test_the_procfile_is_the_readmes():
    procfile = (Path(__file__).resolve().parents[1] / "Procfile").read_text()
    assert procfile.strip() in README
    assert re.search(r"^worker: .*\bflask --app app webhooks work$", procfile, re.MULTILINE)
