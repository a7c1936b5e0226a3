"""The guides' code that is not a shell, HTTP or GraphQL example (``tests/test_docs.py`` runs
those): it works as the page shows it."""

from __future__ import annotations

import json
import re

from discountflow.docs.pages import DOCS

RECEIVING_WEBHOOKS = (DOCS / "guides" / "receiving-webhooks.md").read_text()


def test_the_webhook_receiver_example_verifies_and_dedupes(monkeypatch):
    from datetime import UTC, datetime

    from standardwebhooks import Webhook

    from discountflow.webhooks.signing import new_secret

    (example,) = [
        block
        for block in re.findall(r"```python\n(.*?)```", RECEIVING_WEBHOOKS, re.S)
        if "standardwebhooks" in block
    ]
    secret = new_secret()
    monkeypatch.setenv("DISCOUNTFLOW_WEBHOOK_SECRET", secret)
    namespace: dict = {"__name__": "receiver_example"}
    exec(compile(example, "receiving-webhooks.md receiver", "exec"), namespace)  # noqa: S102 - our page
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


def test_the_running_guide_shows_the_procfile_as_it_is():
    running = (DOCS / "guides" / "running.md").read_text()
    procfile = (DOCS.parent / "Procfile").read_text()
    assert f"```text\n{procfile}```" in running
    from .test_procfile import LOCAL_COMMAND  # the command that test runs

    assert f". .venv/bin/activate && {LOCAL_COMMAND}\n" in running
