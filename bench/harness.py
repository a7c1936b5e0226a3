"""How every benchmark here measures: two sides in short alternating rounds, a ratio per pair.

A figure is the **median of the per-pair ratios** (side A's throughput over side B's, each pair
measured back to back, A then B, then B then A the next time), with its min–max, so a machine
getting slower or faster during the run moves both sides of a pair alike. The server and the
load generator are pinned to separate cores where the machine has two or more
(``os.sched_setaffinity``; the output says which it did). Beside throughput, the
**in-process CPU cost per request** (``time.process_time`` over many requests through the WSGI
app, no network) is the steadiest figure there is: it is measured the same way, in pairs.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


# --- cores ---------------------------------------------------------------------------------------


def cores() -> tuple[set[int] | None, set[int] | None, str]:
    """The cores for the server and for the load generator, and a sentence saying so."""
    try:
        available = sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return None, None, "not pinned (no sched_setaffinity here)"
    if len(available) < 2:
        return None, None, "not pinned (one core)"
    server, load = {available[0]}, set(available[1:])
    return server, load, f"server pinned to core {available[0]}, load to {sorted(load)}"


# --- the server ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve(app_path: str, env: dict[str, str], on_cores: set[int] | None) -> tuple:
    """Start ``app_path`` under the shipped gunicorn configuration; return (process, port)."""
    port = free_port()
    process = subprocess.Popen(
        [str(BIN / "gunicorn"), "-c", "gunicorn.conf.py", "-b", f"127.0.0.1:{port}", app_path],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=(lambda: os.sched_setaffinity(0, on_cores)) if on_cores else None,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process, port
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit(f"{app_path} did not start")


def warm(port: int, keys: list[str], request: Request) -> None:
    """Send each key once, so each key's one bcrypt check is done before anything is timed."""
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    for key in keys:
        headers = {"Authorization": f"Bearer {key}"}
        if request.body:
            headers["Content-Type"] = "application/json"
        connection.request(request.method, request.path, body=request.body or None, headers=headers)
        response = connection.getresponse()
        response.read()
        if response.status >= 300:
            raise SystemExit(f"{request.method} {request.path}: {response.status}")
    connection.close()


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    process.wait(10)


# --- the load ------------------------------------------------------------------------------------

WRK_SCRIPT = """
local keys = {}
for line in io.lines(os.getenv("BENCH_KEYS_FILE")) do keys[#keys + 1] = line end
local method, path = os.getenv("BENCH_METHOD"), os.getenv("BENCH_PATH")
local body = os.getenv("BENCH_BODY")
local n = 0
request = function()
  n = n + 1
  local headers = {["Authorization"] = "Bearer " .. keys[(n % #keys) + 1]}
  if body ~= "" then
    headers["Content-Type"] = "application/json"
    return wrk.format(method, path, headers, body)
  end
  return wrk.format(method, path, headers)
end
"""


@dataclass(frozen=True)
class Request:
    """One kind of request a side sends: method, path and (for POST) a JSON body."""

    method: str
    path: str
    body: str = ""


def throughput(
    port: int,
    keys: list[str],
    request: Request,
    seconds: float,
    on_cores: set[int] | None,
    connections: int = 16,
) -> float:
    """Requests per second with ``wrk``, the keys taken in turn; any non-2xx ends the run."""
    out = run_wrk(
        port,
        WRK_SCRIPT,
        {"BENCH_KEYS_FILE": "\n".join(keys) + "\n"},
        {"BENCH_METHOD": request.method, "BENCH_PATH": request.path, "BENCH_BODY": request.body},
        seconds,
        on_cores,
        connections,
        f"{request.method} {request.path}",
    )
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


def run_wrk(
    port: int,
    script: str,
    files: dict[str, str],
    env: dict[str, str],
    seconds: float,
    on_cores: set[int] | None,
    connections: int,
    what: str,
) -> str:
    """Run ``wrk`` with a Lua script against the port; ``files`` are written to a temporary
    folder and their paths passed in the environment variables they are named by. Returns
    wrk's report; any non-2xx or socket error ends the run."""
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed (apt-get install wrk)")
    workdir = Path(tempfile.mkdtemp(prefix="discountflow-wrk-"))
    try:
        paths = {}
        for name, text in files.items():
            path = workdir / name.lower()
            path.write_text(text)
            paths[name] = str(path)
        (workdir / "load.lua").write_text(script)
        command = ["wrk", "-t1", f"-c{connections}", "--timeout", "10s"]
        command += [f"-d{max(1, round(seconds))}s", "-s", str(workdir / "load.lua")]
        out = subprocess.run(
            [*command, f"http://127.0.0.1:{port}"],
            capture_output=True,
            text=True,
            check=True,
            preexec_fn=(lambda: os.sched_setaffinity(0, on_cores)) if on_cores else None,
            env={**os.environ, **paths, **env},
        ).stdout
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if "Non-2xx" in out or "Socket errors" in out:
        raise SystemExit(f"{what}: errors during the run:\n{out}")
    return out


# --- pairs ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ratio:
    """The median of per-pair ratios A/B, its spread, and each side's median."""

    median: float
    low: float
    high: float
    a: float
    b: float
    pairs: int

    def __str__(self) -> str:
        return f"{self.median:.2f} (min {self.low:.2f}, max {self.high:.2f}, {self.pairs} pairs)"


def paired(side_a: Callable[[], float], side_b: Callable[[], float], pairs: int) -> Ratio:
    """Measure A and B in alternating order (A B, B A, A B …); return the ratio A/B."""
    ratios, a_values, b_values = [], [], []
    for number in range(pairs):
        if number % 2 == 0:
            a, b = side_a(), side_b()
        else:
            b, a = side_b(), side_a()
        ratios.append(a / b)
        a_values.append(a)
        b_values.append(b)
    return Ratio(
        statistics.median(ratios),
        min(ratios),
        max(ratios),
        statistics.median(a_values),
        statistics.median(b_values),
        pairs,
    )


# --- in-process CPU per request ------------------------------------------------------------------

CPU_SCRIPT = """
import json, sys, time
sys.path.insert(0, {root!r})
from {module} import {factory} as factory
client = factory().test_client()
requests = json.loads(sys.argv[1])
keys = json.loads(sys.argv[2])
count, pairs = int(sys.argv[3]), int(sys.argv[4])

def send(request, n):
    headers = {{"Authorization": "Bearer " + keys[n % len(keys)]}}
    if request["body"]:
        response = client.post(request["path"], data=request["body"], headers=headers,
                               content_type="application/json")
    else:
        response = client.open(request["path"], method=request["method"], headers=headers)
    assert response.status_code < 300, (response.status_code, response.get_data(as_text=True)[:300])

def cost(request):
    started = time.process_time()
    for n in range(count):
        send(request, n)
    return (time.process_time() - started) / count * 1e6

for request in requests:  # warm: every key verified once, every path compiled
    for n in range(len(keys)):
        send(request, n)
results = [[] for _ in requests]
for number in range(pairs):
    order = list(range(len(requests)))
    if number % 2:
        order.reverse()
    for index in order:
        results[index].append(cost(requests[index]))
print(json.dumps(results))
"""


def cpu_per_request(
    env: dict[str, str],
    keys: list[str],
    requests: list[Request],
    count: int = 2000,
    pairs: int = 7,
    app: tuple[str, str] = ("discountflow", "create_app"),
    on_cores: set[int] | None = None,
) -> list[list[float]]:
    """Microseconds of CPU per request for each request, ``pairs`` alternating runs each."""
    import json

    module, factory = app
    script = CPU_SCRIPT.format(root=str(ROOT), module=module, factory=factory)
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            script,
            json.dumps([request.__dict__ for request in requests]),
            json.dumps(keys),
            str(count),
            str(pairs),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        preexec_fn=(lambda: os.sched_setaffinity(0, on_cores)) if on_cores else None,
    )
    if out.returncode:
        raise SystemExit(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def cpu_ratio(costs_a: list[float], costs_b: list[float]) -> Ratio:
    """The median of per-pair CPU ratios A/B (a cost: lower is better)."""
    ratios = [a / b for a, b in zip(costs_a, costs_b, strict=True)]
    return Ratio(
        statistics.median(ratios),
        min(ratios),
        max(ratios),
        statistics.median(costs_a),
        statistics.median(costs_b),
        len(ratios),
    )


@dataclass(frozen=True)
class CpuSide:
    """One side of a CPU pair: the environment its process starts with, the request it sends
    ``count`` times, and whether it is the bare baseline (``bench/bare_app.py``)."""

    env: dict[str, str]
    request: Request
    bare: bool = False
    count: int = 2000


def cpu_paired(
    side_a: CpuSide, side_b: CpuSide, keys: list[str], pairs: int, on_cores: set[int] | None
) -> Ratio:
    """CPU per request of two apps (or two settings), each run in a fresh process, the
    processes alternating A B, B A … as ``paired`` does; the ratio A/B (lower is better)."""

    def cost(side: CpuSide) -> float:
        app = ("bench.bare_app", "create_app") if side.bare else ("discountflow", "create_app")
        return cpu_per_request(side.env, keys, [side.request], side.count, 1, app, on_cores)[0][0]

    return paired(lambda: cost(side_a), lambda: cost(side_b), pairs)


# --- figures and their targets -------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """What a figure must reach: at least ``value`` (a throughput ratio) or at most (a cost)."""

    value: float
    at_least: bool = True

    def met(self, figure: float) -> bool:
        return figure >= self.value if self.at_least else figure <= self.value

    def __str__(self) -> str:
        return f"{'>=' if self.at_least else '<='} {self.value:.2f}"


@dataclass(frozen=True)
class Figure:
    """One figure a benchmark reports: its ratio (``None`` when skipped), its target (``None``:
    reported beside the targets, not judged), the unit of each side's median, and a note (why it
    was skipped, or what it measured)."""

    ratio: Ratio | None
    target: Target | None = None
    unit: str = "req/s"
    note: str = ""

    @property
    def verdict(self) -> str:
        if self.ratio is None:
            return "SKIP"
        if self.target is None:
            return "INFO"
        return "PASS" if self.target.met(self.ratio.median) else "FAIL"

    def line(self, name: str) -> str:
        """The figure on one line, as every benchmark prints it."""
        if self.ratio is None:
            return f"{name}: SKIP ({self.note})"
        ratio, unit = self.ratio, self.unit
        sides = f"[{ratio.a:,.0f} vs {ratio.b:,.0f} {unit}]"
        judged = f"target {self.target}  {self.verdict}" if self.target else "(no target)"
        if unit == "µs":
            judged += "  (CPU per request: lower is better)"
        note = f"\n  {self.note}" if self.note else ""
        return f"{name}: {ratio}  {sides}  {judged}{note}"


def skipped(reason: str, target: Target | None = None, unit: str = "req/s") -> Figure:
    return Figure(None, target, unit, reason)


SECONDS, PAIRS = 3.0, 7  # every benchmark's defaults: seconds per side in each pair, pairs


def arguments(parser, seconds: float = SECONDS, pairs: int = PAIRS) -> None:
    """The options every benchmark takes: seconds per side per pair, pairs, a JSON report."""
    parser.add_argument(
        "--seconds", type=float, default=seconds, help="seconds per side in each pair"
    )
    parser.add_argument("--pairs", type=int, default=pairs, help="alternating pairs per figure")
    parser.add_argument(
        "--json", metavar="PATH", help="also write the figures to PATH (bench/run_all.py)"
    )


def save(path: str | None, figures: dict[str, Figure], pinning: str) -> None:
    """Write the figures as JSON for ``bench/run_all.py`` (nothing without a path)."""
    if not path:
        return
    import json

    rows = []
    for name, figure in figures.items():
        rows.append(
            {
                "name": name,
                "ratio": figure.ratio.__dict__ if figure.ratio else None,
                "target": figure.target.__dict__ if figure.target else None,
                "unit": figure.unit,
                "note": figure.note,
                "verdict": figure.verdict,
            }
        )
    Path(path).write_text(json.dumps({"pinning": pinning, "figures": rows}, indent=2))


def load_figures(path: str | Path) -> tuple[dict[str, Figure], str]:
    """Read what ``save`` wrote."""
    import json

    data = json.loads(Path(path).read_text())
    figures = {}
    for row in data["figures"]:
        figures[row["name"]] = Figure(
            Ratio(**row["ratio"]) if row["ratio"] else None,
            Target(**row["target"]) if row["target"] else None,
            row["unit"],
            row["note"],
        )
    return figures, data["pinning"]


def quiet() -> None:
    """Keep the services' INFO logging (one line per organization seeded) out of the output;
    servers and CPU processes are other processes and log as shipped."""
    import logging

    logging.disable(logging.INFO)


# --- PostgreSQL and Redis ------------------------------------------------------------------------

POSTGRES = os.environ.get("BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")


def unreachable() -> str | None:
    """Why PostgreSQL (``BENCH_POSTGRES_URL``) or Redis (``BENCH_REDIS_URL``) cannot be used,
    or ``None`` when both answer."""
    try:
        import redis

        redis.Redis.from_url(REDIS, socket_connect_timeout=2, socket_timeout=2).ping()
    except Exception as error:  # any failure means: skip the figure
        return f"Redis at {REDIS} unreachable: {type(error).__name__}"
    try:
        from sqlalchemy import create_engine, text

        engine = create_engine(POSTGRES, connect_args={"connect_timeout": 2})
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as error:
        return f"PostgreSQL at {POSTGRES} unreachable: {type(error).__name__}"
    return None


class ScratchPostgres:
    """A database of its own on the PostgreSQL server, dropped on exit; Redis's bench database
    flushed on entry and exit."""

    def __enter__(self) -> str:
        import secrets

        import redis
        from sqlalchemy import create_engine, text
        from sqlalchemy.engine import make_url

        redis.Redis.from_url(REDIS).flushdb()
        base = make_url(POSTGRES)
        self.name = f"discountflow_bench_{secrets.token_hex(4)}"
        self.admin = create_engine(base, isolation_level="AUTOCOMMIT")
        with self.admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{self.name}"'))
        return base.set(database=self.name).render_as_string(hide_password=False)

    def __exit__(self, *exc) -> None:
        import redis
        from sqlalchemy import text

        with self.admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
        self.admin.dispose()
        redis.Redis.from_url(REDIS).flushdb()
