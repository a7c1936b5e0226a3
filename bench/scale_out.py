"""Authenticated ``GET /v2/me`` on PostgreSQL and Redis at 2 worker processes, against the bare
Flask baseline at 2 workers, and what a request spends in Redis and in the database.

Run from the repository root, with PostgreSQL and Redis running:
``python bench/scale_out.py [--seconds 10] [--rounds 3] [--keys 200]``
(``BENCH_POSTGRES_URL``, default ``postgresql+psycopg://postgres@127.0.0.1:5432/test``, names the
server; a scratch database is created and dropped. ``BENCH_REDIS_URL``, default
``redis://127.0.0.1:6379/14``, is flushed.)

Both apps run under the shipped ``gunicorn.conf.py`` with ``WEB_CONCURRENCY=2`` (a shared storage
lets gunicorn run several workers). The per-key limit still counts every request in Redis;
``API_RATE_LIMIT`` is raised so that the load is never refused. The breakdown comes from the
Flask test client in this process: the time of each SQL statement (SQLAlchemy's cursor events)
and of each rate-limit storage call, per request.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, event, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from bench.auth_overhead import load, prepare_keys, start, stop  # noqa: E402

POSTGRES = os.environ.get("BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")


def breakdown(keys: list[str], requests: int = 2000) -> dict[str, float]:
    """Milliseconds per request in total, in SQL statements and in rate-limit storage calls."""
    from discountflow import create_app
    from discountflow.extensions import db, limiter

    app = create_app()
    app.config["ACCESS_LOG"] = False
    spent = {"database": 0.0, "redis": 0.0}
    with app.app_context():
        engine = db.engine

    def before(conn, cursor, statement, parameters, context, executemany):
        conn.info["bench_started"] = time.perf_counter()

    def after(conn, cursor, statement, parameters, context, executemany):
        spent["database"] += time.perf_counter() - conn.info.pop("bench_started")

    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)
    strategy = limiter.limiter
    for name in ("hit", "get_window_stats", "test"):
        original = getattr(strategy, name)

        def timed(*args, _original=original, **kwargs):
            started = time.perf_counter()
            try:
                return _original(*args, **kwargs)
            finally:
                spent["redis"] += time.perf_counter() - started

        setattr(strategy, name, timed)
    client = app.test_client()
    headers = [{"Authorization": f"Bearer {key}"} for key in keys]
    for header in headers:  # each key's one bcrypt check, before measuring
        client.get("/v2/me", headers=header)
    spent.update(database=0.0, redis=0.0)
    started = time.perf_counter()
    for n in range(requests):
        assert client.get("/v2/me", headers=headers[n % len(headers)]).status_code == 200
    total = time.perf_counter() - started
    return {name: seconds / requests * 1000 for name, seconds in {**spent, "total": total}.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--keys", type=int, default=200)
    args = parser.parse_args()

    import redis

    redis.Redis.from_url(REDIS).flushdb()
    base = make_url(POSTGRES)
    name = f"discountflow_bench_{secrets.token_hex(4)}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    env = {
        **os.environ,
        "DATABASE_URL": base.set(database=name).render_as_string(hide_password=False),
        "RATELIMIT_STORAGE_URI": REDIS,
        "WEB_CONCURRENCY": "2",
        "SECRET_KEY": "bench",
        "BCRYPT_ROUNDS": "12",
        "DISCOUNTFLOW_ENV": "staging",
        "API_RATE_LIMIT": "1000000 per minute",
    }
    process = None
    try:
        keys, _ = prepare_keys(env, args.keys)
        bare_runs, app_runs = [], []
        for round_number in range(1, args.rounds + 1):
            process, port = start("bench.bare_app:app", env)
            load(port, keys, 2)
            bare_runs.append(load(port, keys, args.seconds))
            stop(process)
            process, port = start("app:app", env)
            load(port, keys, 3)  # warm up: each key's bcrypt check in each worker
            app_runs.append(load(port, keys, args.seconds))
            stop(process)
            process = None
            print(
                f"round {round_number}: bare {bare_runs[-1]:.0f} req/s, "
                f"discountflow {app_runs[-1]:.0f} req/s",
                flush=True,
            )
        costs = breakdown(keys)
    finally:
        if process is not None:
            stop(process)
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    bare, app = statistics.median(bare_runs), statistics.median(app_runs)
    print("gunicorn: 2 worker processes, gthread; PostgreSQL and Redis; medians below")
    print(f"bare Flask baseline (2 workers)        {bare:8.0f} req/s")
    print(f"authenticated GET /v2/me (2 workers)   {app:8.0f} req/s")
    print(f"ratio                                  {app / bare:8.2f}   (issue 2's target >= 0.80)")
    print(
        f"per request, in-process: {costs['total']:.3f} ms in all, "
        f"{costs['database']:.3f} ms in PostgreSQL, {costs['redis']:.3f} ms in Redis"
    )


if __name__ == "__main__":
    main()
