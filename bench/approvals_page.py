"""A page of 20 approvals with their line items, on a database of 1,000,000 against one of 1,000.

Run from the repository root:
``python bench/approvals_page.py [--seconds 3] [--pairs 7] [--approvals 1000000] [--small 1000]
[--json PATH]``

Two databases of the same organization shape — one organization with three approval levels,
approvers, members and a price book; its approvals created over the past year with 1 to 5
line items each and, when submitted, the steps of each round (``bench/seeding.py``) — one with
``--approvals``, one with ``--small``. Each is seeded once and kept under ``bench/results/``
for the next run (a million approvals take a few minutes to seed).

Two DiscountFlow servers, one on each (the shipped gunicorn configuration, production), answer
``GET /v2/approvals?limit=20`` with an API key (which sees every approval of its organization):
the newest 20 approvals with their line items and steps, read and shaped on every request, which
is where the size of the database could show. The per-key limit is raised
(``API_RATE_LIMIT``): the organization has two keys and both sides are DiscountFlow, so a
refusal would only hide the page.

Both pages are checked first (200, 20 approvals newest first, each with line items, some with
steps). Then alternating rounds (``bench/harness.py``), and from the same rounds:

* worker CPU a request, large over small (target ≤ 1.3), with the in-process CPU a page of each
  beside it (300 pages through the WSGI app, each side in a fresh process);
* requests a second, large over small (reported, no target).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import harness, seeding  # noqa: E402

PAGE = 20
LIST = harness.Request("GET", f"/v2/approvals?limit={PAGE}")
APPROVALS, SMALL = 1_000_000, 1_000
CPU_COUNT = 300  # pages per in-process run (a page costs milliseconds)
SETTINGS = {"API_RATE_LIMIT": "1000000 per minute"}


def verify(port: int, key: str, where: str) -> dict:
    """The page must be 200 with 20 approvals newest first, each with line items, some with
    steps; return it."""
    status, body = harness.send(port, key, LIST)
    problem = None
    if status != 200:
        problem = f"status {status}"
    else:
        page = json.loads(body)
        data = page.get("data", [])
        created = [item.get("created") for item in data]
        if len(data) != PAGE:
            problem = f"{len(data)} approvals"
        elif not all(item.get("line_items") for item in data):
            problem = "an approval without line items"
        elif not all("steps" in item for item in data) or not any(i["steps"] for i in data):
            problem = "no steps on the page"
        elif created != sorted(created, reverse=True):
            problem = "not newest first"
    if problem:
        raise SystemExit(f"{where}: GET {LIST.path} is wrong ({problem}):\n{body[:2000]!r}")
    return page


def names(large: int, small: int) -> dict[str, str]:
    sizes = f"{large:,} vs {small:,} approvals"
    return {
        "cpu": f"20-approval page, {sizes}: worker CPU a request",
        "throughput": f"20-approval page, {sizes}: requests/s",
    }


def main() -> dict[str, harness.Figure]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    harness.arguments(parser)
    parser.add_argument(
        "--approvals", type=int, default=APPROVALS, help=f"the large database ({APPROVALS:,})"
    )
    parser.add_argument("--small", type=int, default=SMALL, help=f"the small one ({SMALL:,})")
    args = parser.parse_args()
    if min(args.approvals, args.small) < PAGE:
        parser.error(f"a database needs at least {PAGE} approvals (a full page)")
    harness.quiet()
    server_cores, load_cores, pinning = harness.cores()
    print(pinning, flush=True)
    scratch = Path(tempfile.mkdtemp(prefix="discountflow-bench-page-"))
    try:
        large, large_keys = seeding.approvals_database(args.approvals, scratch)
        small, small_keys = seeding.approvals_database(args.small, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    large_env = seeding.server_env(large, **SETTINGS)
    small_env = seeding.server_env(small, **SETTINGS)

    servers = []
    try:
        large_server = harness.serve("app:app", large_env, server_cores)
        servers.append(large_server)
        small_server = harness.serve("app:app", small_env, server_cores)
        servers.append(small_server)
        for server, keys, size in (
            (large_server, large_keys, args.approvals),
            (small_server, small_keys, args.small),
        ):
            verify(server.port, keys[0], f"{size:,} approvals")
            harness.warm(server.port, keys, LIST)
            harness.measure(server, keys, LIST, 1, load_cores)  # warm code paths, discarded
        print(f"verified: GET {LIST.path} gives {PAGE} approvals with line items on both")
        rounds = harness.alternate(
            lambda: harness.measure(large_server, large_keys, LIST, args.seconds, load_cores),
            lambda: harness.measure(small_server, small_keys, LIST, args.seconds, load_cores),
            args.pairs,
        )
    finally:
        for server in servers:
            harness.stop(server)
    in_process = harness.paired(
        lambda: harness.cpu_in_process(
            "discountflow:create_app", large_env, large_keys, LIST, CPU_COUNT, server_cores
        ),
        lambda: harness.cpu_in_process(
            "discountflow:create_app", small_env, small_keys, LIST, CPU_COUNT, server_cores
        ),
        args.pairs,
    )
    named = names(args.approvals, args.small)
    throughput, cpu = harness.throughput_and_cpu(
        rounds, (None, harness.Target(1.3, at_least=False))
    )
    note = f"in-process CPU a page: {in_process} [{in_process.a:,.0f} vs {in_process.b:,.0f} µs]"
    figures = {
        named["cpu"]: harness.Figure(cpu.ratio, cpu.target, cpu.unit, note),
        named["throughput"]: throughput,
    }
    harness.save(args.json, figures, pinning)
    return figures


if __name__ == "__main__":
    main()
