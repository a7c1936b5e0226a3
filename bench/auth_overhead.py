"""Throughput of authenticated, rate-limited ``GET /v2/me`` against a bare Flask baseline.

Run from the repository root:  ``python bench/auth_overhead.py [--seconds 10] [--rounds 3]``

Both apps run under the shipped gunicorn configuration (one process, gthread) on loopback, in
alternating rounds, and the load comes from ``wrk`` (``apt-get install wrk``) or, without it, a
Python keep-alive client. It prints:

* the ratio of DiscountFlow's throughput to the baseline's (target ≥ 0.80);
* valid-key throughput while 100 requests per second arrive with invalid keys — well-formed
  keys with a real lookup id and a wrong secret, the kind only bcrypt can refuse — as a ratio
  of the undisturbed figure (target ≥ 0.80);
* the cost of the Prometheus metrics (``METRICS_TOKEN`` set: every request counted and timed,
  in gunicorn's multiprocess mode) as the ratio of ``GET /v2/me`` with metrics to without, in
  ``--pairs`` alternating pairs on two servers pinned to the same core (``bench/harness.py``),
  and the same in CPU per request through the WSGI app (target ≥ 0.95: at most 5 % slower).

The load spreads over 200 keys (100 organizations, each with a full-access and a read-only
key) so that the documented limit of 500 per minute per key does all its work but never refuses,
as with many integrations each inside its budget.
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import harness  # noqa: E402
from discountflow.auth.keys import checksum  # noqa: E402

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(app_path: str, env: dict[str, str]) -> tuple[subprocess.Popen, int]:
    port = free_port()
    process = subprocess.Popen(
        [
            str(BIN / "gunicorn"),
            "-c",
            "gunicorn.conf.py",
            "-b",
            f"127.0.0.1:{port}",
            "--access-logfile",
            "/dev/null",
            app_path,
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process, port
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit(f"{app_path} did not start")


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    process.wait(10)


WRK_SCRIPT = """
local keys = {}
for line in io.lines(os.getenv("BENCH_KEYS_FILE")) do keys[#keys + 1] = line end
local path = os.getenv("BENCH_PATH")
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", path, {["Authorization"] = "Bearer " .. keys[(n % #keys) + 1]})
end
"""


def load(
    port: int, keys: list[str], seconds: float, connections: int = 16, path: str = "/v2/me"
) -> float:
    """Return requests per second of GET ``path``, the keys taken in turn; refuse non-2xx."""
    if not shutil.which("wrk"):
        return python_load(port, keys, seconds, connections, path)
    workdir = Path(tempfile.mkdtemp(prefix="discountflow-wrk-"))
    try:
        (workdir / "keys.txt").write_text("\n".join(keys) + "\n")
        (workdir / "keys.lua").write_text(WRK_SCRIPT)
        out = subprocess.run(
            [
                "wrk",
                "-t2",
                f"-c{connections}",
                f"-d{max(1, round(seconds))}s",
                "-s",
                str(workdir / "keys.lua"),
                f"http://127.0.0.1:{port}",
            ],
            capture_output=True,
            text=True,
            check=True,
            env={
                **os.environ,
                "BENCH_KEYS_FILE": str(workdir / "keys.txt"),
                "BENCH_PATH": path,
            },
        ).stdout
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if "Non-2xx" in out or "Socket errors" in out:
        raise SystemExit(f"GET {path}: errors or non-2xx responses during the run:\n{out}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


def python_load(port: int, keys: list[str], seconds: float, connections: int, path: str) -> float:
    count, failures = [0], []
    stop_at = time.monotonic() + seconds
    lock = threading.Lock()

    def worker():
        connection = http.client.HTTPConnection("127.0.0.1", port)
        done = 0
        while time.monotonic() < stop_at:
            key = keys[done % len(keys)]
            connection.request("GET", path, headers={"Authorization": f"Bearer {key}"})
            response = connection.getresponse()
            response.read()
            if response.status != 200:
                failures.append(response.status)
                break
            done += 1
        with lock:
            count[0] += done

    threads = [threading.Thread(target=worker) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise SystemExit(f"GET {path}: non-2xx responses during the run: {failures}")
    return count[0] / seconds


def invalid_key_flood(port: int, key: str, per_second: int, stop: threading.Event, sent: list):
    """Send ``per_second`` requests with distinct bad keys (real lookup id, wrong secret)."""
    body_prefix = key[: -6 - 22]
    connection = http.client.HTTPConnection("127.0.0.1", port)
    number = 0
    next_at = time.monotonic()
    while not stop.is_set():
        secret = f"{number:022d}"
        bad = body_prefix + secret + checksum(body_prefix + secret)
        connection.request("GET", "/v2/me", headers={"Authorization": f"Bearer {bad}"})
        response = connection.getresponse()
        response.read()
        sent.append(response.status)
        number += 1
        next_at += 1 / per_second
        time.sleep(max(0.0, next_at - time.monotonic()))


def organization_with_keys(name: str, email: str, *, read_only: bool = False) -> tuple[str, ...]:
    """Create an organization (inside an app context); return its id and its new keys."""
    from discountflow.actors import Actor
    from discountflow.auth.services import generate_key
    from discountflow.organizations.services import create_organization

    organization = create_organization(name, owner_email=email, owner_password="bench-password")
    owner = Actor.for_cli(organization)
    keys = [generate_key(owner)[1]]
    if read_only:
        keys.append(generate_key(owner, read_only=True)[1])
    return organization.id, *keys


def prepare_keys(env: dict[str, str], count: int) -> tuple[list[str], str]:
    """Create organizations with ``count`` keys for the load, and one key to flood with bad ones.

    The load's keys are hashed at bcrypt cost 4 so that each server's one check per key stays
    short (it is not what is measured); the flood's target is hashed at the production cost, 12.
    """
    os.environ.update(env)
    from discountflow import create_app
    from discountflow.extensions import db

    app = create_app()
    with app.app_context():
        db.create_all()
        app.config["BCRYPT_ROUNDS"] = 4
        keys = []
        for number in range((count + 1) // 2):
            keys += organization_with_keys(
                f"Bench {number}", f"owner{number}@bench.example", read_only=True
            )[1:]
        app.config["BCRYPT_ROUNDS"] = 12
        _, target = organization_with_keys("Flood target", "owner@flood.example")
    return keys[:count], target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--keys", type=int, default=200, help="API keys the load takes in turn")
    parser.add_argument("--pairs", type=int, default=7, help="pairs for the metrics figure")
    parser.add_argument("--pair-seconds", type=float, default=3)
    parser.add_argument(
        "--only-metrics", action="store_true", help="measure only the metrics' cost"
    )
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="discountflow-bench-"))
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{workdir / 'bench.sqlite'}",
        "SECRET_KEY": "bench",
        "RATELIMIT_STORAGE_URI": "memory://",
        "BCRYPT_ROUNDS": "12",
        "DISCOUNTFLOW_ENV": "staging",
    }
    env.pop("WEB_CONCURRENCY", None)
    env.pop("API_RATE_LIMIT", None)
    keys, target = prepare_keys(env, args.keys)
    if not args.only_metrics:
        overhead(env, keys, target, args)
    metrics_cost(env, keys, args)
    shutil.rmtree(workdir, ignore_errors=True)


def metrics_cost(env: dict[str, str], keys: list[str], args: argparse.Namespace) -> None:
    """``GET /v2/me`` with the metrics on against the same app with them off, paired."""
    server_cores, load_cores, pinning = harness.cores()
    me = harness.Request("GET", "/v2/me")
    metered_env = {**env, "METRICS_TOKEN": "bench-metrics-token-0123456789"}
    plain, plain_port = harness.serve("app:app", env, server_cores)
    metered, metered_port = harness.serve("app:app", metered_env, server_cores)
    try:
        for port in (plain_port, metered_port):
            harness.warm(port, keys, me)
        ratio = harness.paired(
            lambda: harness.throughput(metered_port, keys, me, args.pair_seconds, load_cores),
            lambda: harness.throughput(plain_port, keys, me, args.pair_seconds, load_cores),
            args.pairs,
        )
    finally:
        harness.stop(plain)
        harness.stop(metered)
    cpu_env = {**env, "BCRYPT_ROUNDS": "4"}
    counted_env = {
        **metered_env,
        "BCRYPT_ROUNDS": "4",
        "PROMETHEUS_MULTIPROC_DIR": tempfile.mkdtemp(prefix="discountflow-bench-metrics-"),
    }
    plain_cpu, metered_cpu = [], []
    for number in range(args.pairs):  # alternating processes: metrics are chosen at start
        order = [(plain_cpu, cpu_env), (metered_cpu, counted_env)]
        for costs, side_env in order if number % 2 == 0 else reversed(order):
            costs += harness.cpu_per_request(
                side_env, keys[:40], [me], pairs=1, on_cores=server_cores
            )[0]
    cpu = harness.cpu_ratio(metered_cpu, plain_cpu)
    print(f"metrics ({pinning}):")
    print(
        f"GET /v2/me with metrics vs without  {ratio}  "
        f"[{ratio.a:,.0f} vs {ratio.b:,.0f} req/s]  target >= 0.95  "
        f"{'PASS' if ratio.median >= 0.95 else 'FAIL'}"
    )
    print(
        f"CPU per request, with vs without    {cpu}  "
        f"[{cpu.a:.0f} vs {cpu.b:.0f} µs]  (lower is better; target <= 1.05)"
    )


def overhead(env: dict[str, str], keys: list[str], target: str, args: argparse.Namespace) -> None:
    """The original figures: rounds of bare Flask, then the app, then the app under a flood."""
    bare_runs, app_runs, flooded_runs, statuses = [], [], [], []
    for round_number in range(1, args.rounds + 1):
        process, port = start("bench.bare_app:app", env)
        load(port, keys, 2)  # warm up
        bare_runs.append(load(port, keys, args.seconds))
        stop(process)

        process, port = start("app:app", env)
        load(port, keys, 2)  # warm up: each key's one bcrypt check in this process
        app_runs.append(load(port, keys, args.seconds))
        stop_flood = threading.Event()
        flood = threading.Thread(
            target=invalid_key_flood, args=(port, target, 100, stop_flood, statuses)
        )
        flood.start()
        flooded_runs.append(load(port, keys, args.seconds))
        stop_flood.set()
        flood.join()
        stop(process)
        print(
            f"round {round_number}: bare {bare_runs[-1]:.0f} req/s, "
            f"discountflow {app_runs[-1]:.0f} req/s, "
            f"with 100 invalid req/s {flooded_runs[-1]:.0f} req/s",
            flush=True,
        )

    bare, authenticated, flooded = (
        statistics.median(r) for r in (bare_runs, app_runs, flooded_runs)
    )
    print(
        f"load generator: {'wrk' if shutil.which('wrk') else 'python'}; "
        f"{args.rounds} rounds of {args.seconds:.0f} s; medians below"
    )
    print(f"bare Flask baseline          {bare:8.0f} req/s")
    print(f"authenticated GET /v2/me     {authenticated:8.0f} req/s")
    print(f"ratio                        {authenticated / bare:8.2f}   (target >= 0.80)")
    print(f"under 100 invalid-key req/s  {flooded:8.0f} req/s")
    print(f"ratio to undisturbed         {flooded / authenticated:8.2f}   (target >= 0.80)")
    refused = {status: statuses.count(status) for status in sorted(set(statuses))}
    print(f"invalid-key responses by status: {refused}")


if __name__ == "__main__":
    main()
