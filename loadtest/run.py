"""Run DiscountFlow under load as the README deploys it, check what the clients saw, and report.

    python loadtest/run.py --profile one-box|scale-out --minutes N [--faults] [--users U]

``one-box``: SQLite in a temporary folder, rate limits in the process (``process://``, so
gunicorn runs one worker process with threads, never recycled unless
``--set GUNICORN_MAX_REQUESTS=…``), the
shipped ``gunicorn.conf.py`` started as the README starts it (``MALLOC_ARENA_MAX=2`` unless the
environment has its own), one webhook worker.

``scale-out``: a fresh PostgreSQL database (``loadtest_<timestamp>``, dropped afterwards) and a
dedicated Redis database (``--redis-db``, flushed before and after), each reached through a
``TcpProxy`` (``loadtest/proxy.py``) so faults can take them away; ``WEB_CONCURRENCY=4``; the
webhook worker beside it.

Both: ``flask --app app db upgrade``, a seed made with the app's own services
(``loadtest/seed.py``), webhook endpoints of some organizations pointing at a local receiver
(``WEBHOOK_ALLOW_PRIVATE=true``), Locust headless (``loadtest/locustfile.py``) for the run's
length, RSS and file descriptors of every worker sampled every 10 s, and with ``--faults`` the
faults of ``loadtest/faults.py`` while the load runs. Afterwards it waits for the webhook
outbox to drain, stops the service, reads the database directly and writes
``loadtest/reports/<timestamp>/``: ``report.md``, ``latency.png``, ``throughput.png``,
``memory.png``, Locust's CSV files, the clients' records and the service's logs.

It exits 0 when every check passed (skipped checks say why), 1 when one failed, 2 when it could
not run (PostgreSQL or Redis unreachable for ``scale-out``, the service did not start).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from loadtest import checks, faults  # noqa: E402
from loadtest.proxy import TcpProxy  # noqa: E402
from loadtest.receiver import Delivery, WebhookReceiver  # noqa: E402
from loadtest.records import read_records  # noqa: E402
from loadtest.report import RunReport, write_report  # noqa: E402
from loadtest.sampler import ProcessSampler, gunicorn_workers  # noqa: E402

BIN = Path(sys.executable).parent
FLASK = [str(BIN / "flask"), "--app", "app"]
OVER_BUDGET = "over-budget"  # the records' name of the key that exceeds its budget
PROFILES = ("one-box", "scale-out")
DEFAULT_USERS = {"one-box": 60, "scale-out": 80}
POSTGRES_URL = os.environ.get(
    "LOADTEST_POSTGRES_URL",
    os.environ.get("TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"),
)
REDIS_HOST = os.environ.get("LOADTEST_REDIS_HOST", "127.0.0.1")
REDIS_PORT = int(os.environ.get("LOADTEST_REDIS_PORT", "6379"))
WARMUP_SECONDS = 300.0
SAMPLE_SECONDS = 10.0
DRAIN_SECONDS = 180.0
# Settings the run controls; anything else of the service's comes from its defaults.
SERVICE_SETTINGS = (
    "DATABASE_URL",
    "RATELIMIT_STORAGE_URI",
    "WEB_CONCURRENCY",
    "GUNICORN_THREADS",
    "GUNICORN_MAX_REQUESTS",
    "GUNICORN_MAX_REQUESTS_JITTER",
    "API_RATE_LIMIT",
    "AUTH_FAILURE_LIMIT",
    "BCRYPT_ROUNDS",
    "SIGN_IN_LIMIT_PER_ADDRESS",
    "SIGN_IN_LIMIT_PER_ACCOUNT",
    "ACCESS_LOG",
    "TRUSTED_PROXY_COUNT",
    "TRUSTED_HOSTS",
    "SECRET_KEY",
    "DISCOUNTFLOW_ENV",
    "HOST",
    "PORT",
    "WEBHOOK_ALLOW_PRIVATE",
    "WEBHOOK_TIMEOUT_SECONDS",
    "WEBHOOK_POLL_SECONDS",
    "WEBHOOK_LEASE_SECONDS",
)
GUNICORN_SETTINGS = (
    "WEB_CONCURRENCY",
    "GUNICORN_THREADS",
    "GUNICORN_MAX_REQUESTS",
    "GUNICORN_MAX_REQUESTS_JITTER",
    "HOST",
    "PORT",
)
# What ``--set`` may change (the rest is the profile's, or the checks rely on it).
TUNABLE_SETTINGS = (
    "GUNICORN_THREADS",
    "GUNICORN_MAX_REQUESTS",
    "GUNICORN_MAX_REQUESTS_JITTER",
    "WEB_CONCURRENCY",
    "ACCESS_LOG",
    "BCRYPT_ROUNDS",
    "LAST_USED_RESOLUTION_SECONDS",
    "WEBHOOK_POLL_SECONDS",
)


class CannotRun(Exception):
    """The run could not start (exit code 2)."""


def say(message: str) -> None:
    print(f"[{datetime.now():%H:%M:%S}] {message}", flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- processes -----------------------------------------------------------------------------------


class Supervised:
    """A child process with its output in log files: started, stopped, killed on purpose —
    and, like systemd's ``Restart=always``, started again should it exit by itself (noted)."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], logs: Path) -> None:
        self.name = name
        self.command = command
        self.env = env
        self.logs = logs
        self.process: subprocess.Popen[bytes] | None = None
        self.unexpected_exits: list[str] = []
        self._files: list[IO[bytes]] = []
        self._lock = threading.Lock()
        self._down_on_purpose = False
        self._watching = threading.Event()

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def start(self) -> int:
        with self._lock:
            out = open(self.logs / f"{self.name}.out", "ab")  # closed in stop()
            err = open(self.logs / f"{self.name}.err", "ab")
            self._files += [out, err]
            self.process = subprocess.Popen(
                self.command, cwd=ROOT, env=self.env, stdout=out, stderr=err
            )
            self._down_on_purpose = False
            return self.process.pid

    def kill(self) -> int | None:
        """SIGKILL (a fault): not restarted by the watch until ``start`` is called."""
        with self._lock:
            self._down_on_purpose = True
            if self.process is None or self.process.poll() is not None:
                return None
            self.process.kill()
            self.process.wait(10)
            return self.process.pid

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM and wait (SIGKILL after ``timeout``); return the exit code."""
        self._watching.clear()
        with self._lock:
            self._down_on_purpose = True
            code = None
            if self.process is not None:
                if self.process.poll() is None:
                    self.process.send_signal(signal.SIGTERM)
                    try:
                        self.process.wait(timeout)
                    except subprocess.TimeoutExpired:
                        self.process.kill()
                        self.process.wait(10)
                code = self.process.returncode
            for handle in self._files:
                handle.close()
            self._files.clear()
            return code

    def watch(self, restart: bool = True) -> None:
        """In a thread: note (and restart) every exit that was not asked for."""
        self._watching.set()

        def loop() -> None:
            while self._watching.is_set():
                time.sleep(0.5)
                with self._lock:
                    process, on_purpose = self.process, self._down_on_purpose
                if process is None or on_purpose or process.poll() is None:
                    continue
                self.unexpected_exits.append(
                    f"{self.name} {process.pid} exited by itself with code {process.returncode} "
                    f"at {datetime.now():%H:%M:%S}"
                )
                say(self.unexpected_exits[-1])
                if restart and self._watching.is_set():
                    self.start()

        threading.Thread(target=loop, name=f"watch-{self.name}", daemon=True).start()


def stop_gunicorn(gunicorn: Supervised, patience: float = 10.0) -> tuple[int | None, list[str]]:
    """SIGTERM gunicorn as an operator would; a worker still busy ``patience`` seconds later
    (gunicorn would wait its 30 s graceful timeout for a request that never ends) gets SIGABRT,
    so that Python's fault handler (``PYTHONFAULTHANDLER=1``) writes every thread's stack to
    ``logs/gunicorn.err``. A worker still there half-way is also looked at with ``py-spy dump``
    (where installed), which leaves it running: its stacks are in ``logs/worker-<pid>.stacks``
    even should it exit before the SIGABRT. Return gunicorn's exit code and one line per such
    worker."""
    workers = [pid for _, pid in gunicorn_workers(gunicorn.pid or 0)]
    if gunicorn.process is not None and gunicorn.process.poll() is None:
        gunicorn.process.send_signal(signal.SIGTERM)
    started = time.monotonic()
    busy, looked_at = workers, False
    while busy and time.monotonic() - started < patience:
        time.sleep(0.1)
        busy = [pid for pid in busy if _alive(pid)]
        if busy and not looked_at and time.monotonic() - started >= patience / 2:
            looked_at = True
            for pid in busy:
                dump_stacks(pid, gunicorn.logs / f"worker-{pid}.stacks", started)
    stuck = []
    for pid in busy:
        stuck.append(
            f"gunicorn worker {pid} was still busy {patience:g} s after SIGTERM (a request "
            f"that does not end); its threads' stacks are in logs/gunicorn.err and "
            f"logs/worker-{pid}.stacks"
        )
        try:
            os.kill(pid, signal.SIGABRT)
        except OSError:
            pass
    return gunicorn.stop(), stuck


def dump_stacks(pid: int, path: Path, since: float) -> None:
    """Write a running process's Python stacks with ``py-spy dump``, if it is installed."""
    spy = shutil.which("py-spy", path=str(BIN)) or shutil.which("py-spy")
    if spy is None:
        path.write_text("py-spy is not installed (pip install py-spy): no stacks\n")
        return
    # Stacks only, no local variables: those would hold API keys and request bodies.
    try:
        dumped = subprocess.run(
            [spy, "dump", "--pid", str(pid)], capture_output=True, text=True, timeout=20
        )
        text = dumped.stdout + dumped.stderr
    except (OSError, subprocess.SubprocessError) as error:
        text = f"py-spy failed: {error!r}\n"
    path.write_text(
        f"{time.monotonic() - since:.1f} s after SIGTERM, py-spy dump --pid {pid}:\n{text}"
    )


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def wait_ready(port: int, process: Supervised, timeout: float = 60.0) -> None:
    """Until ``/readyz`` answers 200 (database and rate-limit storage answer)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.process is not None and process.process.poll() is not None:
            raise CannotRun(f"gunicorn exited with {process.process.returncode}; see its log")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise CannotRun(f"the service was not ready within {timeout:g} s")


# --- the profiles' backing services --------------------------------------------------------------


@dataclass
class Backing:
    """The database and rate-limit storage of a run, and how to clean them up."""

    database_url: str  # what the service uses (through the proxy on scale-out)
    direct_database_url: str  # what the run reads afterwards
    storage_uri: str
    database_proxy: TcpProxy | None = None
    redis_proxy: TcpProxy | None = None
    cleanups: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        for cleanup in reversed(self.cleanups):
            try:
                cleanup()
            except Exception as error:  # noqa: BLE001 - cleanup goes on
                say(f"cleanup failed: {error!r}")


def one_box(workdir: Path) -> Backing:
    url = f"sqlite:///{workdir / 'discountflow.sqlite'}"
    return Backing(url, url, "process://")


def scale_out(stamp: str, redis_db: int) -> Backing:
    """A new PostgreSQL database and a flushed Redis database, each behind a proxy."""
    import redis
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    admin_url = make_url(POSTGRES_URL)
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    name = f"loadtest_{stamp}_{secrets.token_hex(3)}"
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as error:  # noqa: BLE001 - any failure to connect means "not here"
        admin.dispose()
        raise CannotRun(f"PostgreSQL is not reachable at {POSTGRES_URL}: {error}") from error
    backing = Backing("", admin_url.set(database=name).render_as_string(False), "")

    def drop() -> None:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    backing.cleanups.append(drop)
    client = redis.Redis(REDIS_HOST, REDIS_PORT, db=redis_db, socket_connect_timeout=3)
    try:
        client.flushdb()
    except Exception as error:  # noqa: BLE001
        backing.close()
        raise CannotRun(f"Redis is not reachable at {REDIS_HOST}:{REDIS_PORT}: {error}") from error
    backing.cleanups.append(lambda: (client.flushdb(), client.close()))
    database_proxy = TcpProxy(admin_url.host or "127.0.0.1", admin_url.port or 5432).start()
    redis_proxy = TcpProxy(REDIS_HOST, REDIS_PORT).start()
    backing.cleanups += [database_proxy.close, redis_proxy.close]
    backing.database_proxy, backing.redis_proxy = database_proxy, redis_proxy
    backing.database_url = admin_url.set(
        host="127.0.0.1", port=database_proxy.port, database=name
    ).render_as_string(False)
    backing.storage_uri = f"redis://127.0.0.1:{redis_proxy.port}/{redis_db}"
    return backing


# --- reading the database afterwards -------------------------------------------------------------


def read_database(url: str, ids: list[str]) -> dict[str, Any]:
    """The approvals the clients were told about, the webhook deliveries, and soundness."""
    from sqlalchemy import bindparam, create_engine, text

    engine = create_engine(url)
    state: dict[str, Any] = {"approvals": {}, "deliveries": [], "pending_deliveries": 0}
    try:
        with engine.connect() as connection:
            query = text(
                "SELECT id, organization_id, status, title FROM approvals WHERE id IN :ids"
            ).bindparams(bindparam("ids", expanding=True))
            for first in range(0, len(ids), 500):
                for row in connection.execute(query, {"ids": ids[first : first + 500]}):
                    state["approvals"][row.id] = dict(row._mapping)
            for row in connection.execute(
                text(
                    "SELECT d.id, d.status, d.message_id, d.attempts, e.url FROM "
                    "webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id"
                )
            ):
                slug = row.url.rstrip("/").rsplit("/", 1)[-1]
                state["deliveries"].append(
                    {
                        "id": row.id,
                        "status": row.status,
                        "message_id": row.message_id,
                        "attempts": row.attempts,
                        "slug": slug,
                    }
                )
            state["claims_in_progress"] = [
                (row.key, row.work_committed_at is not None)
                for row in connection.execute(
                    text(
                        "SELECT key, work_committed_at FROM idempotency_keys "
                        "WHERE status_code IS NULL"
                    )
                )
            ]
            counts = {}
            for table in ("organizations", "approvals", "approval_line_items", "events"):
                counts[table] = connection.execute(text(f"SELECT count(*) FROM {table}")).scalar()
            state["counts"] = counts
            if url.startswith("sqlite"):
                state["integrity"] = [
                    row[0] for row in connection.execute(text("PRAGMA integrity_check"))
                ]
                state["foreign_keys"] = [
                    tuple(row) for row in connection.execute(text("PRAGMA foreign_key_check"))
                ]
            else:
                state["integrity"] = ["ok"]
                state["foreign_keys"] = orphans(connection)
    finally:
        engine.dispose()
    return state


# (child table, its column, the parent table): rows whose parent is gone.
PARENTS = [
    ("approvals", "organization_id", "organizations"),
    ("approval_line_items", "approval_id", "approvals"),
    ("approval_steps", "approval_id", "approvals"),
    ("approval_decisions", "approval_id", "approvals"),
    ("approval_line_items", "product_id", "products"),
    ("api_keys", "organization_id", "organizations"),
    ("webhook_deliveries", "message_id", "webhook_messages"),
    ("webhook_deliveries", "endpoint_id", "webhook_endpoints"),
]


def orphans(connection: Any) -> list[str]:
    """PostgreSQL enforces foreign keys itself; count rows without a parent anyway."""
    from sqlalchemy import text

    found = []
    for child, column, parent in PARENTS:
        count = connection.execute(
            text(
                f"SELECT count(*) FROM {child} c LEFT JOIN {parent} p ON p.id = c.{column} "
                f"WHERE c.{column} IS NOT NULL AND p.id IS NULL"
            )
        ).scalar()
        if count:
            found.append(f"{count} {child} without their {parent}")
    return found


def pending_deliveries(url: str) -> int:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return int(
                connection.execute(
                    text("SELECT count(*) FROM webhook_deliveries WHERE status = 'pending'")
                ).scalar()
                or 0
            )
    finally:
        engine.dispose()


def drain(url: str, timeout: float) -> tuple[int, float]:
    """Wait until no delivery is pending (or ``timeout``); return (pending, seconds waited)."""
    started = time.monotonic()
    while True:
        pending = pending_deliveries(url)
        if pending == 0 or time.monotonic() - started > timeout:
            return pending, time.monotonic() - started
        time.sleep(1.0)


# --- the run -------------------------------------------------------------------------------------


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=PROFILES, required=True)
    parser.add_argument("--minutes", type=float, default=2.0, help="length of the load")
    parser.add_argument("--seconds", type=float, help="length of the load (overrides --minutes)")
    parser.add_argument("--faults", action="store_true", help="inject faults during the load")
    parser.add_argument("--users", type=int, help="Locust users (default: per profile)")
    parser.add_argument("--spawn-rate", type=float, help="users started per second")
    parser.add_argument("--deciders", type=int, default=3, help="organizations with an approver")
    parser.add_argument(
        "--redis-db",
        type=int,
        default=13,
        help="scale-out: Redis db number, flushed before and after (13; the benchmarks use 14, "
        "the test suite 15)",
    )
    parser.add_argument("--report-dir", type=Path, help="default: loadtest/reports/<timestamp>")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a documented setting for the service, e.g. ACCESS_LOG=false (repeatable)",
    )
    args = parser.parse_args(argv)
    args.settings = {}
    for assignment in args.set:
        name, _, value = assignment.partition("=")
        if name not in TUNABLE_SETTINGS or not value:
            parser.error(f"--set takes NAME=VALUE with NAME one of {', '.join(TUNABLE_SETTINGS)}")
        args.settings[name] = value
    args.seconds = args.seconds if args.seconds is not None else args.minutes * 60
    if args.seconds < 20:
        parser.error("the load must last at least 20 s")
    if args.faults and args.seconds < faults.MINIMUM_SECONDS:
        parser.error(f"--faults needs a run of at least {faults.MINIMUM_SECONDS:g} s")
    args.users = args.users or DEFAULT_USERS[args.profile]
    args.spawn_rate = args.spawn_rate or max(1.0, args.users / 10)
    return args


def service_env(
    backing: Backing,
    profile: str,
    port: int,
    settings: dict[str, str] | None = None,
    metrics: Path | None = None,
) -> dict[str, str]:
    """The environment the service's processes get: the documented settings only (and one
    Prometheus folder that gunicorn and the webhook worker share, in the run's temporary
    folder)."""
    env = {k: v for k, v in os.environ.items() if k not in SERVICE_SETTINGS}
    # An empty setting is "unset" to the app, and the environment wins over a .env file: so a
    # developer's .env cannot change the run. (gunicorn.conf.py reads its own directly.)
    env.update({name: "" for name in SERVICE_SETTINGS if name not in GUNICORN_SETTINGS})
    env.update(
        {
            "DISCOUNTFLOW_ENV": "staging",
            "SECRET_KEY": secrets.token_hex(32),
            "DATABASE_URL": backing.database_url,
            "RATELIMIT_STORAGE_URI": backing.storage_uri,
            "HOST": "127.0.0.1",
            "PORT": str(port),
            "BCRYPT_ROUNDS": "4",
            "WEBHOOK_ALLOW_PRIVATE": "true",
            "WEBHOOK_TIMEOUT_SECONDS": "5",
            "WEBHOOK_LEASE_SECONDS": "10",
            "WEBHOOK_POLL_SECONDS": "1",
            "PYTHONUNBUFFERED": "1",
            "PYTHONFAULTHANDLER": "1",  # SIGABRT on a stuck worker dumps its threads' stacks
        }
    )
    if profile == "scale-out":
        env["WEB_CONCURRENCY"] = "4"
    env.update(settings or {})
    if metrics is not None:
        metrics.mkdir(mode=0o700, exist_ok=True)
        env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics)
    return env


def web_env(env: dict[str, str]) -> dict[str, str]:
    """The web process's environment as the README starts it: glibc's malloc with two arenas,
    unless the environment names its own number (glibc reads it once, as the process starts)."""
    return {**env, "MALLOC_ARENA_MAX": env.get("MALLOC_ARENA_MAX") or "2"}


RECYCLED = "Autorestarting worker after current request."  # gunicorn's line for max_requests


def recycles_in(log: Path) -> int:
    """How many times gunicorn's workers were replaced after ``max_requests``, from its log."""
    try:
        return log.read_text(errors="replace").count(RECYCLED)
    except FileNotFoundError:
        return 0


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    stamp = datetime.now().strftime("%Y%m%d_%H%M%S")
    folder = args.report_dir or ROOT / "loadtest" / "reports" / stamp
    folder.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(folder / "records", ignore_errors=True)  # only this run's clients count
    logs = folder / "logs"
    logs.mkdir(exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="discountflow-load-"))
    # SIGTERM (a CI timeout, ``timeout``) ends the run through its cleanups, like Ctrl-C.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        return run(args, stamp, folder, logs, workdir)
    except CannotRun as error:
        say(f"cannot run: {error}")
        return 2
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


def prepare(
    args: argparse.Namespace, env: dict[str, str], receiver_url: str, logs: Path, workdir: Path
) -> tuple[dict[str, Any], Path]:
    """``flask db upgrade`` and the seed, as the README runs them; return the manifest."""
    migrate = subprocess.run([*FLASK, "db", "upgrade"], cwd=ROOT, env=env, capture_output=True)
    (logs / "migrate.log").write_bytes(migrate.stdout + migrate.stderr)
    if migrate.returncode:
        raise CannotRun(f"flask db upgrade failed: {migrate.stderr.decode()[-500:]}")
    manifest_path = workdir / "manifest.json"  # keys: kept out of the report
    started = time.monotonic()
    command = [sys.executable, "-m", "loadtest.seed", "--manifest", str(manifest_path)]
    command += ["--organizations", str(max(40, args.users)), "--deciders", str(args.deciders)]
    # Enough approvals for each API approver (about 20 decisions a minute) to the end.
    command += ["--pending", str(int(20 + args.seconds / 60 * 30)), "--receiver", receiver_url]
    seeded = subprocess.run(command, cwd=ROOT, env=env, capture_output=True)
    (logs / "seed.log").write_bytes(seeded.stdout + seeded.stderr)
    if seeded.returncode:
        raise CannotRun(f"seeding failed: {seeded.stderr.decode()[-800:]}")
    manifest = json.loads(manifest_path.read_text())
    seconds = time.monotonic() - started
    say(f"seeded {len(manifest['organizations'])} organizations in {seconds:.1f} s")
    return manifest, manifest_path


def locust_command(args: argparse.Namespace, port: int, folder: Path, logs: Path) -> list[str]:
    """Locust, headless, for the run's length; its CSV files into the report folder."""
    return [
        str(BIN / "locust"),
        "-f",
        str(ROOT / "loadtest" / "locustfile.py"),
        "--headless",
        "--users",
        str(args.users),
        "--spawn-rate",
        f"{args.spawn_rate:g}",
        "--run-time",
        f"{args.seconds:.0f}s",
        "--host",
        f"http://127.0.0.1:{port}",
        "--csv",
        str(folder / "locust"),
        "--csv-full-history",
        "--only-summary",
        "--stop-timeout",
        "10",
        "--logfile",
        str(logs / "locust.log"),
    ]


@dataclass
class Load:
    """What happened while the load ran."""

    begin: float  # epoch seconds
    seconds: float
    locust_code: int | None
    events: list[faults.FaultEvent]
    planned_faults: int
    fault_errors: list[str]
    samples: list[checks.Sample]
    master_alive: bool
    worker_exits: list[str]
    pending: int  # deliveries still pending after the drain
    drained_in: float
    stuck_workers: list[str] = field(default_factory=list)  # busy long after SIGTERM
    recycles: int = 0  # gunicorn workers replaced after max_requests


def run(args: argparse.Namespace, stamp: str, folder: Path, logs: Path, workdir: Path) -> int:
    """Start, seed, load (and fault), drain, stop, judge, report; return the exit code."""
    say(f"{args.profile}: {args.seconds:.0f} s, {args.users} users, faults {args.faults}")
    backing = one_box(workdir) if args.profile == "one-box" else scale_out(stamp, args.redis_db)
    receiver = WebhookReceiver().start()
    gunicorn = worker = None
    sampler: ProcessSampler | None = None
    locust: subprocess.Popen[bytes] | None = None
    try:
        port = free_port()
        env = service_env(backing, args.profile, port, args.settings, workdir / "metrics")
        manifest, manifest_path = prepare(args, env, receiver.url, logs, workdir)
        receiver.secrets = {
            org["slug"]: org["webhook_secret"]
            for org in manifest["organizations"]
            if org["webhook_secret"]
        }
        gunicorn = Supervised(
            "gunicorn",
            [str(BIN / "gunicorn"), "-c", "gunicorn.conf.py", "app:app"],
            web_env(env),
            logs,
        )
        gunicorn.start()
        wait_ready(port, gunicorn)
        worker = Supervised("webhooks", [*FLASK, "webhooks", "work"], env, logs)
        worker.start()
        worker.watch(restart=True)  # as systemd's Restart=always would
        master = gunicorn.pid or 0
        webhook_worker = worker

        def processes() -> list[tuple[str, int]]:
            found = gunicorn_workers(master)
            if webhook_worker.pid is not None:
                found.append(("webhook-worker", webhook_worker.pid))
            return found

        time.sleep(1.0)  # let every worker boot before the first sample
        sampler = ProcessSampler(processes, SAMPLE_SECONDS)
        records = folder / "records"
        locust_env = {
            **os.environ,
            "LOADTEST_MANIFEST": str(manifest_path),
            "LOADTEST_RECORDS": str(records),
            "PYTHONPATH": str(ROOT),
        }
        targets = faults.Targets(
            gunicorn_master=master,
            database_proxy=backing.database_proxy,
            redis_proxy=backing.redis_proxy,
            webhook_worker=worker,
            receiver=receiver,
        )
        begin = time.time()
        sampler.start()
        with open(logs / "locust.out", "wb") as locust_out:
            locust = subprocess.Popen(
                locust_command(args, port, folder, logs),
                cwd=ROOT,
                env=locust_env,
                stdout=locust_out,
                stderr=subprocess.STDOUT,
            )
            injector = None
            if args.faults:
                plan = faults.plan_faults(args.seconds, faults.kinds_for(targets))
                injector = faults.FaultInjector(plan, targets, begin, log=say)
                injector.start()
            say(f"load running until {datetime.fromtimestamp(begin + args.seconds):%H:%M:%S}")
            locust_code = locust.wait(args.seconds + 120)
            events = injector.stop() if injector is not None else []
        load_seconds = time.time() - begin
        say(f"load done (Locust exit code {locust_code}); draining the webhook outbox")
        pending, waited = drain(backing.direct_database_url, DRAIN_SECONDS)
        time.sleep(1.0)  # the last answers reach the receiver's list
        samples = sampler.stop()
        sampler = None
        load = Load(
            begin=begin,
            seconds=load_seconds,
            locust_code=locust_code,
            events=events,
            planned_faults=len(faults.kinds_for(targets)) if args.faults else 0,
            fault_errors=injector.errors if injector is not None else [],
            samples=samples,
            master_alive=gunicorn.process is not None and gunicorn.process.poll() is None,
            worker_exits=list(worker.unexpected_exits),
            pending=pending,
            drained_in=waited,
        )
        worker.stop()
        gunicorn_code, load.stuck_workers = stop_gunicorn(gunicorn)
        load.recycles = recycles_in(logs / "gunicorn.err")
        say(f"service stopped (gunicorn exit code {gunicorn_code}); judging")

        observed = checks.Observations.of(read_records(records))
        ids = sorted({r["id"] for r in observed.created + observed.status_changes})
        state = read_database(backing.direct_database_url, ids)
        deliveries = receiver.snapshot()
        write_deliveries(folder / "webhooks-received.jsonl", deliveries)
        verdicts, outcomes, notes = judge(args, manifest, load, observed, state, deliveries)
        limit, window = parse_limit(manifest["api_rate_limit"])
        over_budget = [r for r in observed.requests if r.key == OVER_BUDGET]
        report = RunReport(
            title=f"DiscountFlow load run: {args.profile}, {args.seconds / 60:g} min"
            + (", with faults" if args.faults else ""),
            settings=settings_table(args, manifest, env, begin),
            begin=begin,
            seconds=load.seconds,
            requests=observed.requests,
            samples=samples,
            checks=verdicts,
            faults=load.events,
            fault_outcomes=outcomes,
            budget=checks.budget_windows(over_budget, window, begin + args.seconds),
            budget_limit=limit,
            notes=notes,
            files=[p.name for p in folder.glob("locust*.csv")]
            + ["records/", "logs/", "samples.json", "webhooks-received.jsonl"],
            warmup=WARMUP_SECONDS,
        )
        path = write_report(report, folder)
        (folder / "samples.json").write_text(json.dumps([s.__dict__ for s in samples], indent=0))
        for verdict in verdicts:
            say(f"{verdict.label}  {verdict.name}: {verdict.detail[:200]}")
        say(f"report: {path}")
        return 1 if any(v.failed for v in verdicts) else 0
    finally:
        cleanups: list[Callable[[], object]] = []
        if locust is not None and locust.poll() is None:
            cleanups += [locust.terminate, lambda: locust.wait(30)]
        if sampler is not None:
            cleanups.append(sampler.stop)
        cleanups += [process.stop for process in (worker, gunicorn) if process is not None]
        cleanups += [receiver.stop, backing.close]
        for cleanup in cleanups:  # each one, whatever the others do
            try:
                cleanup()
            except Exception as error:  # noqa: BLE001
                say(f"cleanup {cleanup!r} failed: {error!r}")


def write_deliveries(path: Path, deliveries: list[Delivery]) -> None:
    """What the webhook receiver got, one JSON line each."""
    with path.open("w", encoding="utf-8") as lines:
        for delivery in deliveries:
            lines.write(json.dumps({**delivery.__dict__, "slug": delivery.slug}) + "\n")


def judge(
    args: argparse.Namespace,
    manifest: dict[str, Any],
    load: Load,
    observed: checks.Observations,
    state: dict[str, Any],
    deliveries: list[Delivery],
) -> tuple[list[checks.Check], list[checks.FaultOutcome], list[str]]:
    """Every verdict of the run, what the clients saw around each fault, and notes."""
    events = load.events
    windows = [event.window for event in events]
    limit, window = parse_limit(manifest["api_rate_limit"])
    over_budget = [r for r in observed.requests if r.key == OVER_BUDGET]
    # One box: the only worker, killed or recycled, takes its process:// counts with it
    # (documented); its replacement counts afresh from when it started.
    resets = []
    if args.profile == "one-box":
        resets = [e.ended for e in events if e.kind == "worker_kill"]
        # A fresh worker answers nothing before its imports are done (seconds): a second
        # after it started, every answer of its predecessor has been sent.
        resets += sorted(
            {
                s.started + 1.0
                for s in load.samples
                if s.role == "gunicorn-worker" and s.started > load.begin
            }
        )
    recycled = {"gunicorn-worker"} if load.recycles else set()
    warmup = WARMUP_SECONDS if args.seconds >= 2 * WARMUP_SECONDS else args.seconds / 2
    received = {(d.slug, d.webhook_id) for d in deliveries}
    processes_up = load.master_alive and not load.worker_exits
    stopped = not load.stuck_workers
    verdicts = [
        checks.no_server_errors(observed.requests, windows),
        checks.client_expectations(observed.requests, windows),
        checks.keys_within_budget(observed.requests, OVER_BUDGET),
        checks.acknowledged_writes(observed, state["approvals"]),
        checks.idempotent_replays(observed.replays),
        checks.no_stuck_idempotency_keys(observed),
        checks.no_claims_in_progress(state["claims_in_progress"]),
        *checks.over_budget_key(over_budget, limit, window, resets),
        # Recycled web workers are judged as one slot across their processes (checks.py).
        checks.rss_growth(load.samples, load.begin, WARMUP_SECONDS, recycled=recycled),
        # The same for the anonymous part alone: where a leak shows. File-backed pages (a
        # memory-mapped SQLite database read as it grows) are the OS's cache, not a leak.
        checks.rss_growth(
            load.samples, load.begin, WARMUP_SECONDS, kind="anon_mb", recycled=recycled
        ),
        checks.fds_flat(
            load.samples,
            load.begin,
            warmup,
            load.begin + args.seconds + SAMPLE_SECONDS / 2,  # the samples under load
            socket_slack=args.users + 16,
        ),
        checks.webhooks_delivered(
            state["deliveries"], received, sum(1 for d in deliveries if not d.verified)
        ),
        checks.database_sound(state["integrity"], state["foreign_keys"]),
        checks.Check(
            "service processes stayed up",
            processes_up,
            "gunicorn's master served to the end; the webhook worker never exited by itself"
            if processes_up
            else "; ".join(
                ([] if load.master_alive else ["gunicorn's master was gone at the end"])
                + load.worker_exits
            ),
        ),
    ]
    verdicts.append(
        checks.Check(
            "gunicorn stopped promptly",
            stopped,
            "every worker exited within 10 s of SIGTERM (no request left hanging)"
            if stopped
            else "; ".join(load.stuck_workers),
        )
    )
    outcomes = [
        checks.observe_fault(
            observed.requests,
            event.started,
            event.ended,
            until=events[number + 1].started if number + 1 < len(events) else None,
        )
        for number, event in enumerate(events)
    ]
    for event, outcome in zip(events, outcomes, strict=True):
        if event.kind == "database":
            verdicts.append(checks.database_outage(observed.requests, event.started, event.ended))
        elif event.kind == "redis":
            verdicts.append(checks.redis_outage(observed.requests, event.started, event.ended))
        elif event.kind == "worker_kill":
            verdicts.append(
                checks.Check(
                    "worker killed: the service recovered",
                    outcome.recovery_seconds is not None and "no replacement" not in event.detail,
                    f"{event.detail}; first success {_seconds(outcome.recovery_seconds)} after",
                )
            )
    if args.faults:
        errors = f"; errors: {'; '.join(load.fault_errors)}" if load.fault_errors else ""
        verdicts.append(
            checks.Check(
                "every planned fault was injected",
                len(events) == load.planned_faults and not load.fault_errors,
                f"{len(events)} of {load.planned_faults}{errors}",
            )
        )
    notes = [
        f"Webhook outbox drained in {load.drained_in:.1f} s ({load.pending} still pending at "
        f"the end); {len(deliveries)} deliveries received for {len(state['deliveries'])} "
        "outbox rows (more received than rows: at-least-once retries).",
        f"Database rows afterwards: {state['counts']}.",
        f"Locust exit code {load.locust_code} (1 when any request failed, which faults cause).",
        "Requests as the clients judged them; fault windows allow their documented symptoms "
        f"for {checks.GRACE_SECONDS:g} s after each fault ends.",
    ]
    workers = {s.pid for s in load.samples if s.role == "gunicorn-worker"}
    notes.append(
        f"{len(workers)} gunicorn worker processes over the run; {load.recycles} replaced after "
        "max_requests (recycled), "
        f"{sum(1 for e in events if e.kind == 'worker_kill')} killed by a fault."
    )
    if resets:
        notes.append(
            "One box: a new worker (after the only one was killed or recycled) starts the "
            "in-process (process://) rate-limit counts afresh, as documented; the over-budget "
            "key is judged separately before and after each."
        )
    if observed.notes:
        notes.append(f"{len(observed.notes)} client notes, e.g. {observed.notes[0]}")
    return verdicts, outcomes, notes


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def parse_limit(text: str) -> tuple[int, float]:
    """``"500 per minute"`` → (500, 60.0), with the limits library the service uses."""
    from limits import parse as parse_limit_text

    item = parse_limit_text(text)
    return item.amount, float(item.get_expiry())


def settings_table(
    args: argparse.Namespace, manifest: dict[str, Any], env: dict[str, str], begin: float
) -> list[tuple[str, str]]:
    from importlib.metadata import version  # never import locust here: it monkey-patches

    shown = ("DATABASE_URL", "RATELIMIT_STORAGE_URI", "WEB_CONCURRENCY", "BCRYPT_ROUNDS")
    shown += ("GUNICORN_MAX_REQUESTS",)
    shown += tuple(name for name in args.settings if name not in shown)
    organizations = manifest["organizations"]
    return [
        ("Started", datetime.fromtimestamp(begin).isoformat(timespec="seconds")),
        ("Profile", args.profile),
        ("Load", f"{args.seconds:.0f} s, {args.users} users, {args.spawn_rate:g} started/s"),
        ("Faults", "yes" if args.faults else "no"),
        (
            "Organizations",
            f"{len(organizations)} ({sum(o['role'] == 'decider' for o in organizations)} with "
            f"an API approver, {sum(bool(o['webhook_secret']) for o in organizations)} with a "
            "webhook endpoint, 1 over-budget key)",
        ),
        ("Per-key limit", manifest["api_rate_limit"]),
        *[(name, env.get(name, "(default)")) for name in shown],
        ("GUNICORN_THREADS", env.get("GUNICORN_THREADS", "8 (default)")),
        ("MALLOC_ARENA_MAX (web process)", web_env(env)["MALLOC_ARENA_MAX"]),
        ("Webhooks", "timeout 5 s, lease 10 s, poll 1 s"),
        ("Machine", f"{os.cpu_count()} cores, {platform.platform()}"),
        ("Python / Locust", f"{platform.python_version()} / {version('locust')}"),
    ]


if __name__ == "__main__":
    sys.exit(main())
