"""A page of 20 approvals with line items and steps over GraphQL, against the same page over REST.

Run from the repository root:
``python bench/graphql_vs_rest.py [--seconds 3] [--pairs 7] [--approvals 1000] [--json PATH]``

One DiscountFlow server (the shipped gunicorn configuration, production) on the database of
1,000 approvals ``bench/approvals_page.py`` uses (``bench/seeding.py``: made once, kept under
``bench/results/``), the per-key limit raised (``API_RATE_LIMIT``: the organization has two
keys, and a refusal would only hide the page). The two sides, on the same server:

* ``approvals(first: 20)`` over ``POST /v2/graphql``: every scalar field of ``Approval``, its
  ``lineItems(first: 100)`` and ``steps(first: 10)`` with all their fields;
* ``GET /v2/approvals?limit=20``: the same 20 approvals, with line items and steps.

Both are checked first (the same 20 approvals, no GraphQL error). Then alternating rounds
(``bench/harness.py``), and from the same rounds:

* worker CPU a request, GraphQL over REST (target ≤ 3), with the in-process CPU a page of each
  beside it (300 pages through the WSGI app, each side in a fresh process);
* requests a second, GraphQL over REST (reported, no target).
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
from bench.approvals_page import CPU_COUNT, LIST, SETTINGS, SMALL, verify  # noqa: E402

PAGE = (
    "{ approvals(first: 20) { edges { node { "
    "id title customer dealReference currency justification status requestedBy listAmount "
    "amount discountAmount discountPercent maxLineDiscountPercent requiredApprovalLevel "
    "awaitingApprovalLevel submitted decided validUntil metadata created updated "
    "lineItems(first: 100) { id product sku description custom quantity unitListPrice "
    "unitPrice listAmount amount discountAmount discountPercent } "
    "steps(first: 10) { id position approvalLevel levelName levelRank status decidedBy decided }"
    " } } pageInfo { hasNextPage endCursor } } }"
)
GRAPHQL = harness.Request("POST", "/v2/graphql", json.dumps({"query": PAGE}))
FIGURES = {
    "cpu": (
        "GraphQL 20-approval page vs REST page: worker CPU a request",
        harness.Target(3.0, at_least=False),
    ),
    "throughput": ("GraphQL 20-approval page vs REST page: requests/s", None),
}


def verify_graphql(port: int, key: str, rest: dict) -> None:
    """The GraphQL page must answer, without errors, the approvals of the REST page."""
    status, body = harness.send(port, key, GRAPHQL)
    answer = json.loads(body) if status == 200 else {}
    edges = (answer.get("data") or {}).get("approvals", {}).get("edges", [])
    ids = [edge["node"]["id"] for edge in edges]
    if answer.get("errors") or ids != [item["id"] for item in rest["data"]]:
        raise SystemExit(f"POST /v2/graphql: not the REST page ({status}):\n{body[:2000]!r}")
    if not all(edge["node"]["lineItems"] for edge in edges):
        raise SystemExit("POST /v2/graphql: an approval without line items")


def main() -> dict[str, harness.Figure]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    harness.arguments(parser)
    parser.add_argument(
        "--approvals", type=int, default=SMALL, help=f"approvals in the database ({SMALL:,})"
    )
    args = parser.parse_args()
    harness.quiet()
    server_cores, load_cores, pinning = harness.cores()
    print(pinning, flush=True)
    scratch = Path(tempfile.mkdtemp(prefix="discountflow-bench-graphql-"))
    try:
        database, keys = seeding.approvals_database(args.approvals, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    env = seeding.server_env(database, **SETTINGS)
    server = harness.serve("app:app", env, server_cores)
    try:
        verify_graphql(server.port, keys[0], verify(server.port, keys[0], "REST"))
        print("verified: the GraphQL page holds the REST page's 20 approvals", flush=True)
        for request in (GRAPHQL, LIST):
            harness.warm(server.port, keys, request)
            harness.measure(server, keys, request, 1, load_cores)  # warm code paths, discarded
        rounds = harness.alternate(
            lambda: harness.measure(server, keys, GRAPHQL, args.seconds, load_cores),
            lambda: harness.measure(server, keys, LIST, args.seconds, load_cores),
            args.pairs,
        )
    finally:
        harness.stop(server)
    in_process = harness.paired(
        lambda: harness.cpu_in_process(
            "discountflow:create_app", env, keys, GRAPHQL, CPU_COUNT, server_cores
        ),
        lambda: harness.cpu_in_process(
            "discountflow:create_app", env, keys, LIST, CPU_COUNT, server_cores
        ),
        args.pairs,
    )
    throughput, cpu = harness.throughput_and_cpu(rounds, (None, FIGURES["cpu"][1]))
    note = f"in-process CPU a page: {in_process} [{in_process.a:,.0f} vs {in_process.b:,.0f} µs]"
    figures = {
        FIGURES["cpu"][0]: harness.Figure(cpu.ratio, cpu.target, cpu.unit, note),
        FIGURES["throughput"][0]: throughput,
    }
    harness.save(args.json, figures, pinning)
    return figures


if __name__ == "__main__":
    main()
