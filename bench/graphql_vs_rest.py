"""GraphQL against REST, on the same server, in alternating pairs (``bench/harness.py``).

Run from the repository root:
``python bench/graphql_vs_rest.py [--seconds 3] [--pairs 7] [--json PATH]``

It seeds an SQLite database of 1,000 approvals over 50 organizations (as
``bench/approvals_list.py`` does), serves it with the shipped gunicorn configuration, the
memory of rendered pages off (``PAGE_CACHE_MB=0``: every REST page is read and rendered), and
prints two figures, each the median of the per-pair throughput ratios with its min–max, and
the same in CPU per request through the WSGI app:

* ``{ me { id organization { name } } }`` over GraphQL, against ``GET /v2/me`` (target ≥ 0.60);
* a page of 20 approvals with their line items and steps over GraphQL, against
  ``GET /v2/approvals?limit=20`` rendered without the page cache (target ≥ 0.50).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import harness  # noqa: E402
from bench.approvals_list import RATE_LIMIT, seed  # noqa: E402

APPROVALS = 1_000
SMALL = "{ me { id organization { name } } }"
PAGE = (
    "{ approvals(first: 20) { edges { node { id title customer dealReference currency "
    "justification status requestedBy listAmount amount discountAmount discountPercent "
    "maxLineDiscountPercent requiredApprovalLevel awaitingApprovalLevel submitted decided "
    "validUntil metadata created updated "
    "lineItems(first: 100) { id product sku description custom quantity unitListPrice unitPrice "
    "listAmount "
    "amount discountAmount discountPercent } "
    "steps(first: 100) { id position approvalLevel levelName levelRank status decidedBy decided }"
    " } } pageInfo { hasNextPage endCursor } } }"
)
FIGURES = [
    # name, GraphQL side, REST side, target
    ("GraphQL small query vs GET /v2/me", SMALL, harness.Request("GET", "/v2/me"), 0.60),
    (
        "GraphQL 20-approval page vs REST page (rendered)",
        PAGE,
        harness.Request("GET", "/v2/approvals?limit=20"),
        0.50,
    ),
]


def graphql(query: str) -> harness.Request:
    return harness.Request("POST", "/v2/graphql", json.dumps({"query": query}))


def main() -> dict[str, harness.Figure]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    harness.arguments(parser)
    args = parser.parse_args()
    harness.quiet()
    server_cores, load_cores, pinning = harness.cores()
    workdir = Path(tempfile.mkdtemp(prefix="discountflow-bench-graphql-"))
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{workdir / 'bench.sqlite'}",
        "SECRET_KEY": "bench",
        "API_RATE_LIMIT": RATE_LIMIT,
        "PAGE_CACHE_MB": "0",
        "BCRYPT_ROUNDS": "4",  # each key is checked once per process: not what is measured
    }
    print(f"Seeding {APPROVALS:,} approvals… ({pinning})", flush=True)
    keys, _ = seed(env, APPROVALS)
    process, port = harness.serve("app:app", env, server_cores)
    results = {}
    try:
        for name, query, rest, target in FIGURES:
            harness.warm(port, keys, graphql(query))
            harness.warm(port, keys, rest)
            ratio = harness.paired(
                lambda q=query: harness.throughput(
                    port, keys, graphql(q), args.seconds, load_cores
                ),
                lambda r=rest: harness.throughput(port, keys, r, args.seconds, load_cores),
                args.pairs,
            )
            results[name] = harness.Figure(ratio, harness.Target(target))
            print(results[name].line(name), flush=True)
    finally:
        harness.stop(process)
    costs = harness.cpu_per_request(
        env,
        keys,
        [graphql(SMALL), FIGURES[0][2], graphql(PAGE), FIGURES[1][2]],
        count=500,
        pairs=args.pairs,
        on_cores=server_cores,
    )
    for number, (name, *_rest) in enumerate(FIGURES):
        cpu = harness.cpu_ratio(costs[2 * number], costs[2 * number + 1])
        cpu_name = f"CPU per request {name}"
        results[cpu_name] = harness.Figure(cpu, unit="µs")
        print(results[cpu_name].line(cpu_name), flush=True)
    harness.save(args.json, results, pinning)
    return results


if __name__ == "__main__":
    main()
