"""Throughput of authenticated ``GET /v2/approvals?limit=20`` against a bare Flask baseline.

Run from the repository root:
``python bench/approvals_list.py [--seconds 3] [--pairs 7] [--approvals 100000] [--no-postgres]``

It seeds an SQLite database with ``--approvals`` approvals spread over 50 organizations (about
three line items each, steps for every submitted one, mixed statuses, created over the past
year) and checks that a page is right: 200, 20 approvals newest first, each with its line items,
some with steps — the newest of the key's organization. Organizations, owners and keys are made
by the services (bcrypt cost 4, the key check is not what is measured); approvals, line items,
steps, approvers and members are bulk-inserted. Decisions, comments and events are not seeded:
the list never reads them.

Every figure is measured the way ``bench/harness.py`` says: two servers under the shipped
gunicorn configuration pinned to one core, ``wrk`` pinned to the others, the two sides in
alternating pairs (A B, B A …), the median of the per-pair ratios with their min–max. The
baseline is the bare Flask route of ``bench/bare_app.py`` (``GET /v2/me``). It prints:

* the page rendered — the memory of rendered pages off (``PAGE_CACHE_MB=0``), as the first poll
  after each write is — on SQLite, one process, against the bare route (target ≥ 0.35 at
  100,000 approvals);
* for reference, the page as shipped on SQLite, where a poll of an organization nobody changed
  since is answered from the process's memory (``discountflow/approvals/page_cache.py``), and
  the bare app serving a captured copy of the same page (no auth, query or shaping: the share of
  the gap that is simply the size of the answer), each against the bare route;
* the page on PostgreSQL and Redis as a polling integration sees it — the shipped configuration
  at 2 worker processes, where a poll of an organization nobody changed since is answered from
  the worker's memory (the organization's revision is read from Redis) — against the bare route
  at 2 workers (target ≥ 0.50). The same approvals are seeded into a scratch database of
  ``BENCH_POSTGRES_URL`` (default ``postgresql+psycopg://postgres@127.0.0.1:5432/test``);
  ``BENCH_REDIS_URL`` (default ``redis://127.0.0.1:6379/14``) is flushed. The database is
  ANALYZEd after seeding, as autovacuum would soon do. Skipped, saying so, where either does
  not answer (or with ``--no-postgres``);
* the in-process CPU per page of each database (``time.process_time`` through the WSGI app, no
  network) over the bare route's, in alternating fresh processes (on PostgreSQL, the app's
  process only; there both as polled and rendered, with the memory of pages off).

The per-key rate limit still runs on every request, but ``API_RATE_LIMIT`` is raised to
1000000 per minute: 50 keys at about 1000 requests per second would each pass the documented
500 per minute, and a refused request is not the page being measured.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import shutil
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import harness  # noqa: E402
from bench.auth_overhead import organization_with_keys  # noqa: E402

ORGANIZATIONS = 50
PAGE = 20
LIST_PATH = f"/v2/approvals?limit={PAGE}"
BASELINE_PATH = "/v2/me"  # the bare app's one route
RATE_LIMIT = "1000000 per minute"
CHUNK = 20_000  # approvals per transaction while seeding
APPROVALS = 100_000

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


# --- seeding -----------------------------------------------------------------------------------


def _line_items(
    rng: random.Random, approval_id: str, auto: bool, new_id, book: dict, currency: str
) -> list[dict]:
    """Lines of the organization's price book, at its list price in the approval's currency."""
    items = []
    for position in range(1, rng.choice((1, 2, 2, 3, 3, 3, 4, 4, 5, 5)) + 1):
        sku, description = rng.choice(PRODUCTS)
        product_id, prices = book[sku]
        unit_list_price = prices[currency]
        discount = rng.uniform(0, 0.05) if auto else rng.choice((0, rng.uniform(0.02, 0.4)))
        items.append(
            {
                "id": new_id("li"),
                "approval_id": approval_id,
                "position": position,
                "product_id": product_id,
                "custom": False,
                "sku": sku,
                "description": description,
                "quantity": rng.randrange(1, 500),
                "unit_list_price": unit_list_price,
                "unit_price": round(unit_list_price * (1 - discount)),
            }
        )
    return items


def _steps(rng, approval_id, round_, levels, approvers, decided, outcome, new_id) -> list[dict]:
    """The steps of one round: ``outcome`` is what happened at the last step reached."""
    rows, reached = [], rng.randrange(len(levels)) if outcome != "approved" else len(levels) - 1
    for position, (level_id, name, rank) in enumerate(levels, start=1):
        if position - 1 < reached:
            status = "approved"
        elif position - 1 == reached:
            status = outcome
        else:
            status = "waiting" if outcome == "pending" else "canceled"
        done = status in ("approved", "rejected", "changes_requested")
        rows.append(
            {
                "id": new_id("stp"),
                "approval_id": approval_id,
                "round": round_,
                "position": position,
                "approval_level_id": level_id,
                "level_name": name,
                "level_rank": rank,
                "status": status,
                "decided_by_id": approvers[rank - 1] if done else None,
                "decided_at": decided + timedelta(hours=position) if done else None,
            }
        )
    return rows


def _approval(rng, number, organization, now, new_id) -> tuple[dict, list[dict], list[dict]]:
    org_id, levels, approvers, members, book = organization
    status, kind = rng.choices(
        [(status, kind) for status, _, kind in STATUS_MIX], [share for _, share, _ in STATUS_MIX]
    )[0]
    approval_id = new_id("apr")
    created = now - timedelta(seconds=rng.uniform(3600, 365 * 86_400))
    currency = rng.choice(CURRENCIES)
    items = _line_items(rng, approval_id, kind == "auto", new_id, book, currency)
    list_amount = sum(item["quantity"] * item["unit_list_price"] for item in items)
    amount = sum(item["quantity"] * item["unit_price"] for item in items)
    largest = max(1 - item["unit_price"] / item["unit_list_price"] for item in items)
    max_bps = int(largest * 10_000 + 0.5)
    required = levels[[bps >= max_bps for _, _, bps in LEVELS].index(True)] if max_bps else None
    required = required or levels[0]
    route = levels[: required[2]]
    submitted = created + timedelta(minutes=rng.uniform(5, 600))
    row = {
        "id": approval_id,
        "organization_id": org_id,
        "requested_by_id": rng.choice(members),
        "title": f"Q{rng.randint(1, 4)} renewal {number}",
        "customer": rng.choice(CUSTOMERS),
        "deal_reference": f"OPP-{rng.randrange(10**6):06d}" if rng.random() < 0.7 else "",
        "currency": currency,
        "justification": "Multi-year commitment; competitor quote attached." * rng.randint(0, 2),
        "metadata_": {"crm": "salesforce", "region": rng.choice(["emea", "amer", "apac"])}
        if rng.random() < 0.5
        else {},
        "status": status,
        "list_amount": list_amount,
        "amount": amount,
        "max_line_discount_bps": max_bps,
        "round": 0,
        "required_level_id": None,
        "awaiting_level_id": None,
        "submitted_at": None,
        "decided_at": None,
        "valid_until": None,
        "created_at": created,
        "updated_at": created,
    }
    steps: list[dict] = []
    canceled_draft = kind == "canceled" and rng.random() < 0.3
    if kind == "draft" or canceled_draft:
        return row, items, steps
    row.update(round=1, submitted_at=submitted, updated_at=submitted)
    if kind == "auto":
        row.update(decided_at=submitted, valid_until=submitted + timedelta(days=30))
        return row, items, steps
    row["required_level_id"] = required[0]
    if rng.random() < 0.15:  # sent back once, then submitted again
        steps += _steps(
            rng, approval_id, 1, route, approvers, submitted, "changes_requested", new_id
        )
        submitted += timedelta(days=rng.uniform(0.5, 5))
        row.update(round=2, submitted_at=submitted, updated_at=submitted)
    outcome = {"approved": "approved", "changes": "changes_requested", "canceled": "pending"}
    round_steps = _steps(
        rng, approval_id, row["round"], route, approvers, submitted, outcome.get(kind, kind), new_id
    )
    if kind == "canceled":
        for step in round_steps:
            if step["status"] in ("pending", "waiting"):
                step["status"] = "canceled"
    steps += round_steps
    decided = max((s["decided_at"] for s in round_steps if s["decided_at"]), default=submitted)
    if kind == "pending":
        active = next(step for step in round_steps if step["status"] == "pending")
        row["awaiting_level_id"] = active["approval_level_id"]
    elif kind in ("approved", "rejected", "changes", "canceled"):
        row["updated_at"] = decided
    if kind in ("approved", "rejected"):
        row["decided_at"] = decided
    if kind == "approved":
        row["valid_until"] = decided + timedelta(days=30)
    return row, items, steps


def seed(env: dict[str, str], approvals: int) -> tuple[list[str], dict[str, int]]:
    """Seed one database; return one full-access key per organization and row counts."""
    os.environ.update(env)
    from sqlalchemy import func, insert, select, text

    from discountflow import create_app
    from discountflow.approvals.models import Approval, ApprovalLevel, LineItem, Step
    from discountflow.database import new_id, utcnow
    from discountflow.extensions import db
    from discountflow.organizations.models import User
    from discountflow.products.models import Product, ProductPrice

    rng = random.Random(approvals)
    app = create_app()
    with app.app_context():
        db.create_all()
        now = utcnow()
        keys, organizations, levels_rows, users_rows = [], [], [], []
        product_rows, price_rows = [], []
        for number in range(ORGANIZATIONS):
            organization_id, key = organization_with_keys(
                f"Bench {number}", f"owner{number}@bench.example"
            )
            keys.append(key)
            owner = db.session.execute(
                select(User).where(User.organization_id == organization_id, User.role == "owner")
            ).scalar_one()
            levels = [(new_id("lvl"), name, rank) for name, rank, _ in LEVELS]
            for (level_id, name, rank), (_, _, bps) in zip(levels, LEVELS, strict=True):
                levels_rows.append(
                    {
                        "id": level_id,
                        "organization_id": organization_id,
                        "name": name,
                        "rank": rank,
                        "max_discount_bps": bps,
                        "created_at": now,
                        "updated_at": now,
                    }
                )
            people = {"approver": [], "member": []}
            for role, count in (("approver", len(levels)), ("member", 6)):
                for index in range(count):
                    user_id = new_id("usr")
                    people[role].append(user_id)
                    users_rows.append(
                        {
                            "id": user_id,
                            "organization_id": organization_id,
                            "email": f"{role}{index}.{number}@bench.example",
                            "name": f"{role.title()} {index}",
                            "password_hash": owner.password_hash,
                            "role": "member",
                            "approval_level_id": levels[index][0] if role == "approver" else None,
                            "created_at": now,
                        }
                    )
            members = people["member"] + [owner.id]
            book = {}
            for sku, description in PRODUCTS:
                product_id = new_id("prd")
                prices = {currency: rng.randrange(1_000, 500_000) for currency in CURRENCIES}
                book[sku] = (product_id, prices)
                product_rows.append(
                    {
                        "id": product_id,
                        "organization_id": organization_id,
                        "sku": sku,
                        "name": description,
                        "description": "",
                        "active": True,
                        "created_at": now,
                        "updated_at": now,
                    }
                )
                price_rows += [
                    {"product_id": product_id, "currency": currency, "unit_list_price": price}
                    for currency, price in prices.items()
                ]
            organizations.append((organization_id, levels, people["approver"], members, book))
        db.session.execute(insert(Product), product_rows)
        db.session.execute(insert(ProductPrice), price_rows)
        db.session.execute(insert(ApprovalLevel), levels_rows)
        db.session.execute(insert(User), users_rows)
        db.session.commit()

        counts = {"approvals": 0, "line items": 0, "steps": 0}
        for first in range(0, approvals, CHUNK):
            approval_rows, item_rows, step_rows = [], [], []
            for number in range(first, min(first + CHUNK, approvals)):
                row, items, steps = _approval(
                    rng, number, organizations[number % ORGANIZATIONS], now, new_id
                )
                approval_rows.append(row)
                item_rows += items
                step_rows += steps
            # Core executemany: one prepared INSERT per table, no ORM unit of work.
            db.session.execute(insert(Approval.__table__), _by_column(approval_rows))
            db.session.execute(insert(LineItem.__table__), item_rows)
            db.session.execute(insert(Step.__table__), step_rows)
            db.session.commit()
        for label, model in (("approvals", Approval), ("line items", LineItem), ("steps", Step)):
            counts[label] = db.session.execute(select(func.count()).select_from(model)).scalar()
        if db.engine.dialect.name == "postgresql":
            # The planner's statistics, as autovacuum would gather them within a minute or so of
            # a bulk load: measured before that, a page read ~60 ms instead of ~6 (a plan for an
            # empty table over 100,000 rows), a state no running database stays in.
            db.session.execute(text("ANALYZE"))
            db.session.commit()
        db.session.remove()
        db.engine.dispose()
    return keys, counts


def _by_column(rows: list[dict]) -> list[dict]:
    """Rename the ORM attribute ``metadata_`` to its column name for a Core insert."""
    for row in rows:
        row["metadata"] = row.pop("metadata_")
    return rows


# --- verification ------------------------------------------------------------------------------


def verify(port: int, key: str, where: str) -> bytes:
    """One page must be 200 with 20 approvals, each with line items, some with steps."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("GET", LIST_PATH, headers={"Authorization": f"Bearer {key}"})
    response = connection.getresponse()
    body = response.read()
    connection.close()
    problem = None
    if response.status != 200:
        problem = f"status {response.status}"
    else:
        page = json.loads(body)
        data = page.get("data", [])
        if len(data) != PAGE:
            problem = f"{len(data)} approvals"
        elif not all(item.get("line_items") for item in data):
            problem = "an approval without line items"
        elif not all("steps" in item for item in data) or not any(i["steps"] for i in data):
            problem = "no steps on the page"
        elif [item["created"] for item in data] != sorted(
            (item["created"] for item in data), reverse=True
        ):
            problem = "not newest first"
    if problem:
        raise SystemExit(f"{where}: GET {LIST_PATH} is wrong ({problem}):\n{body[:2000]}")
    return body


def seeded(env: dict[str, str], approvals: int, where: str) -> list[str]:
    """Seed ``approvals`` approvals (refusing a short count); return one key per organization."""
    started = time.monotonic()
    keys, counts = seed(env, approvals)
    described = ", ".join(f"{count:,} {label}" for label, count in counts.items())
    print(
        f"{where}: seeded {described} in {ORGANIZATIONS} organizations "
        f"({time.monotonic() - started:.1f} s)",
        flush=True,
    )
    if counts["approvals"] != approvals:
        raise SystemExit(f"{where}: expected {approvals} approvals, found {counts['approvals']}")
    return keys


# --- main --------------------------------------------------------------------------------------

ME = harness.Request("GET", BASELINE_PATH)
LIST = harness.Request("GET", LIST_PATH)
PAGE_CPU_COUNT = 300  # pages per CPU run (a page costs milliseconds)


def names(approvals: int) -> dict[str, str]:
    return {
        "rendered": f"20-approval page rendered (cache miss), {approvals:,} approvals, vs bare",
        "served": "20-approval page served from memory (cache hit), SQLite, vs bare",
        "reference": "bare route serving the same page (size only) vs bare",
        "cpu": "CPU per request 20-approval page rendered (SQLite) over bare route",
        "postgres": "20-approval page, PostgreSQL + Redis, 2 workers, vs bare at 2 workers",
        "postgres_cpu": "CPU per request 20-approval page polled (PostgreSQL + Redis) over bare",
        "postgres_rendered_cpu": "CPU per request 20-approval page rendered (PostgreSQL) over bare",
    }


def main() -> dict[str, harness.Figure]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    harness.arguments(parser)
    parser.add_argument(
        "--approvals",
        type=int,
        default=APPROVALS,
        help=f"approvals to seed (default {APPROVALS:,}; at least {ORGANIZATIONS * PAGE:,})",
    )
    parser.add_argument(
        "--no-postgres", action="store_true", help="skip the PostgreSQL + Redis figures"
    )
    args = parser.parse_args()
    if args.approvals < ORGANIZATIONS * PAGE:
        parser.error(f"--approvals must be at least {ORGANIZATIONS * PAGE} (full pages)")
    harness.quiet()
    server_cores, load_cores, pinning = harness.cores()
    print(f"{pinning}", flush=True)
    named = names(args.approvals)
    figures: dict[str, harness.Figure] = {}

    def report(kind: str, figure: harness.Figure) -> None:
        figures[named[kind]] = figure
        print(figure.line(named[kind]), flush=True)

    def pair(port_a: int, request_a, port_b: int, request_b, keys: list[str]) -> harness.Ratio:
        return harness.paired(
            lambda: harness.throughput(port_a, keys, request_a, args.seconds, load_cores),
            lambda: harness.throughput(port_b, keys, request_b, args.seconds, load_cores),
            args.pairs,
        )

    workdir = Path(tempfile.mkdtemp(prefix="discountflow-bench-approvals-"))
    base_env = {
        **os.environ,
        "SECRET_KEY": "bench",
        "BCRYPT_ROUNDS": "4",
        "DISCOUNTFLOW_ENV": "staging",
        "API_RATE_LIMIT": RATE_LIMIT,
    }
    for variable in ("WEB_CONCURRENCY", "PAGE_CACHE_MB", "METRICS_TOKEN"):
        base_env.pop(variable, None)
    try:
        # --- SQLite, one process ---
        served_env = {
            **base_env,
            "DATABASE_URL": f"sqlite:///{workdir / 'bench.sqlite'}",
            "RATELIMIT_STORAGE_URI": "memory://",
        }
        rendered_env = {**served_env, "PAGE_CACHE_MB": "0"}
        keys = seeded(served_env, args.approvals, "SQLite")
        servers = []
        try:
            rendered, rendered_port = harness.serve("app:app", rendered_env, server_cores)
            servers.append(rendered)
            served, served_port = harness.serve("app:app", served_env, server_cores)
            servers.append(served)
            page = verify(rendered_port, keys[0], "SQLite, rendered")
            verify(served_port, keys[0], "SQLite, served")
            (workdir / "page.json").write_bytes(page)
            bare_env = {**served_env, "BARE_PAGE": str(workdir / "page.json")}
            bare, bare_port = harness.serve("bench.bare_app:app", bare_env, server_cores)
            servers.append(bare)
            print(f"verified: GET {LIST_PATH} returns {PAGE} approvals with line items and steps")
            for port, request in (
                (bare_port, ME),
                (bare_port, LIST),
                (rendered_port, LIST),
                (served_port, LIST),
            ):
                harness.warm(port, keys, request)
                harness.throughput(port, keys, request, 1, load_cores)
            ratio = pair(rendered_port, LIST, bare_port, ME, keys)
            report("rendered", harness.Figure(ratio, harness.Target(0.35)))
            report("served", harness.Figure(pair(served_port, LIST, bare_port, ME, keys)))
            report("reference", harness.Figure(pair(bare_port, LIST, bare_port, ME, keys)))
        finally:
            for process in servers:
                harness.stop(process)
        ratio = harness.cpu_paired(
            harness.CpuSide(rendered_env, LIST, count=PAGE_CPU_COUNT),
            harness.CpuSide(rendered_env, ME, bare=True),
            keys,
            args.pairs,
            server_cores,
        )
        report("cpu", harness.Figure(ratio, unit="µs"))

        # --- PostgreSQL and Redis, 2 workers ---
        reason = "--no-postgres" if args.no_postgres else harness.unreachable()
        if reason:
            report("postgres", harness.skipped(reason, harness.Target(0.50)))
            report("postgres_cpu", harness.skipped(reason, unit="µs"))
            report("postgres_rendered_cpu", harness.skipped(reason, unit="µs"))
        else:
            postgres(args, base_env, server_cores, load_cores, report, pair)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    harness.save(args.json, figures, pinning)
    return figures


def postgres(args, base_env, server_cores, load_cores, report, pair) -> None:
    """The page on PostgreSQL and Redis, as shipped at 2 workers, against bare at 2 workers."""
    with harness.ScratchPostgres() as database_url:
        env = {
            **base_env,
            "DATABASE_URL": database_url,
            "RATELIMIT_STORAGE_URI": harness.REDIS,
            "WEB_CONCURRENCY": "2",
        }
        keys = seeded(env, args.approvals, "PostgreSQL")
        servers = []
        try:
            app, app_port = harness.serve("app:app", env, server_cores)
            servers.append(app)
            bare, bare_port = harness.serve("bench.bare_app:app", env, server_cores)
            servers.append(bare)
            verify(app_port, keys[0], "PostgreSQL")
            for port, request in ((bare_port, ME), (app_port, LIST)):
                harness.warm(port, keys, request)
                # 16 connections over both workers: each worker's one check per key.
                harness.throughput(port, keys, request, 2, load_cores)
            report(
                "postgres",
                harness.Figure(pair(app_port, LIST, bare_port, ME, keys), harness.Target(0.50)),
            )
        finally:
            for process in servers:
                harness.stop(process)
        ratio = harness.cpu_paired(
            harness.CpuSide(env, LIST, count=PAGE_CPU_COUNT),
            harness.CpuSide(env, ME, bare=True),
            keys,
            args.pairs,
            server_cores,
        )
        report(
            "postgres_cpu",
            harness.Figure(ratio, unit="µs", note="the app's process only"),
        )
        ratio = harness.cpu_paired(
            harness.CpuSide({**env, "PAGE_CACHE_MB": "0"}, LIST, count=PAGE_CPU_COUNT),
            harness.CpuSide(env, ME, bare=True),
            keys,
            args.pairs,
            server_cores,
        )
        report(
            "postgres_rendered_cpu",
            harness.Figure(ratio, unit="µs", note="the app's process only"),
        )


if __name__ == "__main__":
    main()
