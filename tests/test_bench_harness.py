"""The benchmarks' method (bench/harness.py) and their one table (bench/run_all.py), without
starting a server: the order of the sides, the figure reported, its verdict and its report."""

from __future__ import annotations

import argparse

import pytest

from bench import harness, run_all


def test_pairs_alternate_and_the_figure_is_the_median_of_per_pair_ratios():
    calls = []
    a_values = iter([10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0])
    b_values = iter([10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 100.0])

    def side_a():
        calls.append("A")
        return next(a_values)

    def side_b():
        calls.append("B")
        return next(b_values)

    ratio = harness.paired(side_a, side_b, 7)
    assert "".join(calls) == "AB" + "BA" + "AB" + "BA" + "AB" + "BA" + "AB"
    # per pair: 1, 2, 3, 4, 5, 6, 0.7
    assert ratio.median == 3.0
    assert (ratio.low, ratio.high) == (0.7, 6.0)
    assert (ratio.a, ratio.b, ratio.pairs) == (40.0, 10.0, 7)
    assert str(ratio) == "3.00 (min 0.70, max 6.00, 7 pairs)"


@pytest.mark.parametrize(
    ("target", "median", "verdict"),
    [
        (harness.Target(0.85), 0.85, "PASS"),
        (harness.Target(0.85), 0.84, "FAIL"),
        (harness.Target(1.5, at_least=False), 1.5, "PASS"),
        (harness.Target(1.5, at_least=False), 1.51, "FAIL"),
        (None, 0.1, "INFO"),
    ],
)
def test_a_figure_is_judged_against_its_target(target, median, verdict):
    figure = harness.Figure(harness.Ratio(median, median, median, 1.0, 1.0, 7), target)
    assert figure.verdict == verdict


def test_a_skipped_figure_says_why():
    figure = harness.skipped("Redis at redis://x unreachable", harness.Target(0.6))
    assert figure.verdict == "SKIP"
    assert figure.line("scale-out") == "scale-out: SKIP (Redis at redis://x unreachable)"


def test_figures_written_for_run_all_read_back_the_same(tmp_path):
    figures = {
        "throughput": harness.Figure(
            harness.Ratio(0.9, 0.8, 1.0, 900.0, 1000.0, 7), harness.Target(0.85)
        ),
        "cpu": harness.Figure(
            harness.Ratio(1.4, 1.3, 1.6, 280.0, 200.0, 7),
            harness.Target(1.5, at_least=False),
            unit="µs",
        ),
        "postgres": harness.skipped("PostgreSQL unreachable"),
    }
    harness.save(str(tmp_path / "figures.json"), figures, "server pinned to core 0")
    assert harness.load_figures(tmp_path / "figures.json") == (
        figures,
        "server pinned to core 0",
    )


def test_every_benchmark_takes_seconds_pairs_and_json():
    parser = argparse.ArgumentParser()
    harness.arguments(parser)
    args = parser.parse_args(["--seconds", "1", "--pairs", "3", "--json", "out.json"])
    assert (args.seconds, args.pairs, args.json) == (1.0, 3, "out.json")
    assert parser.parse_args([]).pairs == 7


def test_the_table_has_one_row_per_figure():
    figure = harness.Figure(harness.Ratio(0.9, 0.8, 1.0, 900.0, 1000.0, 7), harness.Target(0.85))
    rows = [("GET /v2/me vs bare", str(figure.target), *run_all.result(figure), figure.verdict)]
    text = run_all.table(rows, markdown=False)
    assert "0.90 (0.80–1.00, 7 pairs)" in text
    assert "900 vs 1,000 req/s" in text
    assert text.splitlines()[-1].endswith("PASS")
    assert run_all.table(rows, markdown=True).splitlines()[2].startswith("| GET /v2/me vs bare |")
