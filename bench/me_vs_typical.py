"""``GET /v2/me``: DiscountFlow against the stack a Flask developer would write for it.

Run from the repository root:
``python bench/me_vs_typical.py [--seconds 3] [--pairs 7] [--keys N] [--json PATH]``

The other side is ``bench/typical_app.py``: Flask-HTTPAuth's bearer check looking the key up by
its SHA-256 in a Flask-SQLAlchemy table, a Flask-Limiter decorator at 1,000 a minute per key,
one JSON log line per request. Both are served the same way — the shipped ``gunicorn.conf.py``
(one worker process, 8 threads), SQLite, limits in the process (DiscountFlow's ``process://``,
the typical app's ``memory://``) — with the same keys (made by
DiscountFlow's CLI; the typical app stores their SHA-256) and the same limit (DiscountFlow with
``DISCOUNTFLOW_ENV=production``: 1,000 a minute per key). Before anything is measured, each
server answers every key once, and the typical app's answers must equal DiscountFlow's.

The servers are pinned to one core, ``wrk`` to the others, and measured in alternating pairs
(``bench/harness.py``). From the same rounds, two figures, each the median of the per-pair
ratios (DiscountFlow over typical) with its min–max:

* requests answered per second (target ≥ 2.0);
* worker CPU a request: CPU seconds of the gunicorn worker during the round over the requests
  answered in it (target ≤ 0.5).

Beside them, the in-process CPU a request of each app (``time.process_time`` over 2,000
requests through the WSGI app, no network, 40 keys, each side in a fresh process).

The load takes the keys in turn, and there are enough of them (``harness.keys_needed``) that
none passes 800 requests in a minute even at 6,000 a second: the limit is counted on every
request and never refuses one (any non-2xx ends the run).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import harness, seeding  # noqa: E402
from bench.typical_app import create_app, store_keys  # noqa: E402

ME = harness.Request("GET", "/v2/me")
CPU_KEYS, CPU_COUNT = 40, 2000
FIGURES = {
    "throughput": ("GET /v2/me vs typical Flask stack: requests/s", harness.Target(2.0)),
    "cpu": (
        "GET /v2/me vs typical Flask stack: worker CPU a request",
        harness.Target(0.5, at_least=False),
    ),
}


def measured(
    args: argparse.Namespace,
    keys: list[str],
    discountflow_env: dict[str, str],
    typical_env: dict[str, str],
    server_cores: set[int] | None,
    load_cores: set[int] | None,
) -> list[tuple[harness.Round, harness.Round]]:
    """Both servers up and checked, then the rounds: (DiscountFlow, typical) in each pair."""
    servers = []
    try:
        discountflow = harness.serve("app:app", discountflow_env, server_cores)
        servers.append(discountflow)
        answers = harness.warm(discountflow.port, keys, ME)
        sessions = {key: json.loads(body) for key, body in zip(keys, answers, strict=True)}
        store_keys(create_app(typical_env["TYPICAL_DATABASE_URL"]), sessions)
        typical = harness.serve("bench.typical_app:create_app()", typical_env, server_cores)
        servers.append(typical)
        for key, theirs in zip(keys, harness.warm(typical.port, keys, ME), strict=True):
            if json.loads(theirs) != sessions[key]:
                raise SystemExit(f"the typical app answers otherwise:\n{sessions[key]}\n{theirs}")
        print(f"verified: both answer GET /v2/me alike for all {len(keys)} keys", flush=True)
        for server in servers:
            harness.measure(server, keys, ME, 1, load_cores)  # warm code paths, discarded
        return harness.alternate(
            lambda: harness.measure(discountflow, keys, ME, args.seconds, load_cores),
            lambda: harness.measure(typical, keys, ME, args.seconds, load_cores),
            args.pairs,
        )
    finally:
        for server in servers:
            harness.stop(server)


def main() -> dict[str, harness.Figure]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    harness.arguments(parser)
    parser.add_argument("--keys", type=int, help="API keys for the load (default: enough)")
    args = parser.parse_args()
    harness.quiet()
    server_cores, load_cores, pinning = harness.cores()
    count = args.keys or harness.keys_needed(args.pairs * args.seconds + 2)
    workdir = Path(tempfile.mkdtemp(prefix="discountflow-bench-me-"))
    try:
        print(f"Making {count} API keys… ({pinning})", flush=True)
        keys = seeding.keys_for_load(workdir / "discountflow.sqlite", count)
        discountflow_env = seeding.server_env(workdir / "discountflow.sqlite")
        typical_env = {
            **os.environ,
            "TYPICAL_DATABASE_URL": f"sqlite:///{workdir / 'typical.sqlite'}",
        }
        rounds = measured(args, keys, discountflow_env, typical_env, server_cores, load_cores)
        in_process = harness.paired(
            lambda: harness.cpu_in_process(
                "discountflow:create_app",
                discountflow_env,
                keys[:CPU_KEYS],
                ME,
                CPU_COUNT,
                server_cores,
            ),
            lambda: harness.cpu_in_process(
                "bench.typical_app:create_app",
                typical_env,
                keys[:CPU_KEYS],
                ME,
                CPU_COUNT,
                server_cores,
            ),
            args.pairs,
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    throughput, cpu = harness.throughput_and_cpu(
        rounds, (FIGURES["throughput"][1], FIGURES["cpu"][1])
    )
    note = f"in-process CPU a request: {in_process} [{in_process.a:,.0f} vs {in_process.b:,.0f} µs]"
    figures = {
        FIGURES["throughput"][0]: throughput,
        FIGURES["cpu"][0]: harness.Figure(cpu.ratio, cpu.target, cpu.unit, note),
    }
    harness.save(args.json, figures, pinning)
    return figures


if __name__ == "__main__":
    main()
