"""The verdicts of a load run: pure functions from what the clients saw (``records.py``), what
the database holds and what the processes measured, to ``Check`` results.

Nothing here reads a file or the time: ``run.py`` gathers, these functions judge, and the tests
feed them fabricated records. A check that cannot be judged from the run (too short, nothing
of the kind happened) is *skipped* with its reason rather than passed.
"""

from __future__ import annotations

import statistics
import time
from bisect import bisect_left, bisect_right
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

GRACE_SECONDS = 10.0  # after a fault ends, its symptoms may still arrive for this long


@dataclass(frozen=True)
class Check:
    """One verdict: ``passed`` True or False, or None when it was skipped (with why)."""

    name: str
    passed: bool | None
    detail: str

    @property
    def failed(self) -> bool:
        return self.passed is False

    @property
    def label(self) -> str:
        return {True: "PASS", False: "FAIL", None: "SKIP"}[self.passed]


@dataclass(frozen=True)
class Window:
    """A time span in which a fault's documented symptoms are expected (epoch seconds)."""

    kind: str  # database | redis | worker_kill | webhook_worker_kill
    start: float
    end: float

    def covers(self, start: float, end: float, grace: float = GRACE_SECONDS) -> bool:
        """Whether a request running from ``start`` to ``end`` overlaps the window (+grace)."""
        return start <= self.end + grace and end >= self.start


@dataclass(frozen=True)
class Request:
    """One ``req`` record, typed."""

    start: float
    duration_ms: float
    method: str
    name: str
    status: int
    ok: bool
    client: str
    key: str
    retry_after: bool = False
    rate_limited_header: bool = False
    body: str = ""
    error: str = ""

    @property
    def end(self) -> float:
        return self.start + self.duration_ms / 1000

    @property
    def is_api(self) -> bool:
        return self.name.startswith("/v2") or self.name.startswith("graphql")

    @classmethod
    def of(cls, record: dict[str, Any]) -> Request:
        return cls(
            start=float(record["ts"]),
            duration_ms=float(record.get("ms", 0.0)),
            method=str(record.get("m", "")),
            name=str(record.get("n", "")),
            status=int(record.get("st", 0)),
            ok=bool(record.get("ok", False)),
            client=str(record.get("c", "")),
            key=str(record.get("key", "")),
            retry_after=bool(record.get("ra", False)),
            rate_limited_header=bool(record.get("rl", False)),
            body=str(record.get("body", "")),
            error=str(record.get("err", "")),
        )


@dataclass
class Observations:
    """Everything the clients recorded, sorted by kind."""

    requests: list[Request] = field(default_factory=list)
    created: list[dict[str, Any]] = field(default_factory=list)
    status_changes: list[dict[str, Any]] = field(default_factory=list)
    unknown: list[dict[str, Any]] = field(default_factory=list)
    replays: list[dict[str, Any]] = field(default_factory=list)
    stuck: list[dict[str, Any]] = field(default_factory=list)
    notes: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def of(cls, records: Iterable[dict[str, Any]]) -> Observations:
        seen = cls()
        sinks = {
            "created": seen.created,
            "status": seen.status_changes,
            "unknown": seen.unknown,
            "idem": seen.replays,
            "stuck": seen.stuck,
            "note": seen.notes,
        }
        for record in records:
            if record.get("k") == "req":
                seen.requests.append(Request.of(record))
            elif record.get("k") in sinks:
                sinks[record["k"]].append(record)
        seen.requests.sort(key=lambda request: request.start)
        return seen


def clock(moment: float) -> str:
    """An epoch time as the local clock shows it, to the millisecond (``13:10:27.391``); small
    numbers (fabricated records' seconds) as they are."""
    if moment < 1e9:
        return f"{moment:.3f} s"
    return time.strftime("%H:%M:%S", time.localtime(moment)) + f".{int(moment % 1 * 1000):03d}"


def _examples(items: Sequence[Any], count: int = 3) -> str:
    return "; ".join(str(item) for item in items[:count])


def _in_any(request: Request, windows: Sequence[Window], kinds: set[str]) -> bool:
    return any(w.kind in kinds and w.covers(request.start, request.end) for w in windows)


# --- answers -------------------------------------------------------------------------------------


def no_server_errors(requests: Sequence[Request], windows: Sequence[Window]) -> Check:
    """No 5xx, except the documented ``503`` with ``Retry-After``: from the API and dashboard
    while the database is away, and from sign-in while Redis is away (it fails closed)."""
    allowed, refused = Counter(), []
    for request in requests:
        if request.status < 500:
            continue
        documented = request.status == 503 and request.retry_after
        if documented and _in_any(request, windows, {"database"}):
            allowed[request.name] += 1
        elif (
            documented
            and request.name.startswith("/sign-in")
            and _in_any(request, windows, {"redis"})
        ):
            allowed[request.name] += 1
        else:
            refused.append(request)
    if refused:
        kinds = Counter((r.status, r.name) for r in refused)
        summary = ", ".join(f"{n}× {status} on {name}" for (status, name), n in kinds.items())
        first = refused[0]
        return Check(
            "no 5xx outside the documented 503s",
            False,
            f"{len(refused)} server errors: {summary}. First at {clock(first.start)}: "
            f"{first.status} {first.method} {first.name}, body {first.body[:160]!r}",
        )
    note = f"; documented 503s during faults: {sum(allowed.values())}" if allowed else ""
    return Check("no 5xx outside the documented 503s", True, f"0 unexpected 5xx{note}")


def client_expectations(requests: Sequence[Request], windows: Sequence[Window]) -> Check:
    """Every answer outside fault windows is what its client expected (2xx, the invalid keys'
    401, the over-budget key's 429 …); while a process was killed, connection errors, and the
    documented ``409 idempotency_key_in_use`` to a retry of a write the killed worker was
    running (its key is held for the 10-second lease, the window's grace)."""
    bad = [
        r
        for r in requests
        if not r.ok
        and not (
            (r.status == 0 or _held_by_a_killed_worker(r)) and _in_any(r, windows, {"worker_kill"})
        )
        and not any(w.covers(r.start, r.end) for w in windows if w.kind != "worker_kill")
    ]
    if not bad:
        return Check("every answer as expected outside faults", True, f"{len(requests)} requests")
    kinds = Counter((r.status, r.name) for r in bad)
    summary = ", ".join(f"{n}× {status} on {name}" for (status, name), n in kinds.most_common(8))
    first = bad[0]
    return Check(
        "every answer as expected outside faults",
        False,
        f"{len(bad)} unexpected answers: {summary}. First: {first.status} {first.name} "
        f"{(first.error or first.body)[:160]!r}",
    )


def _held_by_a_killed_worker(request: Request) -> bool:
    """A retry answered ``409 idempotency_key_in_use``: its first attempt still holds the key."""
    return (
        request.status == 409
        and request.name.endswith("(retry after error)")
        and "idempotency_key_in_use" in request.body
    )


def keys_within_budget(requests: Sequence[Request], over_budget_key: str) -> Check:
    """No key but the over-budget one was ever refused with 429: each stayed in its budget."""
    refused = Counter(
        r.key for r in requests if r.status == 429 and r.key != over_budget_key and r.is_api
    )
    keys = {r.key for r in requests if r.is_api and r.key not in (over_budget_key, "invalid")}
    if refused:
        return Check(
            "other keys stayed inside their budget",
            False,
            f"429 for {len(refused)} keys that should be inside their budget: "
            + ", ".join(f"{key} ({n}×)" for key, n in refused.most_common(5)),
        )
    return Check("other keys stayed inside their budget", True, f"{len(keys)} keys, no 429")


# --- writes --------------------------------------------------------------------------------------


def acknowledged_writes(observed: Observations, stored: dict[str, dict[str, Any]]) -> Check:
    """Every approval a client was told was created (201, or GraphQL's answer) is in the database,
    in its organization, with its title; its status is the last one a client was told (unless a
    later write on it ended without an answer)."""
    problems: list[str] = []
    last: dict[str, tuple[float, str]] = {}
    for record in observed.created + observed.status_changes:
        when = float(record.get("ts", 0.0))
        if record["id"] not in last or when >= last[record["id"]][0]:
            last[record["id"]] = (when, record["status"])
    uncertain = {record.get("id") for record in observed.unknown if record.get("id")}
    for record in observed.created:
        row = stored.get(record["id"])
        if row is None:
            problems.append(f"{record['id']} ({record['via']}, {record['slug']}) is missing")
        elif row["organization_id"] != record["org"]:
            problems.append(f"{record['id']} is in {row['organization_id']}, not {record['org']}")
        elif record.get("title") and row["title"] != record["title"]:
            problems.append(f"{record['id']} has title {row['title']!r}, not {record['title']!r}")
    for approval_id, (_, status) in last.items():
        row = stored.get(approval_id)
        if row is not None and row["status"] != status and approval_id not in uncertain:
            problems.append(f"{approval_id} is {row['status']!r} but a client was told {status!r}")
    total = len(observed.created)
    if not total and not observed.status_changes:
        return Check("no acknowledged write lost", None, "no write was acknowledged")
    if problems:
        return Check(
            "no acknowledged write lost",
            False,
            f"{len(problems)} of {total} created / {len(observed.status_changes)} changed "
            f"approvals differ from what clients were told: {_examples(problems, 5)}",
        )
    return Check(
        "no acknowledged write lost",
        True,
        f"{total} created and {len(observed.status_changes)} status changes, all in the "
        f"database as acknowledged ({len(uncertain)} writes without an answer not judged)",
    )


def idempotent_replays(replays: Sequence[dict[str, Any]]) -> Check:
    """Every deliberate retry (same Idempotency-Key, same body) replayed the first answer: the
    same status, the same body, and ``Idempotent-Replayed: true``."""
    if not replays:
        return Check("idempotent retries replayed the first answer", None, "no retry was made")
    wrong = []
    for record in replays:
        first, replay = record["first"], record["replay"]
        if replay["st"] != first["st"]:
            wrong.append(f"{record['idem']}: status {replay['st']}, first {first['st']}")
        elif replay["sha"] != first["sha"]:
            wrong.append(
                f"{record['idem']}: body {replay['head'][:60]!r}…, first {first['head'][:60]!r}…"
            )
        elif replay.get("replayed") != "true":
            wrong.append(f"{record['idem']}: no Idempotent-Replayed: true header")
    if wrong:
        return Check(
            "idempotent retries replayed the first answer",
            False,
            f"{len(wrong)} of {len(replays)} retries did not replay: {_examples(wrong)}",
        )
    via = Counter(record.get("via", "rest") for record in replays)
    return Check(
        "idempotent retries replayed the first answer",
        True,
        f"{len(replays)} retries ({', '.join(f'{n} {k}' for k, n in via.items())}), "
        "same status and body",
    )


def no_stuck_idempotency_keys(observed: Observations) -> Check:
    """A write retried with its Idempotency-Key after a 5xx or no answer got a final answer,
    rather than ``409 idempotency_key_in_use`` long after its first request had ended."""
    if not observed.stuck:
        unknown = len(observed.unknown)
        return Check(
            "retried writes got a final answer",
            True,
            f"no key left 'in progress'; {unknown} writes ended without an answer after retries",
        )
    return Check(
        "retried writes got a final answer",
        False,
        f"{len(observed.stuck)} Idempotency-Keys still answered 409 idempotency_key_in_use "
        "after their first request had ended (a claim whose request ended without finishing "
        "it — the database gone mid-request, a process killed — is never released): "
        f"{_examples([record['idem'] + ' ' + record['path'] for record in observed.stuck])}",
    )


def no_claims_in_progress(claims: Sequence[tuple[str, bool]]) -> Check:
    """After the run (nothing running any more) no Idempotency-Key is stuck "in progress".

    ``claims`` are the keys still claimed, each with whether its request's work was committed.
    A claim with nothing committed belongs to a request that died (a worker killed): the next
    retry after the claim's lease takes it over and runs the request, so it is not stuck. A
    claim whose work was committed but whose answer was never stored answers ``409
    idempotency_key_in_use`` to every retry for 24 hours: its client never learns the result."""
    lost = [key for key, committed in claims if committed]
    if lost:
        return Check(
            "no Idempotency-Key left in progress",
            False,
            f"{len(lost)} keys still claimed after every request had ended, their work "
            f"committed and their answer lost: {_examples(lost)}",
        )
    if claims:
        return Check(
            "no Idempotency-Key left in progress",
            True,
            f"{len(claims)} claims of requests that died before committing anything, each "
            "taken over by its next retry once its lease runs out",
        )
    return Check("no Idempotency-Key left in progress", True, "every claim was finished")


# --- the over-budget key -------------------------------------------------------------------------


@dataclass(frozen=True)
class BudgetWindow:
    """One fixed 60 s window of the over-budget key, anchored at its first request."""

    start: float
    admitted: int  # 2xx counted by the limiter (X-RateLimit-Limit present)
    uncounted: int  # 2xx the limiter did not count (it failed open: Redis away)
    refused: int  # 429
    other: int  # no answer, 5xx …
    full: bool  # the client was sending for the whole window


def budget_windows(
    requests: Sequence[Request], window: float = 60.0, run_end: float | None = None
) -> list[BudgetWindow]:
    """The over-budget key's answers per fixed window from its first request."""
    if not requests:
        return []
    first = min(r.start for r in requests)
    last = run_end if run_end is not None else max(r.end for r in requests)
    rows = []
    index = 0
    while first + index * window <= last:
        start = first + index * window
        inside = [r for r in requests if start <= r.end < start + window]
        rows.append(
            BudgetWindow(
                start=start,
                admitted=sum(1 for r in inside if 200 <= r.status < 300 and r.rate_limited_header),
                uncounted=sum(
                    1 for r in inside if 200 <= r.status < 300 and not r.rate_limited_header
                ),
                refused=sum(1 for r in inside if r.status == 429),
                other=sum(1 for r in inside if not (200 <= r.status < 300 or r.status == 429)),
                full=start + window <= last,
            )
        )
        index += 1
    return rows


def over_budget_key(
    requests: Sequence[Request],
    limit: int,
    window: float = 60.0,
    resets: Sequence[float] = (),
) -> list[Check]:
    """The limiter (a moving window) admitted exactly ``limit`` per ``window`` to the key that
    asks for more, judged from the client's side without trusting its clock to the millisecond.

    A request's admission happened at some moment between its start and its end. So:

    1. *never more than the limit*: a request admitted while ``limit`` others had **certainly**
       been admitted in the ``window`` before it (ended before it started, started after its
       end minus the window) is a violation;
    2. *refused only when the budget was spent*: a 429 while fewer than ``limit`` requests could
       **possibly** have been counted in the window before it is a violation — so every
       saturated window was filled to exactly the limit;
    3. *exactly the limit in the first full window*: on a fresh key the first refusal comes after
       exactly ``limit`` admissions.

    Only 2xx that carry ``X-RateLimit-Limit`` count as admitted: without it the limiter failed
    open (Redis away) and counted nothing. No answer, a 5xx or an uncounted 2xx may or may not
    have been counted, so they count as "possibly". ``resets`` are moments the limiter's memory
    was lost on purpose (the one-box worker killed: ``process://`` counts per process; the moment
    is when its replacement was up); each part between them — requests by the moment they
    ended, that is by the process that answered them — is judged on its own.
    """
    ordered = sorted(requests, key=lambda r: r.start)
    if not ordered:
        skipped = "the over-budget key sent nothing"
        return [Check(f"over-budget key: {name}", None, skipped) for name in _BUDGET_CHECKS]
    cuts = sorted(resets)
    parts: list[list[Request]] = [[] for _ in range(len(cuts) + 1)]
    for request in ordered:
        parts[bisect_right(cuts, request.end)].append(request)  # by who answered it
    over: list[tuple[Request, int]] = []
    under: list[tuple[Request, int]] = []
    firsts: list[tuple[int, int, float]] = []
    for part in parts:
        if not part:
            continue
        admitted = [r for r in part if _counted(r)]
        possible = [r for r in part if r.status != 429]
        over += _admitted_beyond(admitted, limit, window)
        under += _refused_under(part, possible, limit, window)
        refusals = [r for r in part if r.status == 429]
        if refusals:
            first_refusal = refusals[0]
            before = [r for r in part if r.end <= first_refusal.start]
            counted = sum(1 for r in before if _counted(r))
            unsure = sum(1 for r in before if r.status != 429 and not _counted(r))
            firsts.append((counted, unsure, first_refusal.start - part[0].start))
    checks = []
    if over:
        request, certain = over[0]
        checks.append(
            Check(
                "over-budget key: never more than the limit in any window",
                False,
                f"{len(over)} requests admitted beyond {limit} per {window:g} s; the first, at "
                f"{clock(request.start)}, came after {certain} admissions certainly inside its "
                "window",
            )
        )
    else:
        checks.append(
            Check(
                "over-budget key: never more than the limit in any window",
                True,
                f"no request admitted while {limit} were certainly admitted in the {window:g} s "
                "before it",
            )
        )
    refused = sum(1 for r in ordered if r.status == 429)
    if not refused:
        checks.append(
            Check(
                "over-budget key: refused only when its budget was spent",
                None,
                "the key was never refused (the run was too short or too slow to exceed it)",
            )
        )
    elif under:
        request, could = under[0]
        checks.append(
            Check(
                "over-budget key: refused only when its budget was spent",
                False,
                f"{len(under)} refusals while fewer than {limit} requests could have been "
                f"counted; the first at {clock(request.start)} had at most {could} in its window",
            )
        )
    else:
        checks.append(
            Check(
                "over-budget key: refused only when its budget was spent",
                True,
                f"each of {refused} refusals came with {limit} or more requests possibly "
                f"counted in the {window:g} s before it",
            )
        )
    if not firsts:
        checks.append(
            Check("over-budget key: exactly the limit in a full window", None, "never refused")
        )
    else:
        wrong = [
            (counted, unsure)
            for counted, unsure, _ in firsts
            if not (limit - unsure <= counted <= limit)
        ]
        described = ", ".join(
            f"{counted} admitted (+{unsure} unsure) in {seconds:.1f} s"
            for counted, unsure, seconds in firsts
        )
        checks.append(
            Check(
                "over-budget key: exactly the limit in a full window",
                not wrong,
                f"before the first refusal of a fresh budget: {described} (limit {limit})",
            )
        )
    return checks


def _counted(request: Request) -> bool:
    """A 2xx the limiter counted (it sent its headers; without them it failed open)."""
    return 200 <= request.status < 300 and request.rate_limited_header


def _admitted_beyond(
    admitted: Sequence[Request], limit: int, window: float
) -> list[tuple[Request, int]]:
    """Admitted requests preceded by ``limit`` admissions certainly inside their window.

    For request *i*, *j* was certainly admitted before it and inside its window when
    ``end_j <= start_i`` and ``start_j > end_i - window``. Counted with two sorted lists:
    #{end_j <= start_i} - #{start_j <= end_i - window} + #{both start_j <= end_i - window and
    end_j > start_i} (requests longer than ``window`` minus *i*'s own duration: rare).
    """
    starts = sorted(r.start for r in admitted)
    ends = sorted(r.end for r in admitted)
    # Only a request longer than window - duration_i can start before the horizon and end
    # after start_i: for i shorter than half the window, only those longer than half of it.
    long = [r for r in admitted if r.end - r.start > window / 2]
    found = []
    for request in admitted:
        horizon = request.end - window
        certain = bisect_right(ends, request.start) - bisect_right(starts, horizon)
        spanning = long if request.end - request.start < window / 2 else admitted
        certain += sum(1 for o in spanning if o.start <= horizon and o.end > request.start)
        if request.end <= request.start:
            certain -= 1  # itself, with no duration
        if certain >= limit:
            found.append((request, certain))
    return found


def _refused_under(
    part: Sequence[Request], possible: Sequence[Request], limit: int, window: float
) -> list[tuple[Request, int]]:
    """Refusals while fewer than ``limit`` requests could have been counted in their window.

    *j* could have been counted before refusal *r* and inside its window when
    ``start_j < end_r`` and ``end_j > start_r - window``; since ``end_j >= start_j``, that is
    #{start_j < end_r} - #{end_j <= start_r - window}.
    """
    starts = sorted(r.start for r in possible)
    ends = sorted(r.end for r in possible)
    found = []
    for request in part:
        if request.status != 429:
            continue
        could = bisect_left(starts, request.end) - bisect_right(ends, request.start - window)
        if could < limit:
            found.append((request, could))
    return found


_BUDGET_CHECKS = (
    "never more than the limit in any window",
    "refused only when its budget was spent",
    "exactly the limit in a full window",
)


# --- processes -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """One measurement of one process."""

    t: float  # epoch seconds
    role: str  # gunicorn-worker | webhook-worker
    pid: int
    rss_mb: float
    fds: int
    sockets: int
    anon_mb: float = 0.0  # of the RSS: anonymous memory (the heap: where a leak shows)
    file_mb: float = 0.0  # of the RSS: file-backed pages (a memory-mapped SQLite database)
    started: float = 0.0  # when the process started (epoch seconds; 0: not known)


def slope_per_hour(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value) points, in value per hour."""
    if len(points) < 2:
        return 0.0
    xs = [x for x, _ in points]
    ys = [y for _, y in points]
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    if spread == 0:
        return 0.0
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread * 3600


def slope_error_per_hour(points: Sequence[tuple[float, float]]) -> float:
    """The standard error of ``slope_per_hour`` (how much of the slope noise could make)."""
    if len(points) < 3:
        return float("inf")
    xs = [x for x, _ in points]
    spread = sum((x - statistics.fmean(xs)) ** 2 for x in xs)
    if spread == 0:
        return float("inf")
    slope = slope_per_hour(points) / 3600
    intercept = statistics.fmean(y for _, y in points) - slope * statistics.fmean(xs)
    residual = sum((y - intercept - slope * x) ** 2 for x, y in points) / (len(points) - 2)
    return (residual / spread) ** 0.5 * 3600


def series(samples: Sequence[Sample]) -> dict[tuple[str, int], list[Sample]]:
    """Samples per process (role, pid), in time order."""
    grouped: dict[tuple[str, int], list[Sample]] = defaultdict(list)
    for sample in sorted(samples, key=lambda s: s.t):
        grouped[(sample.role, sample.pid)].append(sample)
    return dict(grouped)


MEMORY_KINDS = {
    "rss_mb": "RSS",
    "anon_mb": "anonymous memory",
    "file_mb": "file-backed memory",
}


def rss_growth(
    samples: Sequence[Sample],
    started: float,
    warmup: float = 300.0,
    bound_mb_per_hour: float = 5.0,
    minimum_span: float = 300.0,
    kind: str = "rss_mb",
    recycled: Collection[str] = (),
) -> Check:
    """No process's RSS (or, with ``kind``, its anonymous or file-backed part) grew more than
    ``bound_mb_per_hour`` after the warm-up (a linear fit of the samples after ``warmup``
    seconds, with its standard error). Judged only where a process has at least
    ``minimum_span`` seconds of samples after the warm-up — in a shorter run the warm-up
    (imports, caches filling, pools opening) is all there is, and its slope says nothing of a
    leak — else skipped with the slopes reported.

    The processes of a role in ``recycled`` (gunicorn's workers, replaced by a fresh one after
    ``max_requests``) may none of them live that long, and what one gains before it is replaced
    is bounded by the recycling. Such a role is judged as one slot across its processes: by
    how much higher a later process is than an earlier one *at the same age*
    (``equal_age_drift``), so that the warm-up every fresh worker repeats is not read as growth,
    while memory that survives the recycling is. Where no two of its processes were sampled at
    an equal age across ``minimum_span`` seconds, each one that lived long enough is judged on
    its own, as without recycling."""
    what = MEMORY_KINDS[kind]
    name = f"{what} flat after warm-up"
    if not any(getattr(sample, kind) > 0 for sample in samples):
        return Check(name, None, f"{what} was not measured here")
    after = started + warmup
    roles: dict[str, list[list[Sample]]] = defaultdict(list)
    for (role, _), points in series(samples).items():
        roles[role].append(points)
    judged: list[str] = []
    indicative: list[str] = []
    over = False
    for role, lives in roles.items():
        drift = equal_age_drift(lives, after, kind) if role in recycled else None
        if drift is not None and drift.span >= minimum_span:
            over |= drift.slope > bound_mb_per_hour
            own = [
                (points[0].pid, _values(points, kind, max(after, _born(points) + SETTLING)))
                for points in lives
            ]
            judged.append(
                f"{role}, {len(lives)} processes across recycling (compared at equal ages, "
                f"{drift.compared} of them, over {drift.span / 60:.1f} min): "
                f"{drift.slope:+.2f} ± {drift.error:.2f} (each one's own slope after its first "
                "minute, not judged: "
                + ", ".join(f"{pid}: {slope_per_hour(v):+.1f}" for pid, v in own if len(v) > 1)
                + ")"
            )
            continue
        for points in lives:
            role_pid = f"{role} {points[0].pid}"
            # A process started during the run (one replacing a killed worker) has a warm-up
            # of its own.
            values = _values(points, kind, max(after, _born(points) + warmup))
            if len(values) >= 2 and values[-1][0] - values[0][0] >= minimum_span:
                slope = slope_per_hour(values)
                over |= slope > bound_mb_per_hour
                judged.append(f"{role_pid}: {slope:+.2f} ± {slope_error_per_hour(values):.2f}")
            elif len(points) >= 4:  # fewer (a process killed or started by a fault) say nothing
                tail = _values(points[len(points) // 2 :], kind, 0.0)
                indicative.append(f"{role_pid}: {slope_per_hour(tail):+.1f}")
    if not judged:
        return Check(
            name,
            None,
            f"needs {minimum_span / 60:g} min of samples after a {warmup / 60:g} min warm-up "
            f"(a run of at least {(warmup + minimum_span) / 60:g} min); indicative slopes over "
            f"the second half, MB/h: {', '.join(indicative) or 'none'}",
        )
    return Check(
        name,
        not over,
        f"slopes after {warmup / 60:g} min, MB/h ± standard error (bound "
        f"{bound_mb_per_hour:g}): {'; '.join(judged)}",
    )


def _values(points: Sequence[Sample], kind: str, after: float) -> list[tuple[float, float]]:
    return [(s.t, float(getattr(s, kind))) for s in points if s.t >= after]


def _born(points: Sequence[Sample]) -> float:
    """When a process started (its first sample, where the sampler did not know)."""
    return points[0].started or points[0].t


SETTLING = 60.0  # seconds: a fresh worker's imports move its memory by tens of MB within this


@dataclass(frozen=True)
class Drift:
    """How much higher later processes of a slot were than earlier ones at the same age."""

    slope: float  # MB per hour of the run
    error: float  # its standard error
    span: float  # seconds: the longest time between two processes compared at one age
    compared: int  # processes that had an equal-aged partner


def equal_age_drift(
    lives: Iterable[Sequence[Sample]],
    after: float,
    kind: str = "rss_mb",
    age_bin: float = 10.0,
    settling: float = SETTLING,
) -> Drift | None:
    """The slope, in the run's time, of the memory of one slot's processes compared at the same
    age: within each ``age_bin`` of age (at most one sample per process; the sampling interval),
    time and memory are taken relative to their mean, and one slope is fitted through all the
    bins. A flat sawtooth (each fresh worker climbs to the same level) gives 0; a level that
    every next worker starts from and ends at higher gives its rate. Each process's first
    ``settling`` seconds are left out: imports move its memory by tens of MB within seconds,
    so a sample a few seconds apart in age is no comparison. None when no two processes were
    sampled at an equal age after ``after``."""
    bins: dict[int, dict[int, tuple[float, float]]] = defaultdict(dict)
    for life in lives:
        born = _born(life)
        for sample in life:
            if sample.t >= after and sample.t - born >= settling:
                at_age = bins[int((sample.t - born) // age_bin)]
                at_age.setdefault(sample.pid, (sample.t, float(getattr(sample, kind))))
    xs: list[float] = []
    ys: list[float] = []
    groups, span, compared = 0, 0.0, set()
    for at_age in bins.values():
        if len(at_age) < 2:
            continue
        groups += 1
        times = [t for t, _ in at_age.values()]
        values = [v for _, v in at_age.values()]
        mean_t, mean_v = statistics.fmean(times), statistics.fmean(values)
        xs += [t - mean_t for t in times]
        ys += [v - mean_v for v in values]
        span = max(span, max(times) - min(times))
        compared.update(at_age)
    spread = sum(x * x for x in xs)
    if spread == 0:
        return None
    slope = sum(x * y for x, y in zip(xs, ys, strict=True)) / spread
    freedom = len(xs) - groups - 1
    residual = sum((y - slope * x) ** 2 for x, y in zip(xs, ys, strict=True))
    error = (residual / freedom / spread) ** 0.5 if freedom > 0 else float("inf")
    return Drift(slope * 3600, error * 3600, span, len(compared))


def fds_flat(
    samples: Sequence[Sample],
    started: float,
    warmup: float,
    until: float | None = None,
    file_slack: int = 4,
    socket_slack: int = 32,
) -> Check:
    """File descriptors flat under load: for every process sampled from the end of the warm-up
    to ``until`` (the end of the load), the lowest of its last three counts is at most the
    highest of its first three after the warm-up plus a small slack — files and pipes
    ``file_slack``; sockets ``socket_slack``, since client keep-alive connections (one per
    client at most) and database and Redis pool connections come and go with the load. Taking
    the highest first and the lowest last keeps a pool's coming and going from passing for a
    leak, while a leak — a count that keeps rising — still shows."""
    judged, problems = 0, []
    for (role, pid), points in series(samples).items():
        during = [s for s in points if s.t >= started + warmup and (until is None or s.t <= until)]
        if len(during) < 2:
            continue
        judged += 1
        group = max(1, min(3, len(during) // 2))
        first, last = during[:group], during[-group:]
        first_files = max(s.fds - s.sockets for s in first)
        last_files = min(s.fds - s.sockets for s in last)
        if last_files > first_files + file_slack:
            problems.append(f"{role} {pid}: files and pipes {first_files} → {last_files}")
        first_sockets, last_sockets = max(s.sockets for s in first), min(s.sockets for s in last)
        if last_sockets > first_sockets + socket_slack:
            problems.append(f"{role} {pid}: sockets {first_sockets} → {last_sockets}")
    if not judged:
        return Check("file descriptors flat", None, "no process had 4 samples after the warm-up")
    if problems:
        return Check("file descriptors flat", False, "; ".join(problems))
    return Check(
        "file descriptors flat",
        True,
        f"{judged} processes; at the end of the load, files and pipes within +{file_slack} "
        f"and sockets within +{socket_slack} of their count after the warm-up",
    )


# --- webhooks and the database -------------------------------------------------------------------


def webhooks_delivered(
    deliveries: Sequence[dict[str, Any]],
    received: set[tuple[str, str]],
    unverified: int,
) -> Check:
    """Every outbox row was delivered (``succeeded``), and the receiver holds every one of them
    (by endpoint and ``webhook-id``), each signature verified."""
    if not deliveries:
        return Check("no webhook lost", None, "no delivery was queued")
    not_delivered = [d for d in deliveries if d["status"] != "succeeded"]
    missing = [d for d in deliveries if (d["slug"], d["message_id"]) not in received]
    problems = []
    if not_delivered:
        states = Counter(d["status"] for d in not_delivered)
        problems.append(
            f"{len(not_delivered)} deliveries not succeeded ({dict(states)}), e.g. "
            f"{_examples([d['id'] for d in not_delivered])}"
        )
    if missing:
        problems.append(
            f"{len(missing)} never reached the receiver, e.g. "
            f"{_examples([d['message_id'] for d in missing])}"
        )
    if unverified:
        problems.append(f"{unverified} received with a signature that did not verify")
    if problems:
        return Check("no webhook lost", False, "; ".join(problems))
    return Check(
        "no webhook lost",
        True,
        f"{len(deliveries)} deliveries succeeded, each received and verified",
    )


def database_sound(integrity: Sequence[str], foreign_key_problems: Sequence[Any]) -> Check:
    """SQLite: ``PRAGMA integrity_check`` says ``ok`` and ``PRAGMA foreign_key_check`` finds
    nothing; PostgreSQL: the orphan counts (rows whose parent is gone) are all zero."""
    if list(integrity) != ["ok"]:
        return Check("database sound", False, f"integrity check: {_examples(list(integrity))}")
    if foreign_key_problems:
        return Check(
            "database sound",
            False,
            f"{len(foreign_key_problems)} foreign-key problems: "
            f"{_examples(list(foreign_key_problems))}",
        )
    return Check("database sound", True, "integrity ok, no foreign-key problem")


# --- faults --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FaultOutcome:
    """What the clients saw around one fault."""

    statuses: dict[int, int]  # status → count, for requests overlapping the fault window
    api_statuses: dict[int, int]  # the same for /v2 and GraphQL only
    recovery_seconds: float | None  # end of the fault → end of the first success after it
    last_error_after: float | None  # end of the fault → the last error of its kind after it


def observe_fault(
    requests: Sequence[Request],
    start: float,
    end: float,
    grace: float = GRACE_SECONDS,
    until: float | None = None,
) -> FaultOutcome:
    """Status counts of the requests overlapping ``[start, end]`` and how long recovery took:
    from ``end`` to the end of the first 2xx API request that started after it; and the last
    error (5xx or no answer) that started within ``3 × grace`` after it — and before ``until``
    (the next fault's start), so another fault's symptoms are not counted as this one's."""
    horizon = end + grace * 3 if until is None else min(end + grace * 3, until)
    inside = [r for r in requests if r.start <= end and r.end >= start]
    successes = [r for r in requests if r.start >= end and 200 <= r.status < 300 and r.is_api]
    first = min(successes, key=lambda r: r.end, default=None)
    errors = [
        r for r in requests if end <= r.start < horizon and (r.status == 0 or r.status >= 500)
    ]
    return FaultOutcome(
        statuses=dict(sorted(Counter(r.status for r in inside).items())),
        api_statuses=dict(sorted(Counter(r.status for r in inside if r.is_api).items())),
        recovery_seconds=None if first is None else max(0.0, first.end - end),
        last_error_after=max((r.end - end for r in errors), default=None),
    )


def database_outage(requests: Sequence[Request], start: float, end: float) -> Check:
    """While the database was away the API answered the documented 503 with Retry-After (and
    nothing else of the 5xx kind), and it answered 2xx again after, without a restart."""
    inside = [r for r in requests if r.start >= start and r.end <= end and r.is_api]
    documented = sum(1 for r in inside if r.status == 503 and r.retry_after)
    other = Counter(r.status for r in inside if r.status >= 500 and not r.retry_after)
    outcome = observe_fault(requests, start, end)
    problems = []
    if not documented:
        problems.append("no 503 with Retry-After while it was away")
    if other:
        problems.append(f"other 5xx while it was away: {dict(other)}")
    if outcome.recovery_seconds is None:
        problems.append("no API success after it came back")
    recovery = outcome.recovery_seconds
    detail = (
        f"{documented} documented 503s during the outage; first success "
        f"{'-' if recovery is None else f'{recovery:.2f}'} s after it came back"
    )
    return Check(
        "database away: 503 + Retry-After, then recovery",
        not problems,
        "; ".join(problems) if problems else detail,
    )


def redis_outage(requests: Sequence[Request], start: float, end: float) -> Check:
    """While Redis was away the API failed open: API requests kept succeeding (valid keys got
    2xx, none a 5xx); only the dashboard's sign-in may answer 503 (it fails closed)."""
    inside = [r for r in requests if r.start >= start and r.end <= end]
    api = [r for r in inside if r.is_api and r.key != "invalid"]
    served = sum(1 for r in api if 200 <= r.status < 300)
    failed = Counter((r.status, r.name) for r in api if not (200 <= r.status < 300))
    if not api:
        return Check("Redis away: the API fails open", None, "no API request during the outage")
    if failed:
        summary = ", ".join(f"{n}× {status} {name}" for (status, name), n in failed.items())
        return Check(
            "Redis away: the API fails open",
            False,
            f"{served} of {len(api)} API requests succeeded; the rest: {summary}",
        )
    uncounted = sum(1 for r in api if not r.rate_limited_header)
    return Check(
        "Redis away: the API fails open",
        True,
        f"all {served} API requests succeeded ({uncounted} without rate-limit headers: "
        "served unlimited)",
    )
