"""What the load clients saw, as JSON lines: written by ``locustfile.py``, read by ``checks.py``.

Each Locust process appends to ``records-<pid>.jsonl`` in the run's record folder. Every line
is one JSON object whose ``k`` says its kind:

``req``      every request: ``ts`` start (epoch s), ``ms`` duration, ``m`` method, ``n`` name,
             ``st`` status (0: no answer — a connection error), ``ok`` as the client judged it,
             ``c`` the client (user class), ``key`` which key (``<slug>/sk`` …), ``ra`` whether
             ``Retry-After`` came, ``rl`` whether ``X-RateLimit-Limit`` came (the limiter
             counted the request), ``err`` (connection error text) and ``body`` (the start of
             the answer) for 5xx and unexpected answers.
``created``  an approval the service acknowledged creating (REST 201, or GraphQL data): ``id``,
             ``org`` (organization id), ``slug``, ``via``, ``title``, ``status``, ``ts``.
``status``   a later acknowledged change of an approval's status (submit, approve, reject):
             ``id``, ``org``, ``status``, ``action``, ``ts``.
``unknown``  a write whose outcome the client never learnt (5xx or no answer, even after
             retrying with its Idempotency-Key): ``id`` (if known), ``action``, ``idem``.
``idem``     a deliberate retry with the same Idempotency-Key and body: ``first`` and
             ``replay`` (``st``, ``sha`` of the body, ``head`` its first characters,
             ``replayed`` the ``Idempotent-Replayed`` header).
``stuck``    an Idempotency-Key still answered ``409 idempotency_key_in_use`` long after its
             first request ended without an answer.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO


class RecordWriter:
    """Append JSON lines to ``records-<pid>.jsonl`` in ``folder`` (opened per process)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._file: TextIO | None = None
        self._pid = 0
        self._lock = threading.Lock()

    def write(self, kind: str, **fields: Any) -> None:
        """Write one record of ``kind``."""
        line = json.dumps({"k": kind, **fields}, separators=(",", ":"), default=str)
        with self._lock:
            if self._file is None or self._pid != os.getpid():
                self.folder.mkdir(parents=True, exist_ok=True)
                self._pid = os.getpid()
                self._file = open(  # kept open for the process's life
                    self.folder / f"records-{self._pid}.jsonl", "a", encoding="utf-8"
                )
            self._file.write(line + "\n")

    def flush(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.flush()

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


def read_records(folder: Path) -> Iterator[dict[str, Any]]:
    """Every record of every client process in ``folder`` (a torn last line is skipped)."""
    for path in sorted(folder.glob("records-*.jsonl")):
        with path.open(encoding="utf-8") as lines:
            for line in lines:
                try:
                    yield json.loads(line)
                except json.JSONDecodeError:
                    continue


def digest(body: str | bytes | None) -> str:
    """A short fingerprint of an answer's body (sha256, hex)."""
    if body is None:
        return ""
    data = body.encode() if isinstance(body, str) else body
    return hashlib.sha256(data).hexdigest()
