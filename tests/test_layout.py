"""The house's shape: the import graph rises one way, with no circle, and every feature has the
same rooms.

Surfaces (REST, GraphQL, the dashboard, the CLI) import services; services import models and
schemas; everything imports the base (extensions, the database, errors, shared shapes). Nothing
below imports a surface, and no import — not even one inside a function — closes a circle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "discountflow"
FEATURES = (
    "organizations",
    "auth",
    "approvals",
    "products",
    "audit",
    "webhooks",
    "notifications",
    "insights",
)

BASE, MODELS, SCHEMAS, SERVICES, SURFACES, WIRING = range(6)
LAYER_NAMES = ["base", "models", "schemas", "services", "surfaces", "wiring"]

# Modules by name; a feature's modules by their file name (the same rooms in every feature).
BASE_MODULES = {
    "config",
    "currencies",
    "database",
    "errors",
    "extensions",
    "hashing",
    "metrics",
    "pagination",
    "ratelimit",
    "schemas",
    "sealing",
    "csv_files",
}
SERVICE_MODULES = {"actors", "attempts", "outbox"}
SURFACE_MODULES = {
    "api",
    "cli",
    "graphql",
    "graphql_base",
    "graphql_limits",
    "idempotency",
    "openapi",
    "operations",
    "server",
}
FEATURE_ROOMS = {
    "models": MODELS,
    "schemas": SCHEMAS,
    "services": SERVICES,
    "queries": SERVICES,
    "routing": SERVICES,
    "levels": SERVICES,
    "keys": SERVICES,
    "authentication": SERVICES,
    "demo": SERVICES,
    "csv_files": SERVICES,
    "signing": SERVICES,
    "safety": SERVICES,
    "outbox": SERVICES,
    "worker": SERVICES,
    "pacing": SERVICES,
    "messages": SERVICES,
    "mail": SERVICES,
    "reminders": SERVICES,
    "chat": SERVICES,
    "destinations": SERVICES,
    "api": SURFACES,
    "graphql": SURFACES,
    "views": SURFACES,
    "charts": SURFACES,
    "forms": SURFACES,
    "cli": SURFACES,
}


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE.parent).with_suffix("")
        if "migrations" in relative.parts:
            continue
        parts = list(relative.parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def layer(module: str) -> int:
    parts = module.split(".")[1:]
    if not parts:
        return WIRING  # the application factory
    if parts[0] in ("dashboard", "docs"):
        return SURFACES  # the dashboard's shell; the documentation site (pages, no domain)
    if len(parts) == 1:
        name = parts[0]
        if name in FEATURES:
            return WIRING  # a feature's init_app
        if name in BASE_MODULES:
            return BASE
        if name in SERVICE_MODULES:
            return SERVICES
        if name in SURFACE_MODULES:
            return SURFACES
        raise AssertionError(f"{module}: say which layer it belongs to (tests/test_layout.py)")
    if parts[0] in FEATURES and parts[1] in FEATURE_ROOMS:
        return FEATURE_ROOMS[parts[1]]
    raise AssertionError(f"{module}: say which layer it belongs to (tests/test_layout.py)")


def _imports(module: str, path: Path) -> set[str]:
    """Every module of the package this one imports, at the top or inside a function."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            names = [f"{source}.{alias.name}" for alias in node.names]
            names = [name if name in MODULES else source for name in names]
        else:
            continue
        imported |= {name for name in names if name in MODULES and name != module}
    return imported


GRAPH = {module: _imports(module, path) for module, path in MODULES.items()}


def test_every_module_has_a_layer():
    for module in MODULES:
        layer(module)


def test_imports_never_rise():
    rising = [
        f"{module} ({LAYER_NAMES[layer(module)]}) imports {target} ({LAYER_NAMES[layer(target)]})"
        for module, targets in GRAPH.items()
        for target in targets
        if layer(target) > layer(module)
    ]
    assert rising == []


def test_no_import_closes_a_circle():
    """Tarjan's strongly connected components: every one must be a single module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for target in GRAPH[module]:
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in on_stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for module in GRAPH:
        if module not in index:
            visit(module)
    assert circles == []


ROOMS = ("models.py", "schemas.py", "services.py", "api.py", "views.py")

# Rooms a feature does not have yet, and why: said here, and checked to be still missing, so
# the list shrinks as they come (it is not a reason to leave a room out for good).
NOT_YET: dict[str, set[str]] = {}


# Rooms a feature will never need, and why (checked to be still missing, like NOT_YET).
NOT_NEEDED = {
    # Insights reads the approvals' tables (its indexes are theirs): it has none of its own.
    "insights": {"models.py"},
}


@pytest.mark.parametrize("feature", FEATURES)
def test_each_feature_has_the_same_rooms_and_registers_itself(feature):
    folder = PACKAGE / feature
    for room in ROOMS:
        if room not in set(NOT_YET.get(feature, ())) | NOT_NEEDED.get(feature, set()):
            assert (folder / room).exists(), f"{feature} has no {room}"
    assert (folder / "templates" / feature).is_dir(), f"{feature} has no templates/{feature}/"
    init = ast.parse((folder / "__init__.py").read_text())
    assert any(
        isinstance(node, ast.FunctionDef) and node.name == "init_app" for node in init.body
    ), f"{feature} registers its own blueprints in init_app"


@pytest.mark.parametrize("feature", sorted({*NOT_YET, *NOT_NEEDED}))
def test_the_rooms_not_there_yet_are_still_missing(feature):
    """A room listed as missing that has come must leave the list (and be checked)."""
    missing = set(NOT_YET.get(feature, ())) | NOT_NEEDED.get(feature, set())
    assert missing <= set(ROOMS)
    arrived = sorted(room for room in missing if (PACKAGE / feature / room).exists())
    assert arrived == [], f"{feature} has {arrived} now: take them out of NOT_YET"


def test_errors_import_no_surface():
    surfaces = {target for target in GRAPH["discountflow.errors"] if layer(target) >= SURFACES}
    assert surfaces == set()


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def test_no_library_is_used_through_a_private_name():
    """Libraries are used through their public extension points: no ``from lib import _x``,
    no ``import lib._module``, no ``something._attribute`` (our own ``self._x`` and ``cls._x``
    aside) and no ``getattr(x, "_name")`` — so a library's upgrade is an upgrade, not a
    project, and runtime pins can stay compatible ranges (requirements.txt)."""
    found = []
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            where = f"{module}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, ast.ImportFrom) and not node.level:
                parts = (node.module or "").split(".") + [alias.name for alias in node.names]
                found += [f"{where} from {node.module} import ..." for p in parts if _private(p)]
            elif isinstance(node, ast.Import):
                found += [
                    f"{where} import {alias.name}"
                    for alias in node.names
                    if any(_private(part) for part in alias.name.split("."))
                ]
            elif isinstance(node, ast.Attribute) and _private(node.attr):
                if not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
                    found.append(f"{where} {ast.unparse(node)}")
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in ("getattr", "setattr", "hasattr")
                and len(node.args) > 1
                and isinstance(node.args[1], ast.Constant)
                and isinstance(node.args[1].value, str)
                and _private(node.args[1].value)
            ):
                found.append(f"{where} {ast.unparse(node)}")
    assert found == []


def test_every_runtime_dependency_is_a_compatible_release_pin():
    """``~=``: security releases arrive with an upgrade; nothing is held at one version."""
    lines = (PACKAGE.parent / "requirements.txt").read_text().splitlines()
    pins = [line.split("#")[0].strip() for line in lines]
    pins = [pin for pin in pins if pin]
    assert pins and [pin for pin in pins if "~=" not in pin or "==" in pin] == []
