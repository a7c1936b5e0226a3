"""``GET /v2/me`` while 100 invalid-key requests a second arrive, against the same undisturbed.

Run from the repository root:
``python bench/invalid_keys.py [--seconds 3] [--pairs 7] [--keys N] [--json PATH]``

One DiscountFlow server as ``bench/me_vs_typical.py`` runs it (the shipped gunicorn
configuration, SQLite, ``process://``, production: 1,000 requests a minute per key, bcrypt at the
production cost, 12), loaded by ``wrk`` with valid keys in alternating rounds: with the flood,
then without (``bench/harness.py``). The flood is 100 requests a second, sent on schedule
whatever their answers take (open loop), each with a different well-formed key naming a real
key's lookup id (hashed at cost 12) with a wrong secret and a right checksum: the kind only
bcrypt can refuse. They come from the same address as the valid requests (loopback), so the
failed-authentication budget (``AUTH_FAILURE_LIMIT``, 20 a minute by default) is the valid
requests' address's too: once it is spent, invalid keys get 429 without
a check, while keys the process has verified keep working.

The figure: requests a second with the flood over without, the median of the per-pair ratios
with its min–max (target ≥ 0.90); beside it, what the flood's requests were answered. Then the
control, in pairs of its own: the same 100 requests a second with *valid* keys (others than the
load's, already checked), against undisturbed. It tells what 100 extra requests a second cost the
worker whatever they ask, so the flood's own cost is the difference between the two (reported,
not judged).
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import sys
import tempfile
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import harness, seeding  # noqa: E402

ME = harness.Request("GET", "/v2/me")
FLOOD = 100  # invalid-key requests a second
NAME = "GET /v2/me under 100 invalid-key req/s vs undisturbed: requests/s"
CONTROL = "GET /v2/me under 100 valid-key req/s (control) vs undisturbed: requests/s"
BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
SECRET_LENGTH, CHECKSUM_LENGTH = 22, 6
CONTROL_KEYS = 40  # the control's valid keys: ~50 requests each a minute, far under the limit


def checksum(body: str) -> str:
    """A key's last 6 characters: the CRC32 of the rest, in base62 (the documented format)."""
    number, digits = zlib.crc32(body.encode("ascii")), []
    while number:
        number, digit = divmod(number, 62)
        digits.append(BASE62[digit])
    return "".join(reversed(digits)).rjust(CHECKSUM_LENGTH, "0")


def wrong_secret(key: str, number: int) -> str:
    """The key with another secret (the ``number``-th) and the checksum that fits it."""
    body = key[: -SECRET_LENGTH - CHECKSUM_LENGTH] + f"{number:0{SECRET_LENGTH}d}"
    return body + checksum(body)


def wrong_secrets(key: str) -> Callable[[int], str]:
    """The ``number``-th wrong key of a real key's lookup id, for ``Flood``."""
    if checksum(key[:-CHECKSUM_LENGTH]) != key[-CHECKSUM_LENGTH:]:
        raise SystemExit(f"the key format changed ({key}): teach bench/invalid_keys.py")
    return lambda number: wrong_secret(key, number)


class Flood:
    """Requests with the keys ``key_for(0)``, ``key_for(1)`` …, ``per_second`` of them sent on
    schedule whatever their answers take (up to ``IN_FLIGHT`` at once), from threads pinned
    beside the load generator."""

    IN_FLIGHT = 64

    def __init__(
        self,
        port: int,
        key_for: Callable[[int], str],
        per_second: int,
        on_cores: set[int] | None,
    ) -> None:
        self.port, self.key_for, self.on_cores = port, key_for, on_cores
        self.per_second = per_second
        self.statuses: Counter = Counter()
        self.sent, self.seconds = 0, 0.0
        self._local = threading.local()
        self._lock = threading.Lock()

    def _pin(self) -> None:
        if self.on_cores:
            os.sched_setaffinity(0, self.on_cores)  # the calling thread only

    def _send(self, number: int) -> None:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            self._local.connection = connection
        headers = {"Authorization": f"Bearer {self.key_for(number)}"}
        try:
            connection.request("GET", "/v2/me", headers=headers)
            response = connection.getresponse()
            response.read()
            status: int | str = response.status
        except (OSError, http.client.HTTPException) as error:
            connection.close()
            status = type(error).__name__
        with self._lock:
            self.statuses[status] += 1

    def during(self, measure: Callable[[], harness.Round]) -> harness.Round:
        """Flood while ``measure`` runs; return what it returns."""
        from concurrent.futures import ThreadPoolExecutor

        stop = threading.Event()
        pool = ThreadPoolExecutor(self.IN_FLIGHT, initializer=self._pin)

        def schedule() -> None:
            self._pin()
            next_at = time.monotonic()
            while not stop.is_set():
                pool.submit(self._send, self.sent)
                self.sent += 1
                next_at += 1 / self.per_second
                time.sleep(max(0.0, next_at - time.monotonic()))

        scheduler = threading.Thread(target=schedule, daemon=True)
        started = time.monotonic()
        scheduler.start()
        try:
            return measure()
        finally:
            stop.set()
            scheduler.join()
            self.seconds += time.monotonic() - started
            pool.shutdown(wait=True)  # the answers still owed are part of the flood


def main() -> dict[str, harness.Figure]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    harness.arguments(parser)
    parser.add_argument("--keys", type=int, help="API keys for the load (default: enough)")
    args = parser.parse_args()
    harness.quiet()
    server_cores, load_cores, pinning = harness.cores()
    count = args.keys or harness.keys_needed(2 * args.pairs * args.seconds + 1)
    workdir = Path(tempfile.mkdtemp(prefix="discountflow-bench-flood-"))
    database = workdir / "discountflow.sqlite"
    try:
        print(f"Making {count} API keys… ({pinning})", flush=True)
        keys = seeding.keys_for_load(database, count + CONTROL_KEYS)
        keys, control_keys = keys[:count], keys[count:]
        flooded = seeding.Commands(database, bcrypt_rounds=12)  # the production cost
        target = flooded.key(flooded.organization(0, "flood"))
        flooded.close()
        server = harness.serve("app:app", seeding.server_env(database), server_cores)
        try:
            harness.warm(server.port, keys + control_keys, ME)
            harness.measure(server, keys, ME, 1, load_cores)  # warm code paths, discarded

            def load() -> harness.Round:
                return harness.measure(server, keys, ME, args.seconds, load_cores)

            flood = Flood(server.port, wrong_secrets(target), FLOOD, load_cores)
            rounds = harness.alternate(lambda: flood.during(load), load, args.pairs)
            valid = Flood(server.port, lambda n: control_keys[n % CONTROL_KEYS], FLOOD, load_cores)
            control = harness.alternate(lambda: valid.during(load), load, args.pairs)
        finally:
            harness.stop(server)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    answered = dict(sorted(flood.statuses.items(), key=str))
    note = (
        f"{flood.sent / flood.seconds:.0f} invalid-key req/s sent; answered {answered} "
        f"(each 401 a bcrypt check at cost 12, each 429 the budget spent)"
    )
    figures = {
        NAME: harness.Figure(
            harness.ratio(rounds, lambda r: r.per_second), harness.Target(0.90), note=note
        ),
        CONTROL: harness.Figure(
            harness.ratio(control, lambda r: r.per_second),
            note=f"answered {dict(sorted(valid.statuses.items(), key=str))}",
        ),
    }
    harness.save(args.json, figures, pinning)
    return figures


if __name__ == "__main__":
    main()
