"""In-process CPU per request of authenticated, rate-limited ``GET /v2/me`` against bare Flask.

Run from the repository root:  ``python bench/me_cpu_profile.py [--pairs 7] [--count 2000]``
or, to see where the time goes:  ``python bench/me_cpu_profile.py --profile``

Production settings (``DISCOUNTFLOW_ENV=production``: 1,000 requests a minute per key), the
access log on (to a pipe, as under a process manager), ``memory://`` rate-limit storage, 40
keys taken in turn. Each side runs in its own process (``bench/harness.py``'s
``cpu_per_request``: ``time.process_time`` over ``--count`` requests through the test client,
after every key's one bcrypt check), the app and the bare baseline (``bench/bare_app.py``)
alternating in pairs (app then bare, bare then app …). It prints each side's median µs per
request and the median of the per-pair ratios app/bare with its min–max (target <= 1.5).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import harness  # noqa: E402

KEYS = 40


def prepare(env: dict[str, str], count: int) -> list[str]:
    """Create ``count`` organizations, each with one full-access key; return the keys."""
    os.environ.update(env)
    from discountflow import create_app
    from discountflow.actors import Actor
    from discountflow.auth.services import generate_key
    from discountflow.extensions import db
    from discountflow.organizations.services import create_organization

    app = create_app()
    with app.app_context():
        db.create_all()
        keys = []
        for number in range(count):
            organization = create_organization(
                f"Bench {number}",
                owner_email=f"owner{number}@bench.example",
                owner_password="bench-password",
            )
            keys.append(generate_key(Actor.for_cli(organization))[1])
    return keys


def profile(env: dict[str, str], keys: list[str], count: int) -> None:
    """cProfile ``count`` requests in this process; print the 40 costliest by cumulative time."""
    from discountflow import create_app

    client = create_app().test_client()
    headers = [{"Authorization": f"Bearer {key}"} for key in keys]
    for header in headers:  # every key's one bcrypt check
        assert client.get("/v2/me", headers=header).status_code == 200
    profiler = cProfile.Profile()
    profiler.enable()
    for number in range(count):
        client.get("/v2/me", headers=headers[number % len(headers)])
    profiler.disable()
    stats = pstats.Stats(profiler, stream=sys.stderr)
    stats.sort_stats("cumulative").print_stats(40)
    stats.sort_stats("tottime").print_stats(25)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=7)
    parser.add_argument("--count", type=int, default=2000, help="requests per measurement")
    parser.add_argument("--profile", action="store_true", help="profile the app instead")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="discountflow-bench-me-"))
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{workdir / 'bench.sqlite'}",
        "SECRET_KEY": "bench-" + "0" * 64,
        "DISCOUNTFLOW_ENV": "production",
        "RATELIMIT_STORAGE_URI": "memory://",
        "BCRYPT_ROUNDS": "4",  # each key is checked once per process: not what is measured
    }
    for name in ("API_RATE_LIMIT", "ACCESS_LOG", "METRICS_TOKEN", "METRICS_ALLOW_LOOPBACK"):
        env.pop(name, None)
    try:
        keys = prepare(env, KEYS)
        if args.profile:
            profile(env, keys, args.count)
            return
        server_cores, _, pinning = harness.cores()
        me = [harness.Request("GET", "/v2/me")]
        sides = {
            "app": ("discountflow", "create_app"),
            "bare": ("bench.bare_app", "create_app"),
        }
        costs: dict[str, list[float]] = {"app": [], "bare": []}
        for number in range(args.pairs):
            order = ["app", "bare"] if number % 2 == 0 else ["bare", "app"]
            for side in order:
                costs[side] += harness.cpu_per_request(
                    env, keys, me, count=args.count, pairs=1, app=sides[side], on_cores=server_cores
                )[0]
        ratio = harness.cpu_ratio(costs["app"], costs["bare"])
        print(f"GET /v2/me, production, {KEYS} keys, {args.count} requests a run ({pinning})")
        print("app  µs/request: " + " ".join(f"{cost:.0f}" for cost in costs["app"]))
        print("bare µs/request: " + " ".join(f"{cost:.0f}" for cost in costs["bare"]))
        print(
            f"CPU per request app vs bare  {ratio}  [{ratio.a:.0f} vs {ratio.b:.0f} µs]  "
            f"target <= 1.5  {'PASS' if ratio.median <= 1.5 else 'FAIL'}"
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
