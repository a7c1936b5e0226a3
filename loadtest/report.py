"""``report.md`` and the PNG plots of a load run (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loadtest.checks import (
    SETTLING,
    BudgetWindow,
    Check,
    FaultOutcome,
    Request,
    Sample,
    series,
    slope_per_hour,
)
from loadtest.faults import FaultEvent

BUCKET_SECONDS = 10.0


def percentile(values: Sequence[float], share: float) -> float:
    """Nearest-rank percentile (``share`` 0-100) of ``values``; 0 for none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(share / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class EndpointRow:
    name: str
    requests: int
    failures: int
    statuses: str
    p50: float
    p95: float
    p99: float
    per_second: float


def endpoint_table(requests: Sequence[Request], seconds: float) -> list[EndpointRow]:
    """Per endpoint (Locust's name): requests, failures, statuses, p50/p95/p99 in ms, req/s."""
    grouped: dict[tuple[str, str], list[Request]] = defaultdict(list)
    for request in requests:
        grouped[(request.method, request.name)].append(request)
    everything = [("", "All requests")]
    rows = []
    for method, name in sorted(grouped) + everything:
        chosen = (
            list(requests) if name == "All requests" and not method else grouped[(method, name)]
        )
        durations = [r.duration_ms for r in chosen]
        statuses = Counter(r.status for r in chosen)
        rows.append(
            EndpointRow(
                name=f"{method} {name}".strip(),
                requests=len(chosen),
                failures=sum(1 for r in chosen if not r.ok),
                statuses=", ".join(f"{s or 'none'}: {n}" for s, n in sorted(statuses.items())),
                p50=percentile(durations, 50),
                p95=percentile(durations, 95),
                p99=percentile(durations, 99),
                per_second=len(chosen) / seconds if seconds else 0.0,
            )
        )
    return rows


@dataclass(frozen=True)
class Bucket:
    start: float  # seconds since the load began
    per_second: float
    errors_per_second: float  # not ok, as the clients judged
    p50: float
    p95: float
    p99: float


def buckets(
    requests: Sequence[Request],
    begin: float,
    size: float = BUCKET_SECONDS,
    seconds: float | None = None,
) -> list[Bucket]:
    """Throughput and latency per ``size`` seconds of the run (whole buckets only, when the
    run's length ``seconds`` is given: the last few requests as Locust stops say nothing)."""
    grouped: dict[int, list[Request]] = defaultdict(list)
    for request in requests:
        grouped[int((request.start - begin) // size)].append(request)
    rows = []
    for index in sorted(grouped):
        if seconds is not None and (index + 1) * size > seconds + 1:
            continue
        chosen = grouped[index]
        durations = [r.duration_ms for r in chosen]
        rows.append(
            Bucket(
                start=index * size,
                per_second=len(chosen) / size,
                errors_per_second=sum(1 for r in chosen if not r.ok) / size,
                p50=percentile(durations, 50),
                p95=percentile(durations, 95),
                p99=percentile(durations, 99),
            )
        )
    return rows


def failure_kinds(requests: Sequence[Request]) -> list[tuple[str, int]]:
    """Failures (as the clients judged them) by kind: status and endpoint, or the error."""
    kinds: Counter[str] = Counter()
    for request in requests:
        if request.ok:
            continue
        if request.status == 0:
            kinds[f"no answer ({request.error[:60] or 'connection error'}) on {request.name}"] += 1
        else:
            kinds[f"{request.status} on {request.method} {request.name}"] += 1
    return kinds.most_common()


@dataclass
class RunReport:
    """Everything ``report.md`` says about one run."""

    title: str
    settings: list[tuple[str, str]]
    begin: float
    seconds: float
    requests: list[Request]
    samples: list[Sample]
    checks: list[Check]
    faults: list[FaultEvent] = field(default_factory=list)
    fault_outcomes: list[FaultOutcome] = field(default_factory=list)
    budget: list[BudgetWindow] = field(default_factory=list)
    budget_limit: int = 500
    notes: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    warmup: float = 300.0


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def write_report(report: RunReport, folder: Path) -> Path:
    """Write ``report.md`` and the plots into ``folder``; return the report's path."""
    plots = write_plots(report, folder)
    lines: list[str] = [f"# {report.title}", ""]
    failed = [c for c in report.checks if c.failed]
    verdict = "**FAILED**" if failed else "**passed**"
    lines += [f"Verdict: {verdict} ({len(failed)} of {len(report.checks)} checks failed).", ""]
    lines += ["## Settings", "", "| Setting | Value |", "| --- | --- |"]
    lines += [f"| {name} | {value} |" for name, value in report.settings]
    lines += ["", "## Checks", "", "| Check | Result | Detail |", "| --- | --- | --- |"]
    for check in report.checks:
        detail = check.detail.replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {check.name} | {check.label} | {detail} |")
    ok = sum(1 for r in report.requests if r.ok)
    lines += [
        "",
        "## Requests",
        "",
        f"{len(report.requests)} requests in {report.seconds:.0f} s "
        f"({len(report.requests) / report.seconds if report.seconds else 0:.1f}/s), "
        f"{len(report.requests) - ok} failures as the clients judged them.",
        "",
        "### Failures by kind",
        "",
    ]
    kinds = failure_kinds(report.requests)
    if kinds:
        lines += ["| Kind | Count |", "| --- | --- |"]
        lines += [f"| {kind.replace('|', '/')} | {count} |" for kind, count in kinds]
    else:
        lines.append("None.")
    lines += [
        "",
        "### Latency per endpoint (ms)",
        "",
        "| Endpoint | Requests | Failures | Statuses | p50 | p95 | p99 | req/s |",
        "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    for row in endpoint_table(report.requests, report.seconds):
        lines.append(
            f"| {row.name} | {row.requests} | {row.failures} | {row.statuses} | "
            f"{row.p50:.0f} | {row.p95:.0f} | {row.p99:.0f} | {row.per_second:.2f} |"
        )
    lines += [
        "",
        "### Throughput and latency over time",
        "",
        f"Per {BUCKET_SECONDS:g} s from the start of the load.",
        "",
        "| From (s) | req/s | failures/s | p50 ms | p95 ms | p99 ms |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for bucket in _thin(buckets(report.requests, report.begin, seconds=report.seconds), 40):
        lines.append(
            f"| {bucket.start:.0f} | {bucket.per_second:.1f} | {bucket.errors_per_second:.2f} | "
            f"{bucket.p50:.0f} | {bucket.p95:.0f} | {bucket.p99:.0f} |"
        )
    lines += _memory_section(report)
    lines += _budget_section(report)
    lines += _faults_section(report)
    if report.notes:
        lines += ["", "## Notes", ""] + [f"- {note}" for note in report.notes]
    lines += ["", "## Files", ""]
    lines += [f"- `{name}`" for name in sorted(report.files + [p.name for p in plots])]
    path = folder / "report.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _thin(rows: list[Any], most: int) -> list[Any]:
    """At most ``most`` rows, evenly spaced (first and last kept)."""
    if len(rows) <= most:
        return rows
    step = (len(rows) - 1) / (most - 1)
    return [rows[round(index * step)] for index in range(most)]


def _memory_section(report: RunReport) -> list[str]:
    lines = [
        "",
        "## Memory and file descriptors",
        "",
        "Sampled every 10 s. Slope: least-squares fit of RSS after the first "
        f"{report.warmup / 60:g} min and after the process's own first minute (over the whole "
        "series when shorter), MB per hour. Where gunicorn recycled its workers (see Notes), "
        "the check compares each worker with the ones before it at the same age rather than "
        "judging each on its own; its detail above says what it judged.",
        "",
        "RSS is split into its anonymous part (the heap: where a leak shows) and its "
        "file-backed part (mapped files, such as SQLite's memory-mapped database, which grows "
        "as the database does; the OS may drop those pages at any time).",
        "",
        "| Process | Sampled (s) | Samples | RSS first → last (MB) | RSS slope (MB/h) |"
        " anonymous first → last | anonymous slope | file-backed first → last |"
        " fds first → last | sockets first → last |",
        "| --- | --- | ---: | --- | ---: | --- | ---: | --- | --- | --- |",
    ]
    for (role, pid), points in series(report.samples).items():
        born = points[0].started or points[0].t
        since = max(report.begin + report.warmup, born + SETTLING)
        after = [s for s in points if s.t >= since]
        fitted = after if len(after) >= 2 else points
        rss_slope = slope_per_hour([(s.t, s.rss_mb) for s in fitted])
        anon_slope = slope_per_hour([(s.t, s.anon_mb) for s in fitted])
        whole = "" if len(after) >= 2 else " (whole run)"
        first, last = points[0], points[-1]
        lines.append(
            f"| {role} {pid} | {first.t - report.begin:.0f} → {last.t - report.begin:.0f} | "
            f"{len(points)} | {first.rss_mb:.1f} → {last.rss_mb:.1f} | "
            f"{rss_slope:+.1f}{whole} | {first.anon_mb:.1f} → {last.anon_mb:.1f} | "
            f"{anon_slope:+.1f}{whole} | {first.file_mb:.1f} → {last.file_mb:.1f} | "
            f"{first.fds} → {last.fds} | {first.sockets} → {last.sockets} |"
        )
    processes = series(report.samples)
    if processes:
        lines += ["", "RSS over time (MB):", ""]
        keys = list(processes)
        lines.append("| t (s) | " + " | ".join(f"{role} {pid}" for role, pid in keys) + " |")
        lines.append("| ---: |" + " ---: |" * len(keys))
        moments = sorted({round(s.t - report.begin) // 10 * 10 for s in report.samples})
        for moment in _thin(moments, 30):
            cells = []
            for key in keys:
                near = [s for s in processes[key] if round(s.t - report.begin) // 10 * 10 == moment]
                cells.append(f"{near[0].rss_mb:.1f}" if near else "")
            lines.append(f"| {moment:.0f} | " + " | ".join(cells) + " |")
    return lines


def _budget_section(report: RunReport) -> list[str]:
    lines = [
        "",
        "## The over-budget key",
        "",
        f"One key sent `GET /v2/me` at about 15/s (900/min) against {report.budget_limit} per "
        "minute. The limiter's window is a moving one, so fixed windows are only a view: each "
        "row below is 60 s from the key's first request (by the end of each request). The "
        "verdicts above judge the moving window itself: never more than the limit in any 60 s, "
        "no refusal while fewer than the limit could have been admitted in the 60 s before it, "
        "and exactly the limit admitted before the first refusal of a fresh budget.",
        "",
        "| Window from (s) | 2xx counted | 2xx uncounted (fail-open) | 429 | other | full |",
        "| ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for row in report.budget:
        lines.append(
            f"| {row.start - report.begin:.0f} | {row.admitted} | {row.uncounted} | "
            f"{row.refused} | {row.other} | {'yes' if row.full else 'no'} |"
        )
    return lines


def _faults_section(report: RunReport) -> list[str]:
    if not report.faults:
        return []
    lines = [
        "",
        "## Faults",
        "",
        "Times from the start of the load. *Seen* counts the statuses of every request that "
        "overlapped the fault (0: no answer). *Recovery*: from the end of the fault to the "
        "end of the first successful API request that started after it. *Last error*: the "
        "last 5xx or unanswered request up to 30 s after the fault ended.",
        "",
        "| Fault | From (s) | To (s) | Detail | Seen (status: count) | Recovery (s) | "
        "Last error (s after) |",
        "| --- | ---: | ---: | --- | --- | ---: | ---: |",
    ]
    for event, outcome in zip(report.faults, report.fault_outcomes, strict=True):
        seen = ", ".join(f"{status}: {n}" for status, n in outcome.statuses.items())
        lines.append(
            f"| {event.name} | {event.started - report.begin:.1f} | "
            f"{event.ended - report.begin:.1f} | {event.detail} | {seen} | "
            f"{_fmt(outcome.recovery_seconds, 2)} | {_fmt(outcome.last_error_after, 1)} |"
        )
    return lines


def write_plots(report: RunReport, folder: Path) -> list[Path]:
    """latency.png, throughput.png and memory.png; fault windows shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = buckets(report.requests, report.begin, seconds=report.seconds)
    middles = [b.start + BUCKET_SECONDS / 2 for b in rows]  # each bucket drawn at its middle
    paths = []

    def shade(axis: Any) -> None:
        for event in report.faults:
            axis.axvspan(
                event.started - report.begin, event.ended - report.begin, color="red", alpha=0.12
            )

    figure, axis = plt.subplots(figsize=(10, 4))
    for label, values in (
        ("p50", [b.p50 for b in rows]),
        ("p95", [b.p95 for b in rows]),
        ("p99", [b.p99 for b in rows]),
    ):
        axis.plot(middles, values, label=label)
    shade(axis)
    axis.set(xlabel="seconds since start", ylabel="ms", title="Latency per 10 s (all requests)")
    axis.legend()
    figure.tight_layout()
    paths.append(folder / "latency.png")
    figure.savefig(paths[-1])
    plt.close(figure)

    figure, axis = plt.subplots(figsize=(10, 4))
    axis.plot(middles, [b.per_second for b in rows], label="requests/s")
    axis.plot(middles, [b.errors_per_second for b in rows], label="failures/s")
    shade(axis)
    axis.set(xlabel="seconds since start", ylabel="per second", title="Throughput")
    axis.legend()
    figure.tight_layout()
    paths.append(folder / "throughput.png")
    figure.savefig(paths[-1])
    plt.close(figure)

    figure, (rss, fds) = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    for (role, pid), points in series(report.samples).items():
        times = [s.t - report.begin for s in points]
        line = rss.plot(times, [s.rss_mb for s in points], marker=".", label=f"{role} {pid}")
        rss.plot(
            times, [s.anon_mb for s in points], linestyle="--", color=line[0].get_color()
        )  # its anonymous part
        fds.plot(times, [s.fds for s in points], marker=".", label=f"{role} {pid}")
    shade(rss)
    shade(fds)
    rss.set(
        ylabel="RSS (MB)",
        title="Memory (solid: RSS, dashed: its anonymous part) and descriptors per process",
    )
    fds.set(xlabel="seconds since start", ylabel="open fds")
    rss.legend(fontsize="small")
    figure.tight_layout()
    paths.append(folder / "memory.png")
    figure.savefig(paths[-1])
    plt.close(figure)
    return paths
