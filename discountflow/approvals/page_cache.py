"""The per-process memory of rendered pages of approvals, for ``GET /v2/approvals``.

Integrations poll the list of approvals far more often than anyone changes one, and a page of
twenty approvals with their line items and steps costs far more to read and render than to
send. So each process remembers the pages it rendered, by organization, viewer and query, and
serves one again while it is still exactly what the database would give:

* while the organization's revision (:class:`discountflow.revisions.OrganizationRevisions`) is
  the one it was rendered under: every transaction that writes an organization's data marks the
  organization (``database.begin_write``), and the revision grows when it commits, in every
  process on the host;
* until the earliest moment an approved approval of the organization passes its validity (it
  then reads as expired, which changes pages and the status filters without any write);
* for at most ``MAX_AGE`` seconds, should a process die between a commit and its bump.

Where there is no shared revision (PostgreSQL; an in-memory database) nothing is remembered.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Hashable
from datetime import datetime
from typing import NamedTuple

from flask import Flask, current_app

MAX_AGE = 10.0  # seconds a page is served without rendering it again


class _Page(NamedTuple):
    revision: int
    fresh_until: datetime | None  # the next expiry in the organization, if any
    rendered_at: float  # monotonic
    body: str


class PageCache:
    """A bounded, thread-safe memory of rendered pages, oldest rendered first out.

    A page is never served more than ``MAX_AGE`` seconds after it was rendered, so it is
    forgotten then too: what the memory holds is the pages rendered in the last ``MAX_AGE``
    seconds, and under a steady load it stays the same size (kept until the bound, pages of
    queries never asked again — other cursors, other filters — made a worker's memory creep up
    for as long as it ran). ``max_bytes`` bounds the pages' text (``PAGE_CACHE_MB``); a page
    larger than an eighth of it is not kept, and with 0 nothing is.
    """

    def __init__(self, max_bytes: int) -> None:
        self._max_bytes = max_bytes
        self._bytes = 0
        self._pages: OrderedDict[Hashable, _Page] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, revision: int, now: datetime) -> str | None:
        """Return a remembered page if it is still what the database would give."""
        page = self._pages.get(key)
        if (
            page is None
            or page.revision != revision
            or (page.fresh_until is not None and now >= page.fresh_until)
            or time.monotonic() - page.rendered_at > MAX_AGE
        ):
            return None
        return page.body

    def keeps(self, body: str) -> bool:
        """Tell whether a page this large would be remembered."""
        return len(body) <= self._max_bytes // 8

    def put(self, key: Hashable, revision: int, fresh_until: datetime | None, body: str) -> None:
        """Remember a page rendered under ``revision`` (read before the page's query ran)."""
        if not self.keeps(body):
            return
        size = len(body)
        now = time.monotonic()
        with self._lock:
            previous = self._pages.pop(key, None)
            if previous is not None:
                self._bytes -= len(previous.body)
            self._pages[key] = _Page(revision, fresh_until, now, body)
            self._bytes += size
            # In the order rendered: forget the pages too old to be served, then the oldest
            # while over the bound.
            pages = self._pages
            while pages:
                oldest = next(iter(pages.values()))
                if self._bytes <= self._max_bytes and now - oldest.rendered_at <= MAX_AGE:
                    break
                _, evicted = pages.popitem(last=False)
                self._bytes -= len(evicted.body)

    def __len__(self) -> int:
        return len(self._pages)


_CACHE = "discountflow.page_cache"


def init_app(app: Flask) -> None:
    """Give each process of the app its memory of pages, ``PAGE_CACHE_MB`` large."""
    app.extensions[_CACHE] = PageCache(int(app.config["PAGE_CACHE_MB"]) * 1024 * 1024)


def page_cache() -> PageCache:
    """The current app's memory of rendered pages."""
    return current_app.extensions[_CACHE]
