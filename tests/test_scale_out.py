"""Scale-out for real: gunicorn worker processes sharing Redis, two instances sharing PostgreSQL
and Redis, and a database that goes away and comes back."""

from __future__ import annotations

import http.client
import http.cookiejar
import re
import subprocess
import time
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest
from sqlalchemy.engine import make_url

from .conftest import PASSWORD, bearer, create_org, generate_key, make_app
from .servers import TcpProxy, fresh_postgres_database, require_redis
from .test_gunicorn import output_of, start_gunicorn, stop, wait_for_line

pytestmark = [pytest.mark.slow, pytest.mark.postgresql_only]


@pytest.fixture
def redis_url():
    import redis

    url = require_redis()
    client = redis.Redis.from_url(url)
    client.flushdb()  # the test database of Redis: counts start from nothing
    yield url
    client.flushdb()
    client.close()


def wait_until_serving(process, port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            connection.request("GET", "/healthz")
            if connection.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.1)
        finally:
            connection.close()
        assert process.poll() is None, "gunicorn exited:\n" + output_of(process)[-4000:]
    raise AssertionError("gunicorn did not start serving:\n" + output_of(process)[-4000:])


def worker_count(process, expected: int, timeout: float = 20.0) -> int:
    """The master's worker processes, once ``expected`` have booted (or the time is up)."""
    deadline = time.monotonic() + timeout
    while True:
        out = subprocess.run(["pgrep", "-P", str(process.pid)], capture_output=True, text=True)
        count = len(out.stdout.split())
        if count >= expected or time.monotonic() > deadline:
            return count
        time.sleep(0.1)


def statuses(port: int, key: str, count: int, threads: int = 12) -> list[int]:
    def send(batch: int) -> list[int]:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        seen = []
        for _ in range(batch):
            connection.request("GET", "/v2/me", headers=bearer(key))
            response = connection.getresponse()
            response.read()
            seen.append(response.status)
            if response.getheader("Connection", "").lower() == "close":
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        connection.close()
        return seen

    batches = [count // threads + (1 if n < count % threads else 0) for n in range(threads)]
    with ThreadPoolExecutor(threads) as pool:
        return [status for result in pool.map(send, batches) for status in result]


def test_four_workers_on_redis_admit_exactly_the_staging_limit(tmp_path, redis_url):
    app = make_app(tmp_path)
    _, owner = create_org(app)
    key = generate_key(app, owner)
    process, port = start_gunicorn(
        tmp_path, environ={"RATELIMIT_STORAGE_URI": redis_url, "WEB_CONCURRENCY": "4"}
    )
    try:
        wait_until_serving(process, port)
        assert worker_count(process, 4) == 4
        seen = statuses(port, key, 600)
    finally:
        stop(process)
    assert seen.count(200) == 500, {status: seen.count(status) for status in set(seen)}
    assert seen.count(429) == 100


def test_the_memory_storage_warns_when_started_with_several_workers(tmp_path):
    process, _ = start_gunicorn(tmp_path, "-w", "3")
    try:
        output = wait_for_line(process, "WARNING: 3 worker processes")
    finally:
        stop(process)
    assert "each process counts rate limits on its own" in output


class Dashboard:
    """A person using one instance's dashboard over HTTP (cookies and CSRF tokens included)."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        cookies = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(cookies))

    def get(self, path: str) -> str:
        with self.opener.open(self.base + path, timeout=10) as response:
            return response.read().decode()

    def post(self, path: str, data: dict, token_from: str) -> str:
        page = self.get(token_from)
        token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
        nonce = re.search(r'name="nonce" value="([^"]+)"', page)
        fields = {"csrf_token": token, **data}
        if nonce:
            fields["nonce"] = nonce.group(1)
        body = urllib.parse.urlencode(fields).encode()
        with self.opener.open(self.base + path, data=body, timeout=10) as response:
            return response.read().decode()


def me(port: int, key: str) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("GET", "/v2/me", headers=bearer(key))
    status = connection.getresponse().status
    connection.close()
    return status


def test_a_key_changed_through_one_instance_is_refused_by_the_other(tmp_path, redis_url):
    with fresh_postgres_database() as database:
        app = make_app(tmp_path, SQLALCHEMY_DATABASE_URI=database)
        _, owner = create_org(app)
        key = generate_key(app, owner)
        environ = {"DATABASE_URL": database, "RATELIMIT_STORAGE_URI": redis_url}
        first, first_port = start_gunicorn(tmp_path, environ=environ)
        second, second_port = start_gunicorn(tmp_path, environ=environ)
        try:
            wait_until_serving(first, first_port)
            wait_until_serving(second, second_port)
            assert me(first_port, key) == 200 and me(second_port, key) == 200  # both know it
            owner_on_first = Dashboard(first_port)
            owner_on_first.post(
                "/sign-in",
                {"email": "owner@acme.example", "password": PASSWORD},
                token_from="/sign-in",
            )
            page = owner_on_first.post(
                "/settings/api-keys/generate", {"slot": "full"}, token_from="/settings/api-keys"
            )
            new_key = re.search(r'value="(sk_test_[^"]+)"', page).group(1)
            assert me(second_port, key) == 401  # generated through the first: the old key ends
            assert me(second_port, new_key) == 200
            owner_on_first.post(
                "/settings/api-keys/revoke", {"slot": "full"}, token_from="/settings/api-keys"
            )
            assert me(second_port, new_key) == 401  # revoked through the first
            assert me(first_port, new_key) == 401
        finally:
            stop(first)
            stop(second)


@contextmanager
def postgres_through_a_proxy(tmp_path):
    """An app on a fresh PostgreSQL database reached through a ``TcpProxy`` the test can stop
    and start; yields ``(app, proxy)``."""
    from discountflow.extensions import db

    with fresh_postgres_database() as database:
        url = make_url(database)
        proxy = TcpProxy(url.host, url.port or 5432)
        proxy.start()
        through_proxy = url.set(host="127.0.0.1", port=proxy.port).render_as_string(
            hide_password=False
        )
        app = make_app(tmp_path, SQLALCHEMY_DATABASE_URI=through_proxy)
        with app.app_context():
            db.create_all()
        try:
            yield app, proxy
        finally:
            with app.app_context():
                db.session.remove()
                db.engine.dispose()
            proxy.stop()


def test_the_api_answers_503_while_the_database_is_down_and_recovers_by_itself(tmp_path):
    with postgres_through_a_proxy(tmp_path) as (app, proxy):
        _, owner = create_org(app)
        key = generate_key(app, owner)
        client = app.test_client()
        assert client.get("/v2/approvals", headers=bearer(key)).status_code == 200

        proxy.stop()
        down = client.get("/v2/approvals", headers=bearer(key))
        assert down.status_code == 503
        assert down.get_json() == {
            "error": "service_unavailable",
            "message": "The database is not reachable just now. Try again shortly.",
        }
        assert down.headers["Retry-After"] == "5"
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.get_json()["database"] == "unreachable"
        assert client.get("/healthz").status_code == 200  # the process itself is fine

        proxy.start()
        assert client.get("/v2/approvals", headers=bearer(key)).status_code == 200
        assert client.get("/readyz").status_code == 200


def _lose_pooled_sockets(app) -> int:
    """Close the socket under every pooled connection, as a reset arriving while the pool's
    ping waits leaves it: psycopg finds the socket gone ("connection socket closed") and the
    connection mid-query (status ACTIVE), without marking it broken."""
    import os

    from discountflow.extensions import db

    with app.app_context():
        records = list(db.engine.pool._pool.queue)
    for record in records:
        os.close(record.dbapi_connection.fileno())
    return len(records)


def test_a_pooled_connection_found_dead_by_its_ping_is_replaced_not_a_500(tmp_path):
    """Found by the fault run on PostgreSQL: SQLAlchemy's ping of a pooled connection whose
    socket was gone tried to switch autocommit back on a connection left mid-query, and the
    ProgrammingError it got became a 500 for ``POST /v2/approvals``. The connection is now
    counted as lost: the pool connects again, or the request gets the 503 of a database away."""
    from .approvals_world import build_world, request_body

    with postgres_through_a_proxy(tmp_path) as (app, proxy):
        world = build_world(app)
        client = app.test_client()
        headers = {**bearer(world.key), "Idempotency-Key": "first"}
        assert client.get("/v2/approvals", headers=bearer(world.key)).status_code == 200

        assert _lose_pooled_sockets(app) >= 1  # the database is there: a new connection
        created = client.post("/v2/approvals", json=request_body(10), headers=headers)
        assert created.status_code == 201, created.get_json()
        replayed = client.post("/v2/approvals", json=request_body(10), headers=headers)
        assert replayed.status_code == 201 and replayed.headers["Idempotent-Replayed"] == "true"
        assert replayed.get_json() == created.get_json()

        proxy.stop()  # and now the database is away too
        assert _lose_pooled_sockets(app) >= 1
        headers["Idempotency-Key"] = "second"
        down = client.post("/v2/approvals", json=request_body(10), headers=headers)
        assert down.status_code == 503, down.get_data(as_text=True)
        assert down.get_json() == {
            "error": "service_unavailable",
            "message": "The database is not reachable just now. Try again shortly.",
        }
        assert down.headers["Retry-After"] == "5"

        proxy.start()
        retried = client.post("/v2/approvals", json=request_body(10), headers=headers)
        assert retried.status_code == 201, retried.get_json()
        listed = client.get("/v2/approvals", headers=bearer(world.key)).get_json()
        assert len(listed["data"]) == 2  # each accepted once, nothing lost


def test_a_connection_whose_socket_is_lost_mid_query_is_dropped_at_once(tmp_path):
    """The same lost socket met by a query instead of the ping: psycopg leaves the connection
    mid-query without marking it broken, so its rollback would fail too ("another command is
    already in progress"); it is counted as lost at the first error instead."""
    import os

    from sqlalchemy import text
    from sqlalchemy.exc import OperationalError

    from discountflow.extensions import db

    with fresh_postgres_database() as database:
        app = make_app(tmp_path, SQLALCHEMY_DATABASE_URI=database)
        with app.app_context():
            with db.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
                os.close(connection.connection.dbapi_connection.fileno())
                with pytest.raises(OperationalError) as lost:
                    connection.execute(text("SELECT 2"))
                assert lost.value.connection_invalidated
                connection.rollback()  # nothing left to roll back: no second error
            with db.engine.connect() as connection:
                assert connection.execute(text("SELECT 3")).scalar() == 3
            db.engine.dispose()


def test_a_row_locked_by_a_transaction_left_open_is_a_503_not_a_hang(tmp_path):
    """Found by the fault run: a network cut leaves PostgreSQL's side of a connection open,
    its transaction idle and holding its row locks, and requests needing those rows waited
    for ever (a worker then outlived gunicorn's SIGTERM). A statement now waits at most 5 s
    for a lock (503, "busy"), and the server ends a session idle in a transaction after 15 s."""
    import psycopg
    from sqlalchemy import text

    from discountflow.extensions import db

    from .approvals_world import build_world, create

    with fresh_postgres_database() as database:
        app = make_app(tmp_path, SQLALCHEMY_DATABASE_URI=database)
        world = build_world(app)
        draft = create(world, "rep", 10)
        with app.app_context():
            settings = db.session.execute(
                text(
                    "SELECT current_setting('lock_timeout'), "
                    "current_setting('idle_in_transaction_session_timeout')"
                )
            ).one()
            parameters = db.session.connection().connection.dbapi_connection.info.get_parameters()
            db.session.rollback()
        assert tuple(settings) == ("5s", "15s")
        # and a connection whose server went silent mid-query is probed, then given up
        assert parameters["keepalives_idle"] == "10" and parameters["tcp_user_timeout"] == "15000"
        orphan = psycopg.connect(
            make_url(database).set(drivername="postgresql").render_as_string(hide_password=False)
        )
        try:
            orphan.execute("SELECT id FROM approvals WHERE id = %s FOR UPDATE", (draft,))
            # ... and never a word more: the client that held it is gone
            client = app.test_client()
            started = time.monotonic()
            busy = _answer_within(
                10,
                lambda: client.patch(
                    f"/v2/approvals/{draft}", json={"title": "Later"}, headers=bearer(world.key)
                ),
            )
            waited = time.monotonic() - started
            assert busy.status_code == 503, busy.get_data(as_text=True)
            assert busy.get_json() == {
                "error": "service_unavailable",
                "message": "The database is busy with another change just now. Try again shortly.",
            }
            assert busy.headers["Retry-After"] == "5"
            assert 4.5 <= waited < 8, waited
        finally:
            orphan.close()
        done = client.patch(
            f"/v2/approvals/{draft}", json={"title": "Later"}, headers=bearer(world.key)
        )
        assert done.status_code == 200 and done.get_json()["title"] == "Later"
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


def test_dashboard_pages_answer_503_while_the_database_is_down(tmp_path):
    """Found by the fault run (loadtest/): the 503 page loaded the signed-in member again for
    its menu, failed again, and became a 500."""
    from .dashboard import sign_in

    with postgres_through_a_proxy(tmp_path) as (app, proxy):
        create_org(app)
        client = app.test_client()
        assert sign_in(client, "owner@acme.example", PASSWORD).status_code in (302, 303)
        assert client.get("/inbox").status_code == 200

        proxy.stop()
        for path in ("/inbox", "/approvals", "/settings/webhooks", "/sign-in"):
            down = client.get(path)
            assert down.status_code == 503, (path, down.status_code, down.data[:200])
            assert down.headers["Retry-After"] == "5"
            assert "The database is not reachable just now." in down.text
            assert 'aria-label="Main"' not in down.text  # no menu: nobody could be loaded

        proxy.start()
        assert client.get("/inbox").status_code == 200


def test_on_postgresql_with_redis_a_known_key_costs_no_query_until_keys_change(tmp_path, redis_url):
    from sqlalchemy import event

    from discountflow.auth import services as auth
    from discountflow.extensions import db

    from .conftest import owner_actor

    with fresh_postgres_database() as database:
        settings = {"SQLALCHEMY_DATABASE_URI": database, "RATELIMIT_STORAGE_URI": redis_url}
        app = make_app(tmp_path, **settings)
        other = make_app(tmp_path, **settings)  # another process, as far as memory goes
        organization_id, owner = create_org(app)
        key = generate_key(app, owner)
        client = app.test_client()
        assert client.get("/v2/me", headers=bearer(key)).status_code == 200  # read and verified
        statements: list[str] = []
        with app.app_context():
            engine = db.engine
        event.listen(engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
        assert client.get("/v2/me", headers=bearer(key)).status_code == 200
        assert not [s for s in statements if "api_keys" in s]  # remembered: no query
        with other.app_context():
            auth.revoke_key(owner_actor(organization_id))  # bumps the revision in Redis
        assert client.get("/v2/me", headers=bearer(key)).status_code == 401  # the very next one


def test_on_redis_a_remembered_key_meets_its_limit_and_its_revocation_is_seen_at_once(
    tmp_path, redis_url
):
    """A key this process remembers is counted in Redis and trusted only while the key
    revision there is unchanged: the limit stays exact, with its headers, and a key revoked
    through another process is refused on the very next request."""
    from discountflow.auth import services as auth

    from .conftest import owner_actor

    with fresh_postgres_database() as database:
        settings = {
            "SQLALCHEMY_DATABASE_URI": database,
            "RATELIMIT_STORAGE_URI": redis_url,
            "API_RATE_LIMIT": "5 per minute",
        }
        app = make_app(tmp_path, **settings)
        other = make_app(tmp_path, **settings)
        organization_id, owner = create_org(app)
        key = generate_key(app, owner)
        client = app.test_client()
        assert client.get("/v2/me", headers=bearer(key)).status_code == 200  # read, remembered
        answers = [client.get("/v2/me", headers=bearer(key)) for _ in range(5)]
        assert [answer.status_code for answer in answers] == [200] * 4 + [429]
        assert [answer.headers["X-RateLimit-Remaining"] for answer in answers] == [
            "3",
            "2",
            "1",
            "0",
            "0",
        ]
        assert answers[-1].get_json()["error"] == "rate_limit_exceeded"
        assert client.get("/v2/nothing-here", headers=bearer(key)).status_code == 404
        assert client.get("/v2/me", headers=bearer(key)).status_code == 429  # the 404 cost nothing
        with other.app_context():
            auth.revoke_key(owner_actor(organization_id))  # through another process
        assert client.get("/v2/me", headers=bearer(key)).status_code == 401


def test_on_redis_a_poll_sees_another_processs_write_at_once(tmp_path, redis_url):
    """A page of approvals polled with a remembered key: a write through another process is
    seen on the very next poll."""
    from .approvals_world import build_world, create

    with fresh_postgres_database() as database:
        settings = {"SQLALCHEMY_DATABASE_URI": database, "RATELIMIT_STORAGE_URI": redis_url}
        app = make_app(tmp_path, **settings)
        other = make_app(tmp_path, **settings)  # another process, as far as memory goes
        world = build_world(app)
        create(world, "rep", 10, submit=True)
        client = app.test_client()

        def poll() -> list[str]:
            response = client.get("/v2/approvals", headers=bearer(world.key))
            assert response.status_code == 200
            return [each["id"] for each in response.get_json()["data"]]

        first = poll()  # the key read and remembered
        assert [poll() for _ in range(3)] == [first] * 3
        world.app = other  # the next approval is made by the other process
        newer = create(world, "rep", 5)
        assert poll() == [newer, *first]


def test_on_redis_away_a_remembered_key_is_read_again_and_served_without_limit(tmp_path):
    """Redis gone: the one script fails, the request is served without its limit (fail open,
    as documented), and the key is read from the database rather than trusted from memory."""
    from discountflow.auth import services as auth

    from .conftest import owner_actor

    with fresh_postgres_database() as database:
        url = make_url(require_redis().replace("redis://", "postgresql://"))
        proxy = TcpProxy(url.host, url.port or 6379)
        proxy.start()
        through_proxy = f"redis://127.0.0.1:{proxy.port}/{url.database or 0}"
        app = make_app(
            tmp_path, SQLALCHEMY_DATABASE_URI=database, RATELIMIT_STORAGE_URI=through_proxy
        )
        organization_id, owner = create_org(app)
        key = generate_key(app, owner)
        client = app.test_client()
        assert client.get("/v2/me", headers=bearer(key)).status_code == 200
        proxy.stop()
        served = client.get("/v2/me", headers=bearer(key))
        assert served.status_code == 200
        assert "X-RateLimit-Limit" not in served.headers  # served unlimited
        with app.app_context():
            auth.revoke_key(owner_actor(organization_id))  # its bump cannot reach Redis
        assert client.get("/v2/me", headers=bearer(key)).status_code == 401  # read again


def _answer_within(seconds: float, call):
    """``call()``'s result, or a failure when it hangs (the hung thread is left behind)."""
    pool = ThreadPoolExecutor(1)
    try:
        return pool.submit(call).result(timeout=seconds)
    finally:
        pool.shutdown(wait=False)


def test_a_redis_that_hangs_does_not_hold_the_api(tmp_path, redis_url):
    """A Redis that accepts and acknowledges but never answers (a hung server, a network that
    swallows replies): the limiter gives up after its socket timeout and the API fails open,
    as it does when Redis refuses connections (found while chasing a request that outlived
    gunicorn's SIGTERM in the fault run)."""
    url = make_url(redis_url.replace("redis://", "postgresql://"))  # only to read host and port
    proxy = TcpProxy(url.host, url.port or 6379)
    proxy.start()
    through_proxy = f"redis://127.0.0.1:{proxy.port}/{url.database or 0}"
    app = make_app(tmp_path, RATELIMIT_STORAGE_URI=through_proxy)
    _, owner = create_org(app)
    key = generate_key(app, owner)
    client = app.test_client()
    try:
        assert client.get("/v2/me", headers=bearer(key)).headers["X-RateLimit-Limit"] == "500"
        proxy.silent = True
        started = time.monotonic()
        hung = _answer_within(10, lambda: client.get("/v2/me", headers=bearer(key)))
        assert hung.status_code == 200
        assert "X-RateLimit-Limit" not in hung.headers  # served unlimited while Redis is away
        assert time.monotonic() - started < 3
        proxy.silent = False
    finally:
        proxy.stop()


def test_a_postgresql_that_hangs_answers_503_after_the_connect_timeout(tmp_path):
    """A PostgreSQL server that accepts connections and never answers: a new connection gives
    up after ``connect_timeout`` (5 s) and the request gets the documented 503, instead of
    waiting for ever."""
    with postgres_through_a_proxy(tmp_path) as (app, proxy):
        from discountflow.extensions import db

        with app.app_context():
            assert db.engine.dialect.name == "postgresql"
        _, owner = create_org(app)
        key = generate_key(app, owner)
        client = app.test_client()
        try:
            assert client.get("/v2/approvals", headers=bearer(key)).status_code == 200
            proxy.silent = True
            with app.app_context():
                db.engine.dispose()  # the next request opens a new connection
            started = time.monotonic()
            hung = _answer_within(30, lambda: client.get("/v2/approvals", headers=bearer(key)))
            assert hung.status_code == 503
            assert hung.get_json()["error"] == "service_unavailable"
            assert time.monotonic() - started < 15
        finally:
            proxy.silent = False
