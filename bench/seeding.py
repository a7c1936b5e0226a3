"""The benchmarks' databases: organizations and keys made by DiscountFlow's own commands, and
approvals bulk-inserted beside them.

Organizations and API keys go through the documented CLI (``flask init-db``, ``create-org``,
``keys generate``), run in this process on an app configured by the documented environment
variables, so a bench keeps working whatever the code behind them becomes. Their owners'
passwords and the load's keys are hashed at bcrypt cost 4 (``BCRYPT_ROUNDS``): each server checks
each key once, while warming up, and that check is not what is measured.

Approvals, their line items and steps (and the levels, members and products they refer to) are
plain SQL: one ``executemany`` per table and chunk, all in one transaction, on a connection of
its own with no journal (a file left half-made is removed by the next run). A database of
approvals is kept under ``bench/results/`` (``BENCH_CACHE`` names another folder), named by its
size and a digest of the schema the migrations make, so a second run, or another benchmark,
uses it again; a change of schema makes a new one.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import random
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The servers run in production, which refuses a guessable key (config.py).
SECRET_KEY = "bench-5d1f8a3c9e7b2046f1c8e9a3d7b5f2c40e6a9d1b3c8f7e5a2d4b6c9e0f1a3b5c7d"
PASSWORD = "bench-password-1234"
SEED_VERSION = "1"  # part of a cached database's name: bump when the rows made here change


def server_env(database: Path, **settings: str) -> dict[str, str]:
    """The environment of a DiscountFlow server on ``database``: production (1,000 requests a
    minute per key, bcrypt cost 12 for anything it hashes), every other documented setting at its
    default — rate limits in the process (``process://``) among them — (empty: a ``.env``
    file cannot fill it in)."""
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{database}",
        "SECRET_KEY": SECRET_KEY,
        "DISCOUNTFLOW_ENV": "production",
        "BCRYPT_ROUNDS": "12",
    }
    for name in ("WEB_CONCURRENCY", "GUNICORN_THREADS"):  # gunicorn.conf.py's defaults
        env.pop(name, None)
    for name in (
        "RATELIMIT_STORAGE_URI",
        "API_RATE_LIMIT",
        "AUTH_FAILURE_LIMIT",
        "ACCESS_LOG",
        "TRUSTED_PROXY_COUNT",
        "TRUSTED_HOSTS",
        "METRICS_TOKEN",
        "METRICS_ALLOW_LOOPBACK",
    ):
        env[name] = ""
    env.update(settings)
    return env


@contextlib.contextmanager
def _environment(env: dict[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


class Commands:
    """DiscountFlow's CLI on one database, run in this process."""

    def __init__(self, database: Path, bcrypt_rounds: int = 4) -> None:
        from discountflow import create_app

        with _environment(server_env(database, BCRYPT_ROUNDS=str(bcrypt_rounds))):
            self.app = create_app()  # the environment is read here, once
        self.runner = self.app.test_cli_runner()

    def run(self, *args: str, input: str | None = None) -> str:
        """Run ``flask ARGS…``; return what it printed on stdout (anything else ends the run)."""
        result = self.runner.invoke(args=list(args), input=input)
        if result.exit_code != 0:
            raise SystemExit(f"flask {' '.join(args)} failed: {result.output}{result.exception!r}")
        return result.stdout

    def close(self) -> None:
        """Close the app's database connections (the file is then this process's alone)."""
        with self.app.app_context():
            self.app.extensions["sqlalchemy"].engine.dispose()

    def init_db(self) -> None:
        self.run("init-db")

    def organization(self, number: int, prefix: str = "bench") -> str:
        """Create an organization and its owner; return its slug."""
        slug = f"{prefix}-{number}"
        self.run(
            "create-org",
            f"{prefix.title()} {number}",
            "--owner-email",
            f"owner{number}@{prefix}.example",
            "--slug",
            slug,
            "--password-stdin",
            input=PASSWORD + "\n",
        )
        return slug

    def key(self, slug: str, *, read_only: bool = False) -> str:
        """Generate the organization's full-access (or read-only) key; return its text."""
        args = ["keys", "generate", "--org", slug] + (["--read-only"] if read_only else [])
        return self.run(*args).strip().splitlines()[-1]


def keys_for_load(database: Path, count: int, prefix: str = "bench") -> list[str]:
    """A fresh database with ``count`` keys: organizations with a full-access and a read-only
    key each (the two slots an organization has)."""
    commands = Commands(database)
    commands.init_db()
    keys: list[str] = []
    for number in range((count + 1) // 2):
        slug = commands.organization(number, prefix)
        keys += [commands.key(slug), commands.key(slug, read_only=True)]
    return keys[:count]


# --- approvals -----------------------------------------------------------------------------------

# (stored status, share, how it came about)
STATUS_MIX = [
    ("draft", 14, "draft"),
    ("approved", 14, "auto"),  # under the threshold: approved at submit, no steps
    ("pending", 20, "pending"),
    ("changes_requested", 6, "changes"),
    ("approved", 25, "approved"),  # some past their validity: read as expired
    ("rejected", 9, "rejected"),
    ("canceled", 7, "canceled"),
    ("expired", 5, "approved"),  # stored expired by the sweep
]
LEVELS = [("Manager", 1, 1500), ("VP Sales", 2, 3000), ("CFO", 3, 10_000)]
PRODUCTS = [
    ("PLAT-ENT", "Platform, enterprise tier, annual"),
    ("PLAT-PRO", "Platform, professional tier, annual"),
    ("SEAT-ADD", "Additional seats"),
    ("SUP-PREM", "Premium support"),
    ("ONB-PKG", "Onboarding package"),
    ("API-CALLS", "API call bundle, 10M"),
    ("STOR-1TB", "Storage add-on, 1 TB"),
    ("TRN-DAY", "Training day, on site"),
]
CUSTOMERS = ["Acme Corp", "Globex", "Initech", "Umbrella", "Hooli", "Stark Industries", "Wayne"]
CURRENCIES = ["USD", "USD", "USD", "EUR", "EUR", "GBP", "JPY", "CAD"]
MEMBERS = 6
CHUNK = 50_000  # approvals per executemany

COLUMNS = {
    "approval_levels": (
        "id organization_id name rank max_discount_bps created_at updated_at".split()
    ),
    "users": (
        "id organization_id email name password_hash role approval_level_id created_at".split()
    ),
    "products": "id organization_id sku name description active created_at updated_at".split(),
    "product_prices": ["product_id", "currency", "unit_list_price"],
    "approvals": (
        "id organization_id requested_by_id title customer deal_reference currency "
        "justification metadata status list_amount amount max_line_discount_bps round "
        "required_level_id awaiting_level_id submitted_at decided_at valid_until created_at "
        "updated_at"
    ).split(),
    "approval_line_items": (
        "id approval_id position product_id custom sku description quantity unit_list_price "
        "unit_price"
    ).split(),
    "approval_steps": (
        "id approval_id round position approval_level_id level_name level_rank status "
        "decided_by_id decided_at"
    ).split(),
}
BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def _stamp(moment: datetime | None) -> str | None:
    """A UTC time as SQLAlchemy stores it in SQLite (``2026-01-02 03:04:05.000006``)."""
    if moment is None:
        return None
    text = moment.isoformat(" ")
    return text if moment.microsecond else text + ".000000"


class _Ids:
    """Ids shaped as DiscountFlow's (``apr_`` and 22 base62 characters): the millisecond of
    the row's time in 8, then 14 that make it unique (a count here: cheaper than random ones,
    and what they are for is only that no two ids are the same)."""

    def __init__(self) -> None:
        self._count = itertools.count()

    @staticmethod
    def millisecond(moment: datetime) -> str:
        number, digits = int(moment.replace(tzinfo=UTC).timestamp() * 1000), []
        for _ in range(8):
            number, digit = divmod(number, 62)
            digits.append(BASE62[digit])
        return "".join(reversed(digits))

    def new(self, prefix: str, millisecond: str) -> str:
        return f"{prefix}_{millisecond}{next(self._count):014d}"


def _insert(connection: sqlite3.Connection, table: str, rows: list[tuple]) -> None:
    columns = COLUMNS[table]
    marks = ", ".join("?" * len(columns))
    connection.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)


def _check_columns(connection: sqlite3.Connection) -> None:
    """Refuse a schema this file does not know how to fill (a column gone, or a new required
    one), rather than seed something the app would not have written."""
    for table, columns in COLUMNS.items():
        info = connection.execute(f"PRAGMA table_info({table})").fetchall()
        names = {row[1] for row in info}
        unknown = [column for column in columns if column not in names]
        required = [row[1] for row in info if row[3] and row[4] is None and row[1] not in columns]
        if unknown or required:
            raise SystemExit(
                f"bench/seeding.py does not know the table {table} any more "
                f"(gone: {unknown}, new and required: {required}): teach it"
            )


class _Organization:
    """What approvals refer to: levels, approvers, members and the price book."""

    def __init__(self, connection: sqlite3.Connection, slug: str, now: datetime, rng, ids) -> None:
        self.id, owner, password_hash = connection.execute(
            "SELECT o.id, u.id, u.password_hash FROM organizations o JOIN users u "
            "ON u.organization_id = o.id AND u.role = 'owner' WHERE o.slug = ?",
            (slug,),
        ).fetchone()
        stamp, millisecond = _stamp(now), ids.millisecond(now)
        self.levels = [(ids.new("lvl", millisecond), name, rank) for name, rank, _ in LEVELS]
        _insert(
            connection,
            "approval_levels",
            [
                (level_id, self.id, name, rank, bps, stamp, stamp)
                for (level_id, name, rank), (_, _, bps) in zip(self.levels, LEVELS, strict=True)
            ],
        )
        self.approvers = [ids.new("usr", millisecond) for _ in self.levels]
        self.members = [ids.new("usr", millisecond) for _ in range(MEMBERS)]
        users = [
            (
                user,
                self.id,
                f"approver{n}@{slug}.example",
                f"Approver {n}",
                password_hash,
                "member",
                level[0],
                stamp,
            )
            for n, (user, level) in enumerate(zip(self.approvers, self.levels, strict=True))
        ]
        users += [
            (
                user,
                self.id,
                f"member{n}@{slug}.example",
                f"Member {n}",
                password_hash,
                "member",
                None,
                stamp,
            )
            for n, user in enumerate(self.members)
        ]
        _insert(connection, "users", users)
        self.members.append(owner)
        self.book, products, prices = {}, [], []
        for sku, name in PRODUCTS:
            product_id = ids.new("prd", millisecond)
            listed = {currency: rng.randrange(1_000, 500_000) for currency in CURRENCIES}
            self.book[sku] = (product_id, listed)
            products.append((product_id, self.id, sku, name, "", True, stamp, stamp))
            prices += [(product_id, currency, price) for currency, price in listed.items()]
        _insert(connection, "products", products)
        _insert(connection, "product_prices", prices)


_KINDS = [(status, kind) for status, _, kind in STATUS_MIX]
_CUMULATIVE = list(itertools.accumulate(share for _, share, _ in STATUS_MIX))
_METADATA = [json.dumps({"crm": "salesforce", "region": r}) for r in ("emea", "amer", "apac")]
_OUTCOMES = {"approved": "approved", "changes": "changes_requested", "canceled": "pending"}


class _Approvals:
    """Approvals of one organization as DiscountFlow would have stored them, with their line
    items and steps, as rows in the order of ``COLUMNS``."""

    def __init__(self, org: _Organization, rng: random.Random, ids: _Ids) -> None:
        self.org, self.rng, self.ids = org, rng, ids

    def steps(self, approval_id, millisecond, round_, route, decided, outcome) -> list[list]:
        """The steps of one round: ``outcome`` is what happened at the last step reached."""
        rng, approvers = self.rng, self.org.approvers
        reached = rng.randrange(len(route)) if outcome != "approved" else len(route) - 1
        rows = []
        for position, (level_id, name, rank) in enumerate(route, start=1):
            if position - 1 < reached:
                status = "approved"
            elif position - 1 == reached:
                status = outcome
            else:
                status = "waiting" if outcome == "pending" else "canceled"
            done = status in ("approved", "rejected", "changes_requested")
            rows.append(
                [
                    self.ids.new("stp", millisecond),
                    approval_id,
                    round_,
                    position,
                    level_id,
                    name,
                    rank,
                    status,
                    approvers[rank - 1] if done else None,
                    decided + timedelta(hours=position) if done else None,
                ]
            )
        return rows

    def one(self, number: int, created: datetime) -> tuple[tuple, list[tuple], list[tuple]]:
        rng, org = self.rng, self.org
        status, kind = rng.choices(_KINDS, cum_weights=_CUMULATIVE)[0]
        millisecond = self.ids.millisecond(created)
        approval_id = self.ids.new("apr", millisecond)
        currency = rng.choice(CURRENCIES)
        items, largest, list_amount, amount = [], 0.0, 0, 0
        for position in range(1, rng.choice((1, 2, 2, 3, 3, 3, 4, 4, 5, 5)) + 1):
            sku, description = rng.choice(PRODUCTS)
            product_id, listed = org.book[sku]
            unit_list_price = listed[currency]
            if kind == "auto":
                discount = rng.uniform(0, 0.05)
            else:
                discount = rng.choice((0, rng.uniform(0.02, 0.4)))
            unit_price = round(unit_list_price * (1 - discount))
            quantity = rng.randrange(1, 500)
            items.append(
                (
                    self.ids.new("li", millisecond),
                    approval_id,
                    position,
                    product_id,
                    False,
                    sku,
                    description,
                    quantity,
                    unit_list_price,
                    unit_price,
                )
            )
            largest = max(largest, 1 - unit_price / unit_list_price)
            list_amount += quantity * unit_list_price
            amount += quantity * unit_price
        max_bps = int(largest * 10_000 + 0.5)
        required = next(
            (
                level
                for level, (_, _, bps) in zip(org.levels, LEVELS, strict=True)
                if bps >= max_bps
            ),
            org.levels[-1],
        )
        route = org.levels[: required[2]]
        submitted = created + timedelta(minutes=rng.uniform(5, 600))
        round_, required_id, awaiting, decided_at, valid_until = 0, None, None, None, None
        submitted_at, updated = None, created
        steps: list[list] = []
        if kind == "draft" or (kind == "canceled" and rng.random() < 0.3):
            pass
        elif kind == "auto":
            round_, submitted_at, updated, decided_at = 1, submitted, submitted, submitted
            valid_until = submitted + timedelta(days=30)
        else:
            round_, submitted_at, updated, required_id = 1, submitted, submitted, required[0]
            if rng.random() < 0.15:  # sent back once, then submitted again
                steps += self.steps(
                    approval_id, millisecond, 1, route, submitted, "changes_requested"
                )
                submitted_at = updated = submitted + timedelta(days=rng.uniform(0.5, 5))
                round_ = 2
            current = self.steps(
                approval_id, millisecond, round_, route, submitted_at, _OUTCOMES.get(kind, kind)
            )
            if kind == "canceled":
                for step in current:
                    if step[7] in ("pending", "waiting"):
                        step[7] = "canceled"
            steps += current
            decided = max((step[9] for step in current if step[9]), default=submitted_at)
            if kind == "pending":
                awaiting = next(step[4] for step in current if step[7] == "pending")
            else:
                updated = decided
            if kind in ("approved", "rejected"):
                decided_at = decided
            if kind == "approved":
                valid_until = decided + timedelta(days=30)
        metadata = rng.choice(_METADATA) if rng.random() < 0.5 else "{}"
        approval = (
            approval_id,
            org.id,
            rng.choice(org.members),
            f"Q{rng.randint(1, 4)} renewal {number}",
            rng.choice(CUSTOMERS),
            f"OPP-{rng.randrange(10**6):06d}" if rng.random() < 0.7 else "",
            currency,
            "Multi-year commitment; competitor quote attached." * rng.randint(0, 2),
            metadata,
            status,
            list_amount,
            amount,
            max_bps,
            round_,
            required_id,
            awaiting,
            _stamp(submitted_at),
            _stamp(decided_at),
            _stamp(valid_until),
            _stamp(created),
            _stamp(updated),
        )
        return approval, items, [(*step[:9], _stamp(step[9])) for step in steps]


def _fill(database: Path, slug: str, approvals: int) -> dict[str, int]:
    """Bulk-insert ``approvals`` approvals of the organization, created over the past year in
    order (as they would have arrived), in one transaction."""
    rng = random.Random(approvals)
    now = datetime.now(UTC).replace(tzinfo=None)
    connection = sqlite3.connect(database, isolation_level=None)
    try:
        _check_columns(connection)
        connection.execute("PRAGMA journal_mode=OFF")
        connection.execute("PRAGMA synchronous=OFF")
        connection.execute("PRAGMA cache_size=-262144")  # 256 MiB while the indexes grow
        connection.execute("BEGIN")
        ids = _Ids()
        made = _Approvals(_Organization(connection, slug, now, rng, ids), rng, ids)
        span = timedelta(days=365)
        start = now - span - timedelta(hours=1)
        counts = {"approvals": 0, "line items": 0, "steps": 0}
        for first in range(0, approvals, CHUNK):
            rows, items, steps = [], [], []
            for number in range(first, min(first + CHUNK, approvals)):
                created = start + span * ((number + rng.random()) / approvals)
                approval, its_items, its_steps = made.one(number, created)
                rows.append(approval)
                items += its_items
                steps += its_steps
            _insert(connection, "approvals", rows)
            _insert(connection, "approval_line_items", items)
            _insert(connection, "approval_steps", steps)
            counts["approvals"] += len(rows)
            counts["line items"] += len(items)
            counts["steps"] += len(steps)
        connection.execute("COMMIT")
        connection.execute("PRAGMA journal_mode=WAL")  # as the app keeps it
    finally:
        connection.close()
    return counts


def _schema_digest(folder: Path) -> str:
    """A digest of the schema the migrations make today (an empty database, made and read)."""
    empty = folder / "schema.sqlite"
    commands = Commands(empty)
    commands.init_db()
    commands.close()
    connection = sqlite3.connect(empty)
    try:
        statements = [sql for (sql,) in connection.execute("SELECT sql FROM sqlite_master") if sql]
    finally:
        connection.close()
    # Line by line, sorted: a table rebuilt by a migration lists its constraints in an order
    # that changes from one run to the next.
    lines = sorted({line.strip().rstrip(",") for sql in statements for line in sql.splitlines()})
    return hashlib.sha256("\n".join([SEED_VERSION, *lines]).encode()).hexdigest()[:12]


def cache_folder() -> Path:
    folder = Path(os.environ.get("BENCH_CACHE") or ROOT / "bench" / "results")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def approvals_database(approvals: int, scratch: Path) -> tuple[Path, list[str]]:
    """A database of one organization with ``approvals`` approvals (a few line items each,
    steps for those submitted) and its two keys (full access, read-only): the cached one for
    this schema and size, or a new one, seeded beside it and renamed when complete."""
    folder = cache_folder()
    database = folder / f"approvals-{approvals}-{_schema_digest(scratch)}.sqlite"
    keys_file = database.with_suffix(".keys.json")
    if database.exists() and keys_file.exists():  # the keys are written last
        print(f"{approvals:,} approvals: {database} (seeded before)", flush=True)
        return database, json.loads(keys_file.read_text())
    for old in folder.glob(f"approvals-{approvals}-*"):  # another schema's, or a half-made one
        old.unlink()
    started = time.monotonic()
    building = database.with_suffix(".partial")
    commands = Commands(building)
    commands.init_db()
    slug = commands.organization(0)
    keys = [commands.key(slug), commands.key(slug, read_only=True)]
    commands.close()
    counts = _fill(building, slug, approvals)
    for beside in folder.glob(f"{building.name}?*"):  # the app's files beside it
        beside.unlink()
    building.replace(database)
    keys_file.write_text(json.dumps(keys))
    described = ", ".join(f"{count:,} {label}" for label, count in counts.items())
    print(f"seeded {described} in {time.monotonic() - started:.1f} s: {database}", flush=True)
    return database, keys
