"""Insights on a real history: the default Insights page and ``GET /v2/insights`` on 1,000,000
approvals (3 line items each) over two years, on SQLite and on PostgreSQL.

Run from the repository root:
``python bench/insights.py [--approvals 1000000] [--rounds 15] [--database sqlite|postgresql|both]
[--postgres-url URL] [--json PATH]``

Each database is made by DiscountFlow's own commands (``flask init-db``, ``create-org``, ``keys
generate``: the migrations build the schema, indexes included), then filled in bulk beside
them — members, three levels, 40 products; approvals created evenly over the last two years in
USD (most), EUR and GBP, auto-approved, approved after one to three steps, rejected, sent back,
canceled, drafts (some recalled), and pending in the last month; three lines each (one in ten
custom); their steps, decisions and recall events. SQLite through ``executemany``, PostgreSQL
through ``COPY``, then ``ANALYZE`` (PostgreSQL: ``VACUUM ANALYZE``, so index-only scans can be
used). A database is kept for the next run (SQLite: under ``bench/results/``; PostgreSQL: the
database ``discountflow_bench_insights`` beside ``test``), named by its size and a digest of the
migrations; ``--fresh`` seeds again.

One DiscountFlow server on each (the shipped gunicorn configuration, production). From
outside, over HTTP, as a person and an integration would: the owner signs in, then each round
asks for ``GET /insights`` (the page: every chart drawn, defaults — the last 90 days, the newest
request's currency) and ``GET /v2/insights`` (the same figures as JSON, with an API key). The
first two of each are warm-up, not counted. Reported: the median, the fastest and the slowest
of the rounds, and the 90th percentile; target ≤ 300 ms each (the median).
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import io
import json
import os
import random
import re
import sqlite3
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import harness, seeding  # noqa: E402

APPROVALS = 1_000_000
LINES = 3
ROUNDS = 15
WARM = 2
TARGET_MS = 300.0
DAYS = 730
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
PG_DATABASE = "discountflow_bench_insights"
SEED_VERSION = "1"
PASSWORD = seeding.PASSWORD
REPS = 30
LEVELS = [("Manager", 1, 1500), ("VP Sales", 2, 3000), ("CFO", 3, 10_000)]
PRODUCTS = 40
CURRENCIES = ["USD"] * 17 + ["EUR", "EUR", "GBP"]
CHUNK = 20_000
PAGE = harness.Request("GET", "/insights")
API = harness.Request("GET", "/v2/insights")


# --- the database --------------------------------------------------------------------------------


def _digest() -> str:
    """The migrations' text and this file's seed version: a change makes a new database."""
    versions = sorted((ROOT / "discountflow" / "migrations" / "versions").glob("*.py"))
    text = SEED_VERSION + "".join(path.read_text() for path in versions)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


class Commands(seeding.Commands):
    """DiscountFlow's CLI on a database named by its URL (SQLite or PostgreSQL)."""

    def __init__(self, url: str) -> None:  # noqa: D107 - as seeding.Commands, on any URL
        from discountflow import create_app

        env = seeding.server_env(Path("unused"), BCRYPT_ROUNDS="4", DATABASE_URL=url)
        with seeding._environment(env):  # noqa: SLF001 - the bench's own helper
            self.app = create_app()
        self.runner = self.app.test_cli_runner()


def _stamp(moment: datetime | None, sqlite: bool):
    if moment is None:
        return None
    return seeding._stamp(moment) if sqlite else moment  # noqa: SLF001


class History:
    """The rows of the organization's history, generated in chunks (deterministic: seed 28)."""

    def __init__(self, organization_id: str, owner_id: str, approvals: int, now: datetime):
        self.organization_id, self.owner_id = organization_id, owner_id
        self.approvals = approvals
        self.now = now
        self.random = random.Random(28)
        self.levels = [(f"lvl_bench{rank}", name, rank, bps) for name, rank, bps in LEVELS]
        self.reps = [f"usr_benchrep{n:03d}" for n in range(REPS)]
        self.approvers = {
            rank: [f"usr_benchapp{rank}{n}" for n in range(2)] for _, _, rank, _ in self.levels
        }
        self.products = [
            (f"prd_bench{n:03d}", f"SKU-{n:03d}", f"Product {n}", 1_000 * (n + 1))
            for n in range(PRODUCTS)
        ]

    def setup_rows(self, sqlite: bool) -> dict[str, list[tuple]]:
        created = _stamp(self.now - timedelta(days=DAYS + 1), sqlite)
        org = self.organization_id
        rows: dict[str, list[tuple]] = {
            "approval_levels": [],
            "users": [],
            "products": [],
            "product_prices": [],
        }
        for level_id, name, rank, bps in self.levels:
            rows["approval_levels"].append((level_id, org, name, rank, bps, created, created))
        password = "$2b$04$" + "x" * 53  # nobody signs in as these
        for rep in self.reps:
            rows["users"].append(
                (
                    rep,
                    org,
                    f"{rep}@bench.example",
                    f"Rep {rep[-3:]}",
                    password,
                    "member",
                    None,
                    created,
                )
            )
        for level_id, _, rank, _ in self.levels:
            for approver in self.approvers[rank]:
                rows["users"].append(
                    (
                        approver,
                        org,
                        f"{approver}@bench.example",
                        f"Approver {approver[-2:]}",
                        password,
                        "member",
                        level_id,
                        created,
                    )
                )
        for product_id, sku, name, price in self.products:
            rows["products"].append((product_id, org, sku, name, "", True, created, created))
            for currency in ("USD", "EUR", "GBP"):
                rows["product_prices"].append((product_id, currency, price))
        return rows

    def chunks(self, sqlite: bool):
        """Yield dicts of table → rows, ``CHUNK`` approvals at a time."""
        rnd = self.random
        span = timedelta(days=DAYS).total_seconds()
        start = self.now - timedelta(days=DAYS)
        levels = self.levels
        for first in range(0, self.approvals, CHUNK):
            out = {
                t: []
                for t in (
                    "approvals",
                    "approval_line_items",
                    "approval_steps",
                    "approval_decisions",
                    "events",
                )
            }
            for n in range(first, min(first + CHUNK, self.approvals)):
                aid = f"apr_bench{n:09d}"
                created = start + timedelta(seconds=span * n / self.approvals + rnd.random() * 60)
                currency = rnd.choice(CURRENCIES)
                rep = rnd.choice(self.reps)
                list_total = net_total = 0
                max_bps = 0
                for position in range(1, LINES + 1):
                    custom = rnd.random() < 0.1
                    quantity = rnd.randint(1, 50)
                    if custom:
                        product_id, sku, description, list_price = (
                            None,
                            "",
                            "Custom work",
                            rnd.randint(500, 500_000),
                        )
                    else:
                        product_id, sku, description, list_price = rnd.choice(self.products)
                    off = min(6000, int(rnd.expovariate(1 / 1200)))  # bps, mostly shallow
                    price = list_price * (10_000 - off) // 10_000
                    max_bps = max(max_bps, (list_price - price) * 10_000 // list_price)
                    list_total += quantity * list_price
                    net_total += quantity * price
                    out["approval_line_items"].append(
                        (
                            f"li_bench{n:09d}{position}",
                            aid,
                            position,
                            product_id,
                            custom,
                            sku,
                            description,
                            quantity,
                            list_price,
                            price,
                        )
                    )
                recent = (self.now - created).days < 30
                roll = rnd.random()
                if roll < 0.05:
                    kind = "draft"
                elif roll < 0.08:
                    kind = "recalled"
                elif roll < 0.12:
                    kind = "canceled"
                elif roll < 0.16:
                    kind = "changes"
                elif roll < 0.26:
                    kind = "rejected"
                elif recent and roll < 0.40:
                    kind = "pending"
                else:
                    kind = "approved"
                has_custom = any(line[4] for line in out["approval_line_items"][-LINES:])
                if kind == "approved" and max_bps <= 500 and not has_custom:
                    kind = "auto"
                needed = next(
                    (i for i, level in enumerate(levels) if max_bps <= level[3]), len(levels) - 1
                )
                route = levels[: needed + 1]
                submitted = created + timedelta(minutes=rnd.randint(1, 600))
                status, decided, required, awaiting, round_ = kind, None, None, None, 1
                valid_until = None
                moment = submitted
                steps = []
                if kind in ("draft", "recalled"):
                    status, submitted, round_ = "draft", None, 0 if kind == "draft" else 1
                    if kind == "recalled":
                        out["events"].append(
                            (
                                f"evt_bench{n:09d}r",
                                self.organization_id,
                                aid,
                                "approval.recalled",
                                "user",
                                rep,
                                None,
                                "dashboard",
                                "{}",
                                _stamp(created + timedelta(hours=3), sqlite),
                            )
                        )
                elif kind == "canceled":
                    status, submitted, round_ = "canceled", None, 0
                elif kind == "auto":
                    status, decided = "approved", submitted
                    valid_until = submitted + timedelta(days=30)
                    out["approval_decisions"].append(
                        (
                            f"dec_bench{n:09d}a",
                            self.organization_id,
                            aid,
                            None,
                            "auto_approve",
                            "",
                            "system",
                            None,
                            None,
                            "system",
                            _stamp(submitted, sqlite),
                        )
                    )
                else:
                    required = route[-1][0]
                    outcome_at = {
                        "approved": len(route),
                        "rejected": rnd.randint(1, len(route)),
                        "changes": 1,
                        "pending": rnd.randint(1, len(route)),
                    }[kind]
                    for position, (level_id, name, rank, _) in enumerate(route, start=1):
                        if position < outcome_at or (position == outcome_at and kind != "pending"):
                            wait = timedelta(seconds=int(rnd.expovariate(1 / (6 * 3600))) + 60)
                            decided_at = moment + wait
                            if decided_at > self.now:
                                decided_at = self.now - timedelta(minutes=1)
                            step_status = "approved"
                            if position == outcome_at:
                                step_status = {
                                    "approved": "approved",
                                    "rejected": "rejected",
                                    "changes": "changes_requested",
                                }[kind]
                            decider = rnd.choice(self.approvers[rank])
                            steps.append(
                                (
                                    position,
                                    level_id,
                                    name,
                                    rank,
                                    step_status,
                                    decider,
                                    moment,
                                    decided_at,
                                )
                            )
                            decision = {
                                "approved": "approve",
                                "rejected": "reject",
                                "changes_requested": "request_changes",
                            }[step_status]
                            out["approval_decisions"].append(
                                (
                                    f"dec_bench{n:09d}{position}",
                                    self.organization_id,
                                    aid,
                                    f"stp_bench{n:09d}{position}",
                                    decision,
                                    "",
                                    "user",
                                    decider,
                                    None,
                                    "dashboard",
                                    _stamp(decided_at, sqlite),
                                )
                            )
                            moment = decided_at
                        elif position == outcome_at:  # pending here
                            steps.append(
                                (position, level_id, name, rank, "pending", None, moment, None)
                            )
                            awaiting = level_id
                        else:
                            steps.append(
                                (
                                    position,
                                    level_id,
                                    name,
                                    rank,
                                    "waiting" if kind == "pending" else "canceled",
                                    None,
                                    None,
                                    None,
                                )
                            )
                    if kind == "approved":
                        decided = moment
                        valid_until = moment + timedelta(days=30)
                        status = "approved" if valid_until > self.now else "expired"
                    elif kind == "rejected":
                        decided = moment
                    elif kind == "changes":
                        status, required = "changes_requested", None
                for (
                    position,
                    level_id,
                    name,
                    rank,
                    step_status,
                    decider,
                    started_at,
                    decided_at,
                ) in steps:
                    out["approval_steps"].append(
                        (
                            f"stp_bench{n:09d}{position}",
                            aid,
                            round_,
                            position,
                            level_id,
                            name,
                            rank,
                            step_status,
                            decider,
                            _stamp(started_at, sqlite),
                            _stamp(decided_at, sqlite),
                        )
                    )
                out["approvals"].append(
                    (
                        aid,
                        self.organization_id,
                        rep,
                        f"Deal {n}",
                        "Customer",
                        "",
                        currency,
                        "",
                        "{}",
                        status,
                        list_total,
                        net_total,
                        max_bps,
                        round_,
                        required,
                        awaiting,
                        _stamp(submitted, sqlite),
                        _stamp(decided, sqlite),
                        _stamp(valid_until, sqlite),
                        _stamp(created, sqlite),
                        _stamp(created, sqlite),
                    )
                )
            yield out


COLUMNS = {
    **seeding.COLUMNS,
    "approval_steps": (
        "id approval_id round position approval_level_id level_name level_rank status "
        "decided_by_id started_at decided_at"
    ).split(),
    "approval_decisions": (
        "id organization_id approval_id step_id type comment actor_type actor_user_id api_key_id "
        "surface created_at"
    ).split(),
    "events": (
        "id organization_id approval_id type actor_type actor_user_id api_key_id surface data "
        "created_at"
    ).split(),
}


def _organization(commands: Commands) -> tuple[str, str, list[str]]:
    slug = commands.organization(0, "insights")
    keys = [commands.key(slug), commands.key(slug, read_only=True)]
    with commands.app.app_context():
        from sqlalchemy import select

        from discountflow.extensions import db
        from discountflow.organizations.models import Organization, User

        org = db.session.execute(select(Organization).where(Organization.slug == slug)).scalar_one()
        owner = db.session.execute(select(User).where(User.organization_id == org.id)).scalar_one()
        return org.id, owner.id, keys


def build_sqlite(path: Path, approvals: int) -> list[str]:
    commands = Commands(f"sqlite:///{path}")
    commands.init_db()
    organization_id, owner_id, keys = _organization(commands)
    commands.close()
    history = History(organization_id, owner_id, approvals, datetime.now(UTC))
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode=OFF")
    connection.execute("PRAGMA synchronous=OFF")
    connection.execute("BEGIN")

    def insert(table: str, rows: list[tuple]) -> None:
        if rows:
            columns = COLUMNS[table]
            marks = ", ".join("?" * len(columns))
            connection.executemany(
                f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows
            )

    for table, rows in history.setup_rows(sqlite=True).items():
        insert(table, rows)
    for number, chunk in enumerate(history.chunks(sqlite=True)):
        for table, rows in chunk.items():
            insert(table, rows)
        _progress(number, approvals)
    connection.execute("COMMIT")
    connection.execute("ANALYZE")
    connection.execute("PRAGMA journal_mode=WAL")
    connection.close()
    return keys


def _pg(url: str):
    import psycopg

    plain = url.replace("postgresql+psycopg://", "postgresql://")
    return psycopg.connect(plain, autocommit=True)


def build_postgresql(base_url: str, approvals: int) -> tuple[str, list[str]]:
    url = base_url.rsplit("/", 1)[0] + f"/{PG_DATABASE}"
    with _pg(base_url) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {PG_DATABASE}")
        admin.execute(f"CREATE DATABASE {PG_DATABASE}")
    commands = Commands(url)
    commands.init_db()
    organization_id, owner_id, keys = _organization(commands)
    commands.close()
    history = History(organization_id, owner_id, approvals, datetime.now(UTC))
    with _pg(url) as connection:

        def copy(table: str, rows: list[tuple]) -> None:
            if rows:
                with (
                    connection.cursor() as cursor,
                    cursor.copy(f"COPY {table} ({', '.join(COLUMNS[table])}) FROM STDIN") as pipe,
                ):
                    for row in rows:
                        pipe.write_row(row)

        for table, rows in history.setup_rows(sqlite=False).items():
            copy(table, rows)
        for number, chunk in enumerate(history.chunks(sqlite=False)):
            for table, rows in chunk.items():
                copy(table, rows)
            _progress(number, approvals)
        connection.execute("VACUUM ANALYZE")
    return url, keys


def _progress(number: int, approvals: int) -> None:
    done = min((number + 1) * CHUNK, approvals)
    if done % 200_000 == 0 or done == approvals:
        print(f"  {done:,} approvals written", flush=True)


def sqlite_database(approvals: int, fresh: bool) -> tuple[str, list[str]]:
    folder = seeding.cache_folder()
    path = folder / f"insights-{approvals}-{_digest()}.sqlite"
    keys_file = path.with_suffix(".keys.json")
    if path.exists() and keys_file.exists() and not fresh:
        print(f"SQLite: {path} (seeded before)", flush=True)
        return f"sqlite:///{path}", json.loads(keys_file.read_text())
    for old in folder.glob(f"insights-{approvals}-*"):
        old.unlink()
    started = time.monotonic()
    keys = build_sqlite(path, approvals)
    keys_file.write_text(json.dumps(keys))
    print(f"SQLite: seeded in {time.monotonic() - started:.0f} s: {path}", flush=True)
    return f"sqlite:///{path}", keys


def postgresql_database(base_url: str, approvals: int, fresh: bool) -> tuple[str, list[str]]:
    url = base_url.rsplit("/", 1)[0] + f"/{PG_DATABASE}"
    stamp = f"{approvals}-{_digest()}"
    if not fresh:
        try:
            with _pg(url) as connection:
                found = connection.execute(
                    "SELECT shobj_description(oid, 'pg_database') FROM pg_database "
                    "WHERE datname = %s",
                    (PG_DATABASE,),
                ).fetchone()
            made = json.loads(found[0]) if found and found[0] else {}
            if made.get("digest") == stamp:
                print(f"PostgreSQL: {PG_DATABASE} (seeded before)", flush=True)
                return url, made["keys"]
        except Exception:  # noqa: BLE001 - no such database yet
            pass
    started = time.monotonic()
    url, keys = build_postgresql(base_url, approvals)
    with _pg(url) as connection:
        comment = json.dumps({"digest": stamp, "keys": keys}).replace("'", "''")
        connection.execute(f"COMMENT ON DATABASE {PG_DATABASE} IS '{comment}'")
    print(f"PostgreSQL: seeded in {time.monotonic() - started:.0f} s", flush=True)
    return url, keys


# --- measuring -----------------------------------------------------------------------------------


def sign_in(port: int) -> str:
    """Sign the owner in as a browser would; return the session cookie."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    connection.request("GET", "/sign-in")
    response = connection.getresponse()
    page = response.read().decode()
    cookie = response.getheader("Set-Cookie", "").split(";")[0]
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
    body = urlencode(
        {"email": "owner0@insights.example", "password": PASSWORD, "csrf_token": token}
    )
    connection.request(
        "POST",
        "/sign-in",
        body=body,
        headers={"Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie},
    )
    response = connection.getresponse()
    response.read()
    connection.close()
    if response.status != 303:
        raise SystemExit(f"signing in answered {response.status}")
    return response.getheader("Set-Cookie", "").split(";")[0]


def timed(port: int, path: str, headers: dict[str, str]) -> tuple[float, int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    started = time.perf_counter()
    connection.request("GET", path, headers=headers)
    response = connection.getresponse()
    body = response.read()
    elapsed = (time.perf_counter() - started) * 1000
    connection.close()
    return elapsed, response.status, body


def measure(url: str, keys: list[str], rounds: int, server_cores) -> dict[str, dict]:
    env = seeding.server_env(Path("unused"), DATABASE_URL=url, BCRYPT_ROUNDS="4")
    server = harness.serve("app:app", env, server_cores)
    try:
        cookie = sign_in(server.port)
        asks = {
            "page": (PAGE.path, {"Cookie": cookie}),
            "api": (API.path, {"Authorization": f"Bearer {keys[0]}"}),
        }
        times: dict[str, list[float]] = {name: [] for name in asks}
        for round_ in range(rounds + WARM):
            for name, (path, headers) in asks.items():
                elapsed, status, body = timed(server.port, path, headers)
                if status != 200:
                    raise SystemExit(f"{path} answered {status}: {body[:500]!r}")
                if round_ == 0 and name == "api":
                    figures = json.loads(body)
                    print(
                        f"  checked: {figures['discount']['approved']:,} approved "
                        f"{figures['currency']} requests in the last 90 days, "
                        f"{figures['depth']['catalog_lines']:,} catalog lines, "
                        f"{figures['speed']['decided']:,} decided by people, "
                        f"{figures['speed']['pending']['count']:,} pending",
                        flush=True,
                    )
                if round_ >= WARM:
                    times[name].append(elapsed)
    finally:
        harness.stop(server)
    summary = {}
    for name, values in times.items():
        values.sort()
        summary[name] = {
            "median_ms": round(statistics.median(values), 1),
            "min_ms": round(values[0], 1),
            "max_ms": round(values[-1], 1),
            "p90_ms": round(values[max(0, -(-len(values) * 9 // 10) - 1)], 1),
            "rounds": len(values),
            "verdict": "PASS" if statistics.median(values) <= TARGET_MS else "FAIL",
        }
    return summary


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--approvals", type=int, default=APPROVALS)
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--database", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--postgres-url", default=os.environ.get("TEST_POSTGRES_URL", PG_URL))
    parser.add_argument("--fresh", action="store_true", help="seed again")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    harness.quiet()
    server_cores, _, pinning = harness.cores()
    print(pinning, flush=True)
    results = {}
    if args.database in ("sqlite", "both"):
        url, keys = sqlite_database(args.approvals, args.fresh)
        results["sqlite"] = measure(url, keys, args.rounds, server_cores)
    if args.database in ("postgresql", "both"):
        url, keys = postgresql_database(args.postgres_url, args.approvals, args.fresh)
        results["postgresql"] = measure(url, keys, args.rounds, server_cores)
    out = io.StringIO()
    for database, figures in results.items():
        for name, figure in figures.items():
            what = "GET /insights (page)" if name == "page" else "GET /v2/insights"
            print(
                f"{database:10} {what:22} median {figure['median_ms']:7.1f} ms "
                f"(min {figure['min_ms']:.1f}, p90 {figure['p90_ms']:.1f}, "
                f"max {figure['max_ms']:.1f}; {figure['rounds']} rounds)  "
                f"target ≤ {TARGET_MS:.0f} ms: {figure['verdict']}",
                file=out,
            )
    print(out.getvalue(), end="")
    if args.json:
        Path(args.json).write_text(json.dumps({"approvals": args.approvals, **results}, indent=2))
    return results


if __name__ == "__main__":
    main()
