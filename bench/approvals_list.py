"""Throughput of authenticated ``GET /v2/approvals?limit=20`` against a bare Flask baseline.

Run from the repository root:
``python bench/approvals_list.py [--seconds 10] [--rounds 3] [--sizes 1000,100000]``

For each size it seeds an SQLite database with that many approvals spread over 50
organizations (about three line items each, steps for every submitted one, mixed statuses,
created over the past year), then serves it with the shipped gunicorn configuration (one
process, gthread) on loopback. In the same run, in alternating rounds, the bare Flask app of
``bench/bare_app.py`` (``GET /v2/me``) gives the baseline. The load comes from ``wrk`` (a Lua
script taking the 50 organizations' keys in turn) or, without it, a Python keep-alive client.

Every page is a full one: 20 approvals with their line items and the steps of their current
round, the newest of the key's organization. Each size is served two ways:

* ``served``, as shipped: a poll of an organization nobody changed since is answered from the
  process's memory of rendered pages (``discountflow/approvals/page_cache.py``), which is what
  an integration polling the list sees;
* ``rendered``, with that memory off (``PAGE_CACHE_MB=0``): every page is read and rendered from
  the database, as the first poll after each write is.

It prints, per size and way:

* the ratio of the page's throughput to the baseline's (target ≥ 0.50, for ``served``);
* the in-process cost of a page (best of five runs through the Flask test client: steadier
  than throughput on a busy machine);
* for the larger sizes, the change against the smallest (target: within 10 %, since a page must
  cost an index range scan, not a scan of the table, and reading it from memory must not
  depend on the table either).

Organizations, owners and keys are made by the services (bcrypt cost 4, the key check is not
what is measured); approvals, line items, steps, approvers and members are bulk-inserted.
Decisions, comments and events are not seeded: the list never reads them.

For reference it also measures the bare app serving a captured copy of a real page (same size,
re-encoded on every request, no auth, query or shaping): the share of the gap that is simply
the size of the answer.

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
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.auth_overhead import load, organization_with_keys, start, stop  # noqa: E402

ORGANIZATIONS = 50
PAGE = 20
LIST_PATH = f"/v2/approvals?limit={PAGE}"
BASELINE_PATH = "/v2/me"  # the bare app's one route
RATE_LIMIT = "1000000 per minute"
CHUNK = 20_000  # approvals per transaction while seeding

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
    from sqlalchemy import func, insert, select

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
        db.session.remove()
        db.engine.dispose()
    return keys, counts


def _by_column(rows: list[dict]) -> list[dict]:
    """Rename the ORM attribute ``metadata_`` to its column name for a Core insert."""
    for row in rows:
        row["metadata"] = row.pop("metadata_")
    return rows


# --- load --------------------------------------------------------------------------------------


def verify(port: int, key: str, size: int) -> bytes:
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
        raise SystemExit(
            f"{size:,} approvals: GET {LIST_PATH} is wrong ({problem}):\n{body[:2000]}"
        )
    return body


def _spread(runs: list[float]) -> str:
    return f"{min(runs):.0f}-{max(runs):.0f}"


def _variation(runs: list[float]) -> float:
    """How far apart the rounds of one figure are, relative to their median."""
    return (max(runs) - min(runs)) / statistics.median(runs)


def in_process_cost(env: dict[str, str], keys: list[str], pages: int = 500) -> float:
    """Milliseconds per page through the Flask test client, best of five, in a fresh process.

    No server and no load generator: on a busy machine this moves far less than throughput
    does, so it is the steadier answer to "does a page cost more in a larger table?".
    """
    script = (
        "import sys, time\n"
        "from discountflow import create_app\n"
        "keys = sys.argv[1:]\n"
        "client = create_app().test_client()\n"
        "headers = [{'Authorization': 'Bearer ' + key} for key in keys]\n"
        f"path, pages = {LIST_PATH!r}, {pages}\n"
        "for h in headers: assert client.get(path, headers=h).status_code == 200\n"
        "best = float('inf')\n"
        "for _ in range(5):\n"
        "    started = time.perf_counter()\n"
        "    for n in range(pages): client.get(path, headers=headers[n % len(headers)])\n"
        "    best = min(best, (time.perf_counter() - started) / pages)\n"
        "print(best * 1000)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, *keys],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout.strip().splitlines()[-1])


# --- main --------------------------------------------------------------------------------------


# How each size is served: as shipped (a poll of an unchanged organization is served from the
# process's memory of rendered pages) and with that memory off, every page rendered from the
# database as it is after each write.
MODES = {"served": {}, "rendered": {"PAGE_CACHE_MB": "0"}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--sizes", default="1000,100000", help="comma-separated numbers of approvals"
    )
    args = parser.parse_args()
    sizes = sorted({int(size) for size in args.sizes.split(",")})
    if sizes[0] < ORGANIZATIONS * PAGE:
        parser.error(f"each size needs at least {ORGANIZATIONS * PAGE} approvals (full pages)")

    workdir = Path(tempfile.mkdtemp(prefix="discountflow-bench-"))
    base_env = {
        **os.environ,
        "SECRET_KEY": "bench",
        "RATELIMIT_STORAGE_URI": "memory://",
        "BCRYPT_ROUNDS": "4",
        "DISCOUNTFLOW_ENV": "staging",
        "API_RATE_LIMIT": RATE_LIMIT,
    }
    for variable in ("WEB_CONCURRENCY", "PAGE_CACHE_MB"):
        base_env.pop(variable, None)
    cases = [(size, mode) for size in sizes for mode in MODES]
    process = None
    try:
        envs, keys = {}, {}
        for size in sizes:
            started = time.monotonic()
            database = {"DATABASE_URL": f"sqlite:///{workdir / f'{size}.sqlite'}"}
            for mode, settings in MODES.items():
                envs[size, mode] = {**base_env, **database, **settings}
            keys[size], counts = seed(envs[size, "served"], size)
            described = ", ".join(f"{count:,} {label}" for label, count in counts.items())
            print(
                f"seeded {described} in {ORGANIZATIONS} organizations "
                f"({time.monotonic() - started:.1f} s)",
                flush=True,
            )
            if counts["approvals"] != size:
                raise SystemExit(f"expected {size} approvals, found {counts['approvals']}")
        for size, mode in cases:
            process, port = start("app:app", envs[size, mode])
            page = verify(port, keys[size][0], size)
            stop(process)
            process = None
        (workdir / "page.json").write_bytes(page)
        bare_env = {**base_env, "BARE_PAGE": str(workdir / "page.json")}
        print(f"verified: GET {LIST_PATH} returns {PAGE} approvals with line items and steps")
        page_cost = {case: in_process_cost(envs[case], keys[case[0]]) for case in cases}

        bare_runs: list[float] = []
        bare_page_runs: list[float] = []
        runs: dict[tuple[int, str], list[float]] = {case: [] for case in cases}
        for round_number in range(1, args.rounds + 1):
            process, port = start("bench.bare_app:app", bare_env)
            load(port, keys[sizes[0]], 2, path=BASELINE_PATH)  # warm up
            bare_runs.append(load(port, keys[sizes[0]], args.seconds, path=BASELINE_PATH))
            bare_page_runs.append(load(port, keys[sizes[0]], args.seconds, path=LIST_PATH))
            stop(process)
            process = None
            # Alternate the order of the cases from round to round, so none always runs first.
            for size, mode in cases if round_number % 2 else cases[::-1]:
                process, port = start("app:app", envs[size, mode])
                load(port, keys[size], 2, path=LIST_PATH)  # warm up
                runs[size, mode].append(load(port, keys[size], args.seconds, path=LIST_PATH))
                stop(process)
                process = None
            figures = ", ".join(
                f"{size:,} {mode} {runs[size, mode][-1]:.0f}" for size, mode in cases
            )
            print(
                f"round {round_number}: bare {bare_runs[-1]:.0f} req/s, bare page "
                f"{bare_page_runs[-1]:.0f} req/s, {figures} req/s",
                flush=True,
            )
    finally:
        if process is not None:
            stop(process)
        shutil.rmtree(workdir, ignore_errors=True)

    bare = statistics.median(bare_runs)
    bare_page = statistics.median(bare_page_runs)
    medians = {case: statistics.median(runs[case]) for case in cases}
    print(
        f"load generator: {'wrk' if shutil.which('wrk') else 'python'}; "
        f"{args.rounds} rounds of {args.seconds:.0f} s; medians below"
    )
    print(
        f"bare Flask baseline (GET {BASELINE_PATH})               {bare:8.0f} req/s"
        f"   rounds {_spread(bare_runs)}"
    )
    print(
        f"bare Flask serving a same-size page (reference)       {bare_page:8.0f} req/s"
        f"   rounds {_spread(bare_page_runs)}   ratio {bare_page / bare:.2f}"
    )
    verdicts = []
    for size, mode in cases:
        ratio = medians[size, mode] / bare
        target = ""
        if mode == "served":
            verdicts.append((f"ratio >= 0.50 at {size:,} approvals", ratio >= 0.50, f"{ratio:.2f}"))
            target = "   (target >= 0.50)"
        print(
            f"GET {LIST_PATH}, {size:>7,} approvals, {mode:8}  {medians[size, mode]:6.0f} req/s"
            f"   rounds {_spread(runs[size, mode])}   ratio {ratio:.2f}{target}"
        )
    for size, mode in cases:
        print(
            f"in-process cost of a page, {size:>7,} approvals, {mode:8}  "
            f"{page_cost[size, mode]:6.2f} ms"
        )
    smallest = sizes[0]
    for size in sizes[1:]:
        for mode in MODES:
            change = medians[size, mode] / medians[smallest, mode] - 1
            cost_change = page_cost[size, mode] / page_cost[smallest, mode] - 1
            verdicts.append(
                (
                    f"{size:,} within 10 % of {smallest:,}, {mode}",
                    abs(change) <= 0.10,
                    f"{change:+.1%}",
                )
            )
            print(
                f"{size:,} against {smallest:,} approvals, {mode:8}  throughput {change:+6.1%}"
                f"   (target within ±10 %); in-process cost {cost_change:+.1%}"
            )
            noise = max(_variation(runs[size, mode]), _variation(runs[smallest, mode]))
            if noise > 0.10:
                print(
                    f"  note: the rounds of one case differ by up to {noise:.0%}, more than the "
                    "band; the verdict below is noise-limited (a busy machine?)"
                )
    for target, met, figure in verdicts:
        print(f"{'PASS' if met else 'FAIL'}  {target}: {figure}")


if __name__ == "__main__":
    main()
