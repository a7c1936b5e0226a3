"""How every benchmark here measures: two sides in short alternating rounds, a ratio per pair.

Each side is a server under the shipped ``gunicorn.conf.py`` (one worker process, 8 threads),
pinned to one core, loaded by ``wrk`` pinned to the other cores where the machine has two or
more (``os.sched_setaffinity``; the output says which it did). A round gives two figures: the
requests answered per second, and the **worker CPU a request** — the CPU seconds the gunicorn
worker process used during the round (user and system, read with psutil), over the requests
answered in it.

A figure is the **median of the per-pair ratios** (side A over side B, each pair measured back
to back, A then B, then B then A the next time), with its min–max, so a machine getting slower
or faster during the run moves both sides of a pair alike. Where it helps, the **in-process CPU
a request** (``time.process_time`` over many requests through the WSGI app, no network, each
side in a fresh process) is reported beside a figure: it moves far less on a busy machine.
"""

from __future__ import annotations

import http.client
import json
import math
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
from typing import TypeVar

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
T = TypeVar("T")


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


def _pinned(on_cores: set[int] | None):
    return (lambda: os.sched_setaffinity(0, on_cores)) if on_cores else None


# --- the server ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    """A gunicorn master process and the port it listens on."""

    process: subprocess.Popen
    port: int

    def cpu_seconds(self) -> float:
        """CPU seconds (user and system) used so far by the master's worker processes."""
        import psutil

        total = 0.0
        for worker in psutil.Process(self.process.pid).children():
            try:
                times = worker.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system
        return total


def serve(app_path: str, env: dict[str, str], on_cores: set[int] | None) -> Server:
    """Start ``app_path`` under the shipped gunicorn configuration, its output discarded."""
    port = free_port()
    process = subprocess.Popen(
        [str(BIN / "gunicorn"), "-c", "gunicorn.conf.py", "-b", f"127.0.0.1:{port}", app_path],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=_pinned(on_cores),
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and process.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return Server(process, port)
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit(f"{app_path} did not start (run it by hand to see why)")


def stop(server: Server) -> None:
    server.process.terminate()
    server.process.wait(10)


@dataclass(frozen=True)
class Request:
    """One kind of request a side sends: method, path and (for POST) a JSON body."""

    method: str
    path: str
    body: str = ""


def send(port: int, key: str, request: Request) -> tuple[int, bytes]:
    """Send one request with the key; return its status and body."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Authorization": f"Bearer {key}"}
    if request.body:
        headers["Content-Type"] = "application/json"
    try:
        connection.request(request.method, request.path, body=request.body or None, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def warm(port: int, keys: list[str], request: Request) -> list[bytes]:
    """Send each key once (each key's first check is done before anything is timed); return
    the bodies. Anything but a 2xx ends the run."""
    bodies = []
    for key in keys:
        status, body = send(port, key, request)
        if status >= 300:
            raise SystemExit(f"{request.method} {request.path}: {status} {body[:500]!r}")
        bodies.append(body)
    return bodies


def keys_needed(load_seconds: float, ceiling: int = 6000, per_key: int = 800) -> int:
    """Enough keys, taken in turn, that none passes ``per_key`` requests in any minute while a
    server answers ``ceiling`` a second for ``load_seconds`` in all — far under the documented
    1,000 a minute, however fast the server: the limit is counted on every request, never
    reached (a 429 would end the run)."""
    return max(40, math.ceil(ceiling * min(60.0, load_seconds) / per_key))


# --- a round of load -----------------------------------------------------------------------------

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
class Round:
    """What one side did in one round: requests answered, in how long, and the worker's CPU."""

    requests: int
    seconds: float
    cpu_seconds: float

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds

    @property
    def cpu_us(self) -> float:
        """Microseconds of worker CPU a request (infinite when none was answered)."""
        return self.cpu_seconds / self.requests * 1e6 if self.requests else math.inf


_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_wrk(out: str) -> tuple[int, float]:
    """The requests wrk counted and the seconds they took, from its report."""
    found = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m|h),", out)
    if not found:
        raise SystemExit(f"wrk's report is not understood:\n{out}")
    return int(found.group(1)), float(found.group(2)) * _UNITS[found.group(3)]


def measure(
    server: Server,
    keys: list[str],
    request: Request,
    seconds: float,
    on_cores: set[int] | None,
    connections: int = 16,
) -> Round:
    """One round of ``wrk`` against the server, the keys taken in turn (any non-2xx ends the
    run), with the CPU its worker used meanwhile."""
    before = server.cpu_seconds()
    out = run_wrk(
        server.port,
        WRK_SCRIPT,
        {"BENCH_KEYS_FILE": "\n".join(keys) + "\n"},
        {"BENCH_METHOD": request.method, "BENCH_PATH": request.path, "BENCH_BODY": request.body},
        seconds,
        on_cores,
        connections,
        f"{request.method} {request.path}",
    )
    cpu = server.cpu_seconds() - before
    return Round(*parse_wrk(out), cpu)


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
            preexec_fn=_pinned(on_cores),
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


def alternate(side_a: Callable[[], T], side_b: Callable[[], T], pairs: int) -> list[tuple[T, T]]:
    """Measure A and B in alternating order (A B, B A, A B …); return each pair as (A, B)."""
    results = []
    for number in range(pairs):
        if number % 2 == 0:
            a, b = side_a(), side_b()
        else:
            b, a = side_b(), side_a()
        results.append((a, b))
    return results


def ratio(pairs: list[tuple[T, T]], value: Callable[[T], float] = float) -> Ratio:
    """The median of the per-pair ratios of ``value`` (A over B), with each side's median."""
    a_values = [value(a) for a, _ in pairs]
    b_values = [value(b) for _, b in pairs]
    # A side that answered nothing in a round (a server stalled) makes a ratio of 0 or ∞.
    ratios = [a / b if b else math.inf for a, b in zip(a_values, b_values, strict=True)]
    return Ratio(
        statistics.median(ratios),
        min(ratios),
        max(ratios),
        statistics.median(a_values),
        statistics.median(b_values),
        len(ratios),
    )


def paired(side_a: Callable[[], float], side_b: Callable[[], float], pairs: int) -> Ratio:
    """Measure A and B in alternating pairs; return the ratio A/B."""
    return ratio(alternate(side_a, side_b, pairs))


# --- in-process CPU a request --------------------------------------------------------------------

CPU_SCRIPT = """
import json, sys, time
sys.path.insert(0, {root!r})
from {module} import {factory} as factory
client = factory().test_client()
request = json.loads(sys.argv[1])
keys = json.loads(sys.argv[2])
count, result = int(sys.argv[3]), sys.argv[4]

def send(n):
    headers = {{"Authorization": "Bearer " + keys[n % len(keys)]}}
    response = client.open(request["path"], method=request["method"], headers=headers,
                           data=request["body"] or None,
                           content_type="application/json" if request["body"] else None)
    assert response.status_code < 300, (response.status_code, response.get_data(as_text=True)[:300])

for n in range(len(keys)):  # warm: every key checked once, every path run
    send(n)
started = time.process_time()
for n in range(count):
    send(n)
with open(result, "w") as out:
    out.write(str((time.process_time() - started) / count * 1e6))
"""


def cpu_in_process(
    app: str,
    env: dict[str, str],
    keys: list[str],
    request: Request,
    count: int,
    on_cores: set[int] | None,
) -> float:
    """Microseconds of CPU a request through the WSGI app ``module:factory``, in a fresh
    process (its logging as the app sets it up, to a discarded stdout)."""
    module, factory = app.split(":")
    with tempfile.TemporaryDirectory(prefix="discountflow-cpu-") as folder:
        result = Path(folder) / "us"
        out = subprocess.run(
            [
                sys.executable,
                "-c",
                CPU_SCRIPT.format(root=str(ROOT), module=module, factory=factory),
                json.dumps(request.__dict__),
                json.dumps(keys),
                str(count),
                str(result),
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=_pinned(on_cores),
        )
        if out.returncode:
            raise SystemExit(out.stderr[-2000:])
        return float(result.read_text())


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
    was skipped, or what else was measured)."""

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
            judged += "  (CPU a request: lower is better)"
        note = f"\n  {self.note}" if self.note else ""
        return f"{name}: {ratio}  {sides}  {judged}{note}"


def skipped(reason: str, target: Target | None = None, unit: str = "req/s") -> Figure:
    return Figure(None, target, unit, reason)


def throughput_and_cpu(
    rounds: list[tuple[Round, Round]], targets: tuple[Target | None, Target | None]
) -> tuple[Figure, Figure]:
    """From the same rounds: requests a second A/B, and worker CPU a request A/B."""
    return (
        Figure(ratio(rounds, lambda r: r.per_second), targets[0]),
        Figure(ratio(rounds, lambda r: r.cpu_us), targets[1], unit="µs"),
    )


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
    """Print each figure on its line, and write them as JSON for ``bench/run_all.py`` (when
    given a path)."""
    for name, figure in figures.items():
        print(figure.line(name), flush=True)
    if not path:
        return
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
    """Keep the services' INFO logging (a line per organization or key made) out of the output;
    servers and CPU processes are other processes and log as shipped."""
    import logging

    logging.disable(logging.INFO)
