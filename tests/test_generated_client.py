"""A Python client generated from /v2/openapi.json (openapi-python-client, the most used
generator) has a typed model for every schema and a function for every operation, and works
against the app: list, create, submit and approve, with typed results."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .approvals_world import create, set_level

BIN = Path(sys.executable).parent


@pytest.fixture
def generated(app, tmp_path):
    document = tmp_path / "openapi.json"
    document.write_text(json.dumps(app.test_client().get("/v2/openapi.json").get_json()))
    result = subprocess.run(
        [
            str(BIN / "openapi-python-client"),
            "generate",
            "--path",
            str(document),
            "--meta",
            "none",
            "--output-path",
            str(tmp_path / "discountflow_client"),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Unable to process" not in result.stdout + result.stderr, result.stdout
    sys.path.insert(0, str(tmp_path))
    try:
        yield importlib.import_module("discountflow_client")
    finally:
        sys.path.remove(str(tmp_path))
        for name in [name for name in sys.modules if name.startswith("discountflow_client")]:
            del sys.modules[name]


def test_every_schema_and_operation_is_generated(app, generated):
    document = app.test_client().get("/v2/openapi.json").get_json()
    models = importlib.import_module("discountflow_client.models")
    for name in document["components"]["schemas"]:
        assert hasattr(models, name), name
    api = Path(generated.__file__).parent / "api"
    functions = {path.stem for path in api.rglob("*.py") if path.stem != "__init__"}
    operations = {
        operation["operationId"]
        for item in document["paths"].values()
        for operation in item.values()
        if isinstance(operation, dict) and "operationId" in operation
    }
    assert operations <= functions


def test_the_generated_client_lists_creates_submits_and_approves(app, world, generated):
    import httpx

    models = importlib.import_module("discountflow_client.models")
    approvals = importlib.import_module("discountflow_client.api.approvals")
    for name in ("list_approvals", "create_approval", "submit_approval", "approve_approval"):
        importlib.import_module(f"discountflow_client.api.approvals.{name}")
    client = generated.AuthenticatedClient(
        base_url="http://localhost",
        token=world.key,
        httpx_args={"transport": httpx.WSGITransport(app=app)},
        raise_on_unexpected_status=True,
    )
    asked = create(world, "rep", 10, submit=True)  # a rep's request, for the key to decide
    set_level(world, world.people["owner"], world.levels["Manager"])

    page = approvals.list_approvals.sync(client=client, limit=20)
    assert isinstance(page, models.ApprovalList)
    assert [approval.id for approval in page.data] == [asked]
    assert isinstance(page.data[0], models.ApprovalOut)
    assert page.data[0].status == models.ApprovalStatus.PENDING

    body = models.ApprovalCreate(
        title="Typed",
        customer="Initech",
        currency=models.Currency.USD,
        line_items=[
            models.LineItemInput(
                description="Seats", quantity=2, unit_list_price=10_000, unit_price=9_000
            )
        ],
    )
    made = approvals.create_approval.sync(client=client, body=body, idempotency_key="typed-1")
    assert isinstance(made, models.ApprovalOut) and made.status == models.ApprovalStatus.DRAFT
    assert made.line_items[0].discount_percent == 10.0
    submitted = approvals.submit_approval.sync(made.id, client=client, body=models.NoInput())
    assert isinstance(submitted, models.ApprovalOut)
    assert submitted.status == models.ApprovalStatus.PENDING

    approved = approvals.approve_approval.sync(
        asked, client=client, body=models.DecisionInput(comment="Fine")
    )
    assert isinstance(approved, models.ApprovalOut)
    assert approved.status == models.ApprovalStatus.APPROVED
    refused = approvals.approve_approval.sync(made.id, client=client, body=models.DecisionInput())
    assert isinstance(refused, models.Error) and refused.error == "permission_denied"  # four eyes
