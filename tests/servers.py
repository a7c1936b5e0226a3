"""The real PostgreSQL and Redis servers the scale-out tests need.

Locally a test that needs one skips when it does not answer; under ``CI`` it fails instead.
``TEST_POSTGRES_URL`` (default ``postgresql+psycopg://postgres@127.0.0.1:5432/test``) and
``TEST_REDIS_URL`` (default ``redis://127.0.0.1:6379/15``) say where they are; under
pytest-xdist each worker takes its own Redis database, counting down from that one.
"""

from __future__ import annotations

import os
import secrets
from contextlib import contextmanager

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

POSTGRES_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def _redis_url_of_this_worker(url: str) -> str:
    """Each pytest-xdist worker its own Redis database, as the tests flush theirs: the first
    (or only) process the one configured, the next worker the one below it, and so on."""
    from urllib.parse import urlsplit, urlunsplit

    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
    if worker == 0:
        return url
    parts = urlsplit(url)
    database = int(parts.path.strip("/") or 0) - worker
    if database < 0:
        raise pytest.UsageError(f"TEST_REDIS_URL {url}: no Redis database left for worker {worker}")
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, parts.fragment))


REDIS_URL = _redis_url_of_this_worker(os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15"))


def unavailable(what: str, error: Exception) -> None:
    message = f"{what} is not reachable: {error}"
    if os.environ.get("CI"):
        pytest.fail(f"CI requires it: {message}")
    pytest.skip(message)


def require_postgres() -> str:
    engine = create_engine(POSTGRES_URL)
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as error:  # noqa: BLE001 - any failure to connect means "not here"
        unavailable("PostgreSQL", error)
    finally:
        engine.dispose()
    return POSTGRES_URL


@contextmanager
def fresh_postgres_database():
    """A new, empty PostgreSQL database for one test; dropped afterwards."""
    base = make_url(require_postgres())
    name = f"discountflow_{secrets.token_hex(6)}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def require_redis() -> str:
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except Exception as error:  # noqa: BLE001
        unavailable("Redis", error)
    finally:
        client.close()
    return REDIS_URL


def database_url(name: str) -> str:
    """The URL of the database ``name`` on the test server."""
    return make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)


def create_database(name: str, template: str | None = None) -> str:
    """A new database ``name``, empty or a copy of the database ``template`` (which nothing may
    be connected to); one of that name left by an interrupted run is dropped first. Returns
    its URL."""
    base = make_url(require_postgres())
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    copy = f' TEMPLATE "{template}"' if template else ""
    try:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            connection.execute(text(f'CREATE DATABASE "{name}"{copy}'))
    finally:
        admin.dispose()
    return database_url(name)


def drop_database(url: str) -> None:
    target = make_url(url)
    admin = create_engine(make_url(POSTGRES_URL), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{target.database}" WITH (FORCE)'))
    finally:
        admin.dispose()


# Everything a test could change in its database besides the rows of its tables: the schema
# (tables, columns, indexes, constraints, types, functions, triggers, schemas, extensions),
# the database's own settings, prepared transactions and large objects. A database whose
# digest is the template's holds nothing of a test but rows.
DIGEST = """
WITH namespaces AS (
    SELECT oid, nspname FROM pg_namespace
    WHERE nspname NOT IN ('pg_catalog', 'information_schema')
      AND nspname NOT LIKE 'pg\\_toast%' AND nspname NOT LIKE 'pg\\_temp%'
)
SELECT md5(coalesce(string_agg(part, E'\\n' ORDER BY part), '')) FROM (
    SELECT 'n ' || nspname FROM namespaces
    UNION ALL SELECT format('r %s.%s %s', n.nspname, c.relname, c.relkind)
        FROM pg_class c JOIN namespaces n ON n.oid = c.relnamespace
    UNION ALL SELECT format('a %s.%s %s %s %s', n.nspname, c.relname, a.attname,
                            format_type(a.atttypid, a.atttypmod), a.attnotnull)
        FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
        JOIN namespaces n ON n.oid = c.relnamespace
        WHERE a.attnum > 0 AND NOT a.attisdropped
    UNION ALL SELECT 'd ' || pg_get_expr(d.adbin, d.adrelid) FROM pg_attrdef d
        JOIN pg_class c ON c.oid = d.adrelid JOIN namespaces n ON n.oid = c.relnamespace
    UNION ALL SELECT 'i ' || pg_get_indexdef(i.indexrelid) FROM pg_index i
        JOIN pg_class c ON c.oid = i.indexrelid JOIN namespaces n ON n.oid = c.relnamespace
    UNION ALL SELECT format('k %s %s', conname, pg_get_constraintdef(k.oid)) FROM pg_constraint k
        JOIN namespaces n ON n.oid = k.connamespace
    UNION ALL SELECT format('t %s.%s %s', n.nspname, t.typname, t.typtype) FROM pg_type t
        JOIN namespaces n ON n.oid = t.typnamespace
    UNION ALL SELECT format('e %s %s', enumtypid, enumlabel) FROM pg_enum
    UNION ALL SELECT 'p ' || p.oid::regprocedure::text FROM pg_proc p
        JOIN namespaces n ON n.oid = p.pronamespace
    UNION ALL SELECT 'g ' || tgname FROM pg_trigger WHERE NOT tgisinternal
    UNION ALL SELECT 'w ' || rulename FROM pg_rewrite w
        JOIN pg_class c ON c.oid = w.ev_class JOIN namespaces n ON n.oid = c.relnamespace
    UNION ALL SELECT 'x ' || extname FROM pg_extension
    UNION ALL SELECT 's ' || array_to_string(setconfig, ' ') FROM pg_db_role_setting
        WHERE setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database())
    UNION ALL SELECT 'q ' || gid FROM pg_prepared_xacts WHERE database = current_database()
    UNION ALL SELECT 'l ' || count(*) FROM pg_largeobject_metadata
) AS parts(part)
"""
TABLES = """
SELECT format('%I.%I', schemaname, tablename) FROM pg_tables
WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1
"""
SEQUENCES = """
SELECT format('%I.%I', schemaname, sequencename), last_value FROM pg_sequences
WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1
"""


def _connect(url: str):
    """A psycopg connection (autocommit) to the database at a SQLAlchemy URL."""
    import psycopg

    conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    return psycopg.connect(conninfo, autocommit=True)


class Contents:
    """What a database holds, read once: its digest (see ``DIGEST``), and the rows of each
    table and the value of each sequence, to put back into another database of that digest."""

    def __init__(self, url: str) -> None:
        with _connect(url) as connection:
            self.digest = connection.execute(DIGEST).fetchone()[0]
            self.tables = [name for (name,) in connection.execute(TABLES)]
            self.sequences = connection.execute(SEQUENCES).fetchall()
            self.rows: dict[str, bytes] = {}
            for table in self.tables:
                with connection.cursor().copy(f"COPY {table} TO STDOUT") as copy:
                    rows = b"".join(bytes(block) for block in copy)
                if rows:
                    self.rows[table] = rows

    def restore(self, url: str) -> bool:
        """Make the database at ``url`` hold exactly these rows and sequence values, unless
        it differs in anything but those: then leave it and return False."""
        with _connect(url) as connection:
            if connection.execute(DIGEST).fetchone()[0] != self.digest:
                return False
            with connection.transaction():
                # Foreign keys are checked by triggers: a replica's rows arrive checked, so
                # the tables can be emptied and filled in any order.
                connection.execute("SET LOCAL session_replication_role = replica")
                # A test database outlives no crash of the server: no wait for the disk.
                connection.execute("SET LOCAL synchronous_commit = off")
                for table in self.tables:
                    connection.execute(f"DELETE FROM {table}")
                for table, rows in self.rows.items():
                    with connection.cursor().copy(f"COPY {table} FROM STDIN") as copy:
                        copy.write(rows)
                for sequence, value in self.sequences:
                    if value is None:  # never used
                        connection.execute(f"ALTER SEQUENCE {sequence} RESTART")
                    else:
                        connection.execute("SELECT setval(%s, %s)", (sequence, value))
        return True


_admin = None


def _administration():
    """One connection to the server's own database per process, for ALTER DATABASE."""
    global _admin
    if _admin is None:
        _admin = create_engine(make_url(POSTGRES_URL), isolation_level="AUTOCOMMIT").connect()
    return _admin


def end_administration() -> None:
    global _admin
    if _admin is not None:
        _admin.close()
        _admin.engine.dispose()
        _admin = None


def close_database(url: str) -> None:
    """End every connection to the database at ``url`` (a test's server processes, too) and
    refuse new ones, until ``open_database``."""
    name = make_url(url).database
    admin = _administration()
    admin.execute(text(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false'))
    admin.execute(
        text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :name"),
        {"name": name},
    )


def open_database(url: str) -> None:
    name = make_url(url).database
    _administration().execute(text(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true'))


class TcpProxy:
    """A loopback TCP forwarder to a server, that a test can take down and bring back up."""

    def __init__(self, target_host: str, target_port: int) -> None:
        import socket

        self._target = (target_host, target_port)
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self._listener = None
        self._sockets: list = []
        # A server that hangs: connections stay open and are acknowledged, nothing is answered.
        self.silent = False

    def start(self) -> None:
        import socket
        import threading

        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener) -> None:
        import socket
        import threading

        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self._target)
            self._sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    def _pipe(self, source, sink) -> None:
        try:
            while data := source.recv(65536):
                if not self.silent:
                    sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.close()
                except OSError:
                    pass

    def stop(self) -> None:
        """Refuse new connections and cut every open one, as a server going down does."""
        import socket

        if self._listener is not None:
            try:  # wakes the thread blocked in accept(); close() alone would not on Linux
                self._listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._listener.close()
            self._listener = None
        for sock in self._sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            except OSError:
                pass
        self._sockets.clear()
