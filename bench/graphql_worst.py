"""The worst GraphQL documents within every limit: the CPU each takes to be answered.

Run from the repository root:
``python bench/graphql_worst.py [--reps 30] [--pairs 7] [--json PATH]``

Each document below is built as large as the limits allow (``discountflow/graphql_limits.py``:
tokens, definitions, fragment spreads, selections, depth, aliases, cost), in the shape that
makes graphql-core's validation or the execution work hardest: fragments spread side by side
(compared pairwise), one field asked many times (its selections compared pairwise), fields
under directives and variables, inline fragments, fragment chains, unknown names (each one a
search for a suggestion), conflicting arguments, the costliest page allowed, a mutation's
largest input. ``build`` checks that each is within the limits before it is measured.

Measured in this process (``time.process_time``), through the WSGI app (production, SQLite,
an organization with a few approvals): the whole request — authentication, parsing,
validation, execution, the answer. Each request sends a document no earlier request sent,
even with comments and spacing aside (its operation's name is new each time), so neither
remembered parse nor remembered validation helps: what an attacker varying their document
would cost. For each document, ``--reps`` requests after 3 to warm, in ``--pairs`` rounds;
its figure is the median of its rounds' medians, with their min–max.

One figure: the slowest document's CPU a request against the target, 20 ms (**any document
within the limits is answered in at most 20 ms of CPU on this machine**), printed as the
ratio to 20 ms with the document's name.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import harness, seeding  # noqa: E402

TARGET_MS = 20.0
FIGURE = "GraphQL worst document within the limits: CPU a request vs 20 ms"
OPERATION = "query W"  # each request renames it (W1, W2 …): a new document each time

# --- the documents -------------------------------------------------------------------------------


def _spread_fragments(n: int) -> str:
    """The issue's document: fragments side by side at the top, each spread once."""
    spreads = " ".join(f"...F{i}" for i in range(n))
    fragments = " ".join(f"fragment F{i} on Query {{ me {{ id }} }}" for i in range(n))
    return f"{OPERATION} {{ {spreads} }} {fragments}"


def _one_fragment_spread_often(n: int) -> str:
    spreads = " ".join(["...F"] * n)
    return (
        f"{OPERATION} {{ {spreads} }} fragment F on Query {{ me {{ id }} organization {{ id }} }}"
    )


def _same_field(n: int) -> str:
    return f"{OPERATION} {{ " + " ".join(["me { id }"] * n) + " }"


def _same_field_nested(n: int) -> str:
    each = "me { id organization { id name } }"
    return f"{OPERATION} {{ " + " ".join([each] * n) + " }"


def _inline_fragments(n: int) -> str:
    return f"{OPERATION} {{ " + " ".join(["... on Query { me { id } }"] * n) + " }"


def _nested_inline_fragments(n: int) -> str:
    return f"{OPERATION} {{ me {{ " + "... { " * n + "id" + " }" * n + " } }"


def _fragment_tree(n: int) -> str:
    """Each fragment spreads the next two: 2^n fields once expanded."""
    fragments = [
        f"fragment F{i} on ApiKeySession {{ id ...F{i + 1} ...F{i + 2} }}" for i in range(n)
    ]
    fragments += [f"fragment F{n} on ApiKeySession {{ id }}"]
    fragments += [f"fragment F{n + 1} on ApiKeySession {{ keyId }}"]
    return f"{OPERATION} {{ me {{ ...F0 }} }} " + " ".join(fragments)


def _fragments_in_a_field(n: int) -> str:
    spreads = " ".join(f"...F{i}" for i in range(n))
    fragments = " ".join(
        f"fragment F{i} on ApiKeySession {{ id keyId organization {{ id }} }}" for i in range(n)
    )
    return f"{OPERATION} {{ me {{ {spreads} }} }} {fragments}"


def _directives(n: int) -> str:
    fields = " ".join(["id @include(if: $v) @skip(if: false)"] * n)
    return f"{OPERATION}($v: Boolean = true) {{ me {{ {fields} }} }}"


def _variables(n: int) -> str:
    definitions = " ".join(f"$v{i}: Boolean = true" for i in range(n))
    fields = " ".join(f"id @include(if: $v{i})" for i in range(n))
    return f"{OPERATION}({definitions}) {{ me {{ {fields} }} }}"


def _aliases(n: int) -> str:
    each = (
        "approvals(first: 12) { edges { node { id title customer status amount currency "
        "lineItems(first: 8) { id sku quantity unitPrice amount } "
        "steps(first: 5) { id levelName status } } } }"
    )
    return f"{OPERATION} {{ " + " ".join(f"a{i}: {each}" for i in range(n)) + " }"


def _unknown_fields(n: int) -> str:
    return f"{OPERATION} {{ " + " ".join(f"approvalz{i}" for i in range(n)) + " }"


def _conflicting_arguments(n: int) -> str:
    each = "approvals(first: {}) {{ edges {{ node {{ id }} }} }}"
    return f"{OPERATION} {{ " + " ".join(each.format(i % 9 + 1) for i in range(n)) + " }"


def _costliest_page(n: int) -> str:
    fields = (
        "id title customer dealReference currency justification status requestedBy listAmount "
        "amount discountAmount discountPercent maxLineDiscountPercent requiredApprovalLevel "
        "awaitingApprovalLevel submitted decided validUntil metadata created updated "
        f"lineItems(first: {n}) {{ id product sku description custom quantity unitListPrice "
        "unitPrice listAmount amount discountAmount discountPercent } "
        f"steps(first: {n}) {{ id position approvalLevel levelName levelRank status }} "
        f"decisions(first: {n}) {{ id }} comments(first: {n}) {{ id body }} "
        f"events(first: {n}) {{ id type }}"
    )
    return f"{OPERATION} {{ approvals(first: 49) {{ edges {{ node {{ {fields} }} }} }} }}"


def _long_status_list(n: int) -> str:
    statuses = ", ".join(["PENDING"] * n)
    page = f"approvals(first: 1, status: [{statuses}]) {{ edges {{ node {{ id }} }} }}"
    return f"{OPERATION} {{ {page} }}"


def _largest_input(n: int) -> str:
    """A mutation's input as large as the limits allow, refused by the API's own model after
    GraphQL has checked all of it (a currency that is no ISO 4217 code), so nothing is written
    and the database the other documents read stays as it was."""
    item = '{description: "d", quantity: 1, unitListPrice: 100, unitPrice: 90}'
    items = ", ".join([item] * n)
    return (
        'mutation W { createApproval(input: {title: "T", customer: "C", currency: "ZZZ", '
        f"lineItems: [{items}]}}) {{ id }} }}"
    )


BUILDERS: dict[str, Callable[[int], str]] = {
    "fragments spread side by side": _spread_fragments,
    "one fragment spread many times": _one_fragment_spread_often,
    "one field asked many times": _same_field,
    "one field with selections asked many times": _same_field_nested,
    "inline fragments side by side": _inline_fragments,
    "inline fragments nested": _nested_inline_fragments,
    "fragments spreading the next two": _fragment_tree,
    "fragments spread in one field": _fragments_in_a_field,
    "fields under directives": _directives,
    "a variable per field": _variables,
    "aliases of pages": _aliases,
    "unknown fields": _unknown_fields,
    "conflicting arguments": _conflicting_arguments,
    "the costliest page": _costliest_page,
    "a long list argument": _long_status_list,
    "a mutation's largest input": _largest_input,
}


def within_limits(document: str, variables: dict | None = None) -> bool:
    """Whether the limits let the document through to validation (tokens, size, depth,
    aliases, cost): what the server would not refuse as ``query_too_complex``."""
    from graphql import GraphQLError, parse

    from discountflow.graphql import schema
    from discountflow.graphql_limits import PARSE_OPTIONS, Analysis, Size, published

    try:
        parsed = parse(document, **PARSE_OPTIONS)
    except GraphQLError:
        return False
    if Size.of(parsed).refusals():
        return False
    analysis = Analysis(published(schema("production")), parsed, variables or {})
    return not [r for r in analysis.refusals() if r.extensions["code"] == "query_too_complex"]


def build(builder: Callable[[int], str]) -> str:
    """The builder's largest document within the limits (their growth is monotonic)."""
    low, high = 1, 2
    while within_limits(builder(high)) and high < 4096:
        low, high = high, high * 2
    if not within_limits(builder(low)):
        raise SystemExit(f"{builder.__name__}: not within the limits even at 1")
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if within_limits(builder(middle)) else (low, middle)
    return builder(low)


def documents() -> dict[str, str]:
    """Every worst document, by name, at its largest within the limits."""
    return {name: build(builder) for name, builder in BUILDERS.items()}


# --- the measurement -----------------------------------------------------------------------------


def renamed(document: str, number: int) -> str:
    """The document under a new operation name, ``W<number>``: a new document for every cache."""
    kind, rest = document.split(" W", 1)
    return f"{kind} W{number}{rest}"


class App:
    """DiscountFlow in this process (production, SQLite), a key, and a few approvals."""

    def __init__(self, workdir: Path) -> None:
        database = workdir / "discountflow.sqlite"
        (self.key,) = seeding.keys_for_load(database, 1, prefix="worst")
        os.environ.update(seeding.server_env(database, API_RATE_LIMIT="10000000 per minute"))
        from discountflow import create_app

        self.client = create_app().test_client()
        self.number = 0
        item = '{description: "Seats", quantity: 10, unitListPrice: 1000, unitPrice: 900}'
        for n in range(5):
            status, _ = self.send(
                f'mutation W {{ createApproval(input: {{title: "Deal {n}", customer: "Acme", '
                f'currency: "USD", lineItems: [{item}]}}) {{ id }} }}'
            )
            assert status == 200

    def send(self, document: str) -> tuple[int, dict]:
        self.number += 1
        response = self.client.post(
            "/v2/graphql",
            json={"query": renamed(document, self.number), "operationName": f"W{self.number}"},
            headers={"Authorization": f"Bearer {self.key}"},
        )
        return response.status_code, response.get_json()


def measure(app: App, document: str, reps: int) -> float:
    """The median CPU milliseconds of ``reps`` requests, each a new document."""
    times = []
    for _ in range(reps):
        started = time.process_time()
        status, body = app.send(document)
        times.append((time.process_time() - started) * 1000)
        if status >= 500 or "Internal server error" in json.dumps(body):
            raise SystemExit(f"a server error:\n{document[:300]}\n{body}")
    return statistics.median(times)


def main() -> dict[str, harness.Figure]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    harness.arguments(parser)
    parser.add_argument("--reps", type=int, default=30, help="requests a document per round")
    args = parser.parse_args()
    harness.quiet()
    worst = documents()
    workdir = Path(tempfile.mkdtemp(prefix="discountflow-bench-worst-"))
    try:
        app = App(workdir)
        rounds: dict[str, list[float]] = {name: [] for name in worst}
        statuses = {}
        for name, document in worst.items():
            for _ in range(3):
                statuses[name], _body = app.send(document)  # warm
        for _ in range(args.pairs):
            for name, document in worst.items():
                rounds[name].append(measure(app, document, args.reps))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"{'document':<45} {'status':>6} {'tokens':>6}  CPU ms a request: median (min–max)")
    from graphql.language import Lexer, Source, TokenKind

    def tokens(text: str) -> int:
        lexer, count = Lexer(Source(text)), 0
        while lexer.advance().kind != TokenKind.EOF:
            count += 1
        return count

    for name, figures in sorted(rounds.items(), key=lambda item: statistics.median(item[1])):
        print(
            f"{name:<45} {statuses[name]:>6} {tokens(worst[name]):>6}  "
            f"{statistics.median(figures):.2f} ({min(figures):.2f}–{max(figures):.2f})",
            flush=True,
        )
    slowest = max(rounds, key=lambda name: statistics.median(rounds[name]))
    figures = rounds[slowest]
    ratio = harness.Ratio(
        statistics.median(figures) / TARGET_MS,
        min(figures) / TARGET_MS,
        max(figures) / TARGET_MS,
        statistics.median(figures),
        TARGET_MS,
        len(figures),
    )
    figure = harness.Figure(
        ratio,
        harness.Target(1.0, at_least=False),
        "ms",
        f"slowest: {slowest} ({statistics.median(figures):.2f} ms of CPU, "
        f"{args.reps} requests a round, {args.pairs} rounds)",
    )
    harness.save(args.json, {FIGURE: figure}, "not pinned (in this process)")
    return {FIGURE: figure}


if __name__ == "__main__":
    main()
