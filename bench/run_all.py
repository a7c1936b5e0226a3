"""Run every benchmark in one go and print one table of their figures against their targets.

Run from the repository root:
``python bench/run_all.py [--seconds 3] [--pairs 7] [--approvals 1000000] [--only NAME,…]
[--strict] [--markdown] [--json PATH]``

Each benchmark runs as its own process (``python bench/NAME.py --json …``: one seeds its
databases and sets its environment without touching the next one's), its output shown as it
goes, prefixed with its name:

* ``me_vs_typical``: ``GET /v2/me`` against the stack a Flask developer would write
  (``bench/typical_app.py``), in requests a second and in worker CPU a request;
* ``invalid_keys``: ``GET /v2/me`` while 100 invalid-key requests a second arrive, and, as a
  control, while 100 valid-key requests a second arrive;
* ``approvals_page``: a page of 20 approvals on 1,000,000 approvals against 1,000;
* ``graphql_vs_rest``: the same page over GraphQL against REST;
* ``graphql_worst``: the CPU of the worst GraphQL documents within the limits (target: the
  slowest at most 20 ms), in this process (``--seconds`` aside: it counts requests);
* ``webhook_throughput``: webhook deliveries one worker sends a second to a fast loopback
  receiver (an absolute figure: the median of the rounds, its sides the median and the target).

``--seconds`` (per side in each pair) and ``--pairs`` are passed to every one; without them each
uses its own defaults (3 s, 7 pairs). Then one table: each figure, its target, its result (the
median of the per-pair ratios, with their min–max, and each side's median) and PASS, FAIL,
INFO (reported beside the targets, not judged) or ERROR (the benchmark did not finish: its
last line). Its last row, SKIP here, is the 30-minute soak: ``loadtest/run.py`` measures it.

The exit code is 0 whatever the table says, unless ``--strict``: then 1 for any FAIL or ERROR.
"""

from __future__ import annotations

import argparse
import collections
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import harness  # noqa: E402

BENCHMARKS = [
    "me_vs_typical",
    "invalid_keys",
    "approvals_page",
    "graphql_vs_rest",
    "graphql_worst",
    "webhook_throughput",
]
SOAK = (
    "30-minute one-box soak: p99, failures, web worker memory slope",
    "p99 <= 50 ms, 0 failures, < 5 MB/h",
    "not measured here: python loadtest/run.py --profile one-box --minutes 30",
    "",
    "SKIP",
)


def run(name: str, args: argparse.Namespace, report: Path) -> tuple[int, list[str]]:
    """Run one benchmark, echoing its output; return its exit code and its last lines."""
    command = [sys.executable, "-u", str(ROOT / "bench" / f"{name}.py"), "--json", str(report)]
    if args.seconds is not None:
        command += ["--seconds", str(args.seconds)]
    if args.pairs is not None:
        command += ["--pairs", str(args.pairs)]
    if name == "approvals_page" and args.approvals is not None:
        command += ["--approvals", str(args.approvals)]
    tail: collections.deque[str] = collections.deque(maxlen=20)
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    )
    try:
        for line in process.stdout:
            line = line.rstrip("\n")
            tail.append(line)
            print(f"[{name}] {line}", flush=True)
        return process.wait(), list(tail)
    except KeyboardInterrupt:
        # The benchmark stops its own servers on SIGINT (its ``finally`` blocks).
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
        raise


def result(figure: harness.Figure) -> tuple[str, str]:
    """The result column (median and min–max) and the sides column (each side's median)."""
    ratio = figure.ratio
    if ratio is None:
        return figure.note, ""
    return (
        f"{ratio.median:.2f} ({ratio.low:.2f}–{ratio.high:.2f}, {ratio.pairs} pairs)",
        f"{ratio.a:,.0f} vs {ratio.b:,.0f} {figure.unit}",
    )


def table(rows: list[tuple[str, str, str, str, str]], markdown: bool) -> str:
    header = ("figure", "target", "result: median (min–max)", "sides (medians)", "verdict")
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * width for width in widths))
    for row in rows:
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
    return "\n".join(line.rstrip() for line in lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, help="seconds per side in each pair, for all")
    parser.add_argument("--pairs", type=int, help="alternating pairs per figure, for all")
    parser.add_argument(
        "--approvals", type=int, help="the large database of bench/approvals_page.py"
    )
    parser.add_argument(
        "--only", help=f"comma-separated benchmarks to run (of {', '.join(BENCHMARKS)})"
    )
    parser.add_argument("--strict", action="store_true", help="exit 1 on any FAIL or ERROR")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    parser.add_argument("--json", metavar="PATH", help="also write every figure to PATH")
    args = parser.parse_args()
    names = BENCHMARKS
    if args.only:
        names = [name.strip().removesuffix(".py") for name in args.only.split(",")]
        unknown = set(names) - set(BENCHMARKS)
        if unknown:
            parser.error(f"no such benchmark: {', '.join(sorted(unknown))}")

    rows: list[tuple[str, str, str, str, str]] = []
    timings, pinnings, everything = [], set(), {}
    started_all = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="discountflow-bench-all-") as folder:
        for name in names:
            report = Path(folder) / f"{name}.json"
            started = time.monotonic()
            code, tail = run(name, args, report)
            timings.append((name, time.monotonic() - started))
            if code != 0 or not report.exists():
                last = next((line for line in reversed(tail) if line.strip()), "no output")
                rows.append((f"{name}.py", "", f"exit code {code}: {last[:120]}", "", "ERROR"))
                continue
            figures, pinning = harness.load_figures(report)
            pinnings.add(pinning)
            everything[name] = json.loads(report.read_text())
            for figure_name, figure in figures.items():
                rows.append(
                    (
                        figure_name,
                        str(figure.target) if figure.target else "—",
                        *result(figure),
                        figure.verdict,
                    )
                )
    total = time.monotonic() - started_all
    rows.append(SOAK)

    print()
    settings = (
        f"{args.seconds if args.seconds is not None else harness.SECONDS:g} s per side, "
        f"{args.pairs if args.pairs is not None else harness.PAIRS} pairs"
    )
    print(f"DiscountFlow benchmarks ({settings}; {'; '.join(sorted(pinnings)) or 'no figures'})")
    print(table(rows, args.markdown))
    print()
    print(
        "time: "
        + ", ".join(f"{name} {seconds / 60:.1f} min" for name, seconds in timings)
        + f"; all {total / 60:.1f} min"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(everything, indent=2))
    failed = [row for row in rows if row[-1] in ("FAIL", "ERROR")]
    return 1 if args.strict and failed else 0


if __name__ == "__main__":
    sys.exit(main())
