"""gunicorn settings for DiscountFlow (``gunicorn -c gunicorn.conf.py app:app``).

Rate limits kept in the process (``process://``, the default, or ``memory://``) are counted per
process, so with that storage one worker process serves every request (with threads); several
processes would each let the full limit through. With a shared storage
(``RATELIMIT_STORAGE_URI=redis://…``) the worker count follows ``WEB_CONCURRENCY``, Heroku's
convention.
"""

import os
import tempfile

_storage = os.environ.get("RATELIMIT_STORAGE_URI") or "process://"
_shared_storage = not _storage.startswith(("process://", "memory://"))

bind = f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '8000')}"
# gunicorn's threaded worker, answering the requests it refuses itself (a URL or headers too
# long, a request it cannot read) in the API's JSON error shape (discountflow/server.py).
worker_class = "discountflow.server.JsonErrorWorker"
workers = int(os.environ.get("WEB_CONCURRENCY", "2")) if _shared_storage else 1
threads = int(os.environ.get("GUNICORN_THREADS", "8"))
# Recycling: a worker that has answered max_requests requests (plus up to max_requests_jitter
# more, drawn per worker so that workers started together do not restart together) finishes
# the requests in hand and exits, and the master starts a fresh one. That bounds what a worker
# keeps acquiring — a slow leak, caches that only fill, holes in the C heap. A fresh worker
# costs ~2.5 s of CPU to import the app, then a bcrypt check (0.25-0.5 s at cost 12) for each
# key it has not verified yet, and its page cache starts empty; so restarts are rare: a worker
# serving 100 requests a second lives about 1.4 hours, and at the growth the soaks measured
# (20-50 bytes a request, slowing) gains at most ~25 MB in a life.
# By default only where the restart costs clients nothing: with a shared storage (the
# rate-limit counts outlive the worker) and other workers serving meanwhile. A lone worker's
# restart stalls every request for as long as the old one takes to finish and the new one to
# import the app (8-10 s in a one-box load run on 2 busy cores); and in-process the one
# worker holds every rate-limit count (each key's budget, failed key checks, sign-ins per
# address and per account), which a fresh worker starts at zero — a key could get twice its
# limit in the minute around a restart, and anyone sending enough cheap requests could restart
# it to reset the sign-in limits. Set GUNICORN_MAX_REQUESTS to recycle anyway (in-process,
# warned below).
_max_requests = 500_000 if _shared_storage and workers > 1 else 0
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS") or _max_requests)
max_requests_jitter = int(os.environ.get("GUNICORN_MAX_REQUESTS_JITTER") or max_requests // 10)
keepalive = 5
timeout = 30
graceful_timeout = 30
# The app writes the access log itself, one JSON line per request on stdout, with the request
# id and the API key's public id (discountflow/operations.py); gunicorn's own is off.
accesslog = None
errorlog = "-"


# Prometheus (GET /metrics, discountflow/metrics.py): each worker counts in its own files in one
# folder, which a scrape adds up. Set before any worker imports prometheus_client; a folder of
# our own unless PROMETHEUS_MULTIPROC_DIR names one. The Procfile names instance/metrics for web
# and worker alike, so the webhook worker's counts are scraped here too.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="discountflow-metrics-")


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def on_starting(server):
    """Begin the counts at zero: remove the files of processes that are gone (those of a live
    one, such as a webhook worker sharing the folder, stay)."""
    folder = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    os.makedirs(folder, mode=0o700, exist_ok=True)
    removed = 0
    for name in os.listdir(folder):
        pid = name.removesuffix(".db").rsplit("_", 1)[-1]
        if name.endswith(".db") and not (pid.isdigit() and _alive(int(pid))):
            try:
                os.remove(os.path.join(folder, name))
            except FileNotFoundError:
                continue  # another server sharing the folder, starting now, removed it first
            removed += 1
    server.log.info("metrics: counting in %s (%d stale files removed)", folder, removed)


def child_exit(server, worker):
    """A worker is gone: its live gauges stop counting (its counters still add up)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def when_ready(server):
    """Warn loudly when rate-limit counts would be kept by several processes, or lost with a
    recycled one; say which malloc arenas the workers have (glibc read it as gunicorn
    started: it cannot be set from here)."""
    server.log.info(
        "workers' malloc arenas: MALLOC_ARENA_MAX=%s",
        os.environ.get("MALLOC_ARENA_MAX") or "unset (glibc's default: up to 8 per core)",
    )
    if server.cfg.workers > 1 and not _shared_storage:
        server.log.warning(
            "WARNING: %d worker processes with RATELIMIT_STORAGE_URI=%s — each process "
            "counts rate limits on its own, so clients get %d× the documented limit. Run one "
            "worker (the default here) or set RATELIMIT_STORAGE_URI to a shared storage such "
            "as redis://.",
            server.cfg.workers,
            _storage,
            server.cfg.workers,
        )
    if server.cfg.max_requests and not _shared_storage:
        server.log.warning(
            "WARNING: workers are recycled every %d requests with RATELIMIT_STORAGE_URI=%s "
            "— a recycled worker starts every rate-limit count at zero, so around each "
            "restart a key can get up to twice its limit, and sign-in limits start over. "
            "Leave GUNICORN_MAX_REQUESTS unset (no recycling in-process) or set "
            "RATELIMIT_STORAGE_URI to a shared storage such as redis://.",
            server.cfg.max_requests,
            _storage,
        )
