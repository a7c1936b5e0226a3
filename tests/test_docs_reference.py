"""The API reference pages keep up with the code: every error code it can answer is documented.

The codes are collected from the code itself, so a new one without a line in
``docs/api/errors.md`` fails the build:

* the ``code`` of every ``DomainError`` subclass (services, idempotency, CSV import …);
* the codes ``errors.py`` gives HTTP errors, and those gunicorn's worker answers with
  (``server.py``);
* every code written literally where an answer is made: ``{"code": …}`` in GraphQL's
  ``extensions`` (a name is read from its module's constants), ``answer(status, "code", …)``
  and ``jsonify(error="code", …)``.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
from pathlib import Path

import discountflow
from discountflow import errors, server
from discountflow.docs import pages

PACKAGE = Path(discountflow.__file__).parent
ERRORS_PAGE = pages.DOCS / "api" / "errors.md"


def _import_every_module() -> None:
    """Import every module of the package, so every ``DomainError`` subclass exists."""
    for module in pkgutil.walk_packages([str(PACKAGE)], "discountflow."):
        if ".migrations" not in module.name:
            importlib.import_module(module.name)


def _subclasses(cls: type) -> set[type]:
    found = set()
    for sub in cls.__subclasses__():
        found |= {sub, *_subclasses(sub)}
    return found


def _constants(tree: ast.Module) -> dict[str, str]:
    """A module's top-level ``NAME = "text"`` constants."""
    return {
        target.id: node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
        for target in node.targets
        if isinstance(target, ast.Name)
    }


def _written_codes(path: Path) -> set[str]:
    """Codes written where answers are made, in one source file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    constants = _constants(tree)

    def text(node: ast.AST | None) -> str | None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        if isinstance(node, ast.Name):
            return constants.get(node.id)
        return None

    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if text(key) == "code" and (code := text(value)):
                    found.add(code)
        elif isinstance(node, ast.Call):
            name = getattr(node.func, "id", getattr(node.func, "attr", None))
            if name == "answer" and len(node.args) >= 2 and (code := text(node.args[1])):
                found.add(code)
            for keyword in node.keywords:
                if keyword.arg in ("error", "code") and (code := text(keyword.value)):
                    found.add(code)
    return found


def error_codes() -> set[str]:
    """Every error code the code base can answer with."""
    _import_every_module()
    codes = {cls.code for cls in _subclasses(errors.DomainError)}
    codes |= {code for code, _ in errors._HTTP_ERRORS.values()}
    codes |= {refusal[-2] for refusal in [*server._REFUSALS, server._MALFORMED, server._FAILED]}
    for path in PACKAGE.rglob("*.py"):
        if "migrations" not in path.parts:
            codes |= _written_codes(path)
    return codes


def test_the_collection_finds_the_codes_of_every_kind():
    codes = error_codes()
    assert {
        "parameter_invalid",  # DomainError itself
        "idempotency_key_reused",  # a subclass outside errors.py
        "method_not_allowed",  # an HTTP error
        "query_too_complex",  # GraphQL's extensions, through a constant
        "service_unavailable",  # answer(503, …)
        "invalid_metrics_token",  # jsonify(error=…)
    } <= codes
    assert all(re.fullmatch(r"[a-z]+(_[a-z]+)*", code) for code in codes), codes


def test_every_error_code_is_documented_on_the_errors_page():
    page = ERRORS_PAGE.read_text(encoding="utf-8")
    missing = sorted(code for code in error_codes() if f"`{code}`" not in page)
    assert missing == [], f"docs/api/errors.md does not explain: {missing}"


def test_every_event_type_is_documented_on_the_events_page():
    from discountflow.audit.schemas import EVENT_TYPES

    page = (Path(__file__).resolve().parents[1] / "docs" / "api" / "events.md").read_text()
    missing = sorted(kind for kind in EVENT_TYPES if f"| `{kind}` |" not in page)
    assert missing == [], "say what these events mean on docs/api/events.md"
