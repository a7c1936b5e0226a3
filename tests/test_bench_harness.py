"""The benchmarks' method (bench/harness.py) and their one table (bench/run_all.py), without
starting a server: the order of the sides, the figures reported, their verdicts and report."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from bench import harness, invalid_keys, run_all


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


def test_one_set_of_rounds_gives_requests_a_second_and_worker_cpu_a_request():
    rounds = [
        # (A, B): requests answered, seconds, worker CPU seconds
        (harness.Round(3000, 1.0, 0.9), harness.Round(1000, 1.0, 0.9)),
        (harness.Round(2000, 1.0, 1.0), harness.Round(1000, 1.0, 1.0)),
        (harness.Round(4000, 2.0, 1.0), harness.Round(1000, 2.0, 2.0)),
    ]
    throughput, cpu = harness.throughput_and_cpu(
        rounds, (harness.Target(2.0), harness.Target(0.5, at_least=False))
    )
    # req/s per pair: 3000/1000, 2000/1000, 2000/500; µs a request: 300/900, 500/1000, 250/2000
    assert (throughput.ratio.median, throughput.ratio.low, throughput.ratio.high) == (3.0, 2.0, 4.0)
    assert (throughput.ratio.a, throughput.ratio.b) == (2000.0, 1000.0)
    assert throughput.verdict == "PASS"
    assert cpu.ratio.median == pytest.approx(1 / 3)
    assert (cpu.ratio.low, cpu.ratio.high) == pytest.approx((0.125, 0.5))
    assert (cpu.ratio.a, cpu.ratio.b) == pytest.approx((300.0, 1000.0))
    assert (cpu.unit, cpu.verdict) == ("µs", "PASS")


def test_a_round_in_which_a_stalled_server_answered_nothing_still_counts():
    stalled, served = harness.Round(0, 1.0, 1.0), harness.Round(900, 1.0, 0.9)
    assert stalled.cpu_us == float("inf")
    throughput = harness.ratio([(stalled, served)], lambda r: r.per_second)
    assert (throughput.median, throughput.a, throughput.b) == (0.0, 0.0, 900.0)
    assert harness.ratio([(served, stalled)], lambda r: r.per_second).median == float("inf")


@pytest.mark.parametrize(
    ("report", "requests", "seconds"),
    [
        ("  8123 requests in 3.00s, 2.41MB read\nRequests/sec:   2707.67\n", 8123, 3.0),
        ("  162000 requests in 1.00m, 48.1MB read\n", 162000, 60.0),
        ("  12 requests in 999.50ms, 3.6KB read\n", 12, 0.9995),
    ],
)
def test_requests_and_their_duration_are_read_from_wrks_report(report, requests, seconds):
    assert harness.parse_wrk(report) == (requests, pytest.approx(seconds))


def test_enough_keys_that_none_nears_the_limit_in_a_minute():
    # 6,000 req/s for 22 s over 165 keys: 800 each; a minute at most is loaded
    assert harness.keys_needed(22) == 165
    assert harness.keys_needed(600) == harness.keys_needed(60) == 450
    assert harness.keys_needed(1) == 40


def test_an_invalid_key_names_the_real_keys_lookup_id_with_a_wrong_secret():
    real = "sk_live_iafwEOmy3ceo_BFqa0hpPFEmWE1g5PGM7yy4XQ7mu"  # made by `flask keys generate`
    assert invalid_keys.checksum(real[:-6]) == real[-6:]
    bad = invalid_keys.wrong_secret(real, 7)
    assert bad == "sk_live_iafwEOmy3ceo_0000000000000000000007" + invalid_keys.checksum(bad[:-6])
    assert len(bad) == len(real) and bad != invalid_keys.wrong_secret(real, 8)


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
    rows = [("GET /v2/me under a flood", str(figure.target), *run_all.result(figure), "PASS")]
    text = run_all.table([*rows, run_all.SOAK], markdown=False)
    assert "0.90 (0.80–1.00, 7 pairs)" in text
    assert "900 vs 1,000 req/s" in text
    assert text.splitlines()[-2].endswith("PASS")
    assert "loadtest/run.py" in text.splitlines()[-1]
    markdown = run_all.table(rows, markdown=True).splitlines()
    assert markdown[2].startswith("| GET /v2/me under a flood | >= 0.85 |")


@pytest.mark.parametrize("name", run_all.BENCHMARKS)
def test_each_benchmark_runs_alone(name):
    out = subprocess.run(
        [sys.executable, f"bench/{name}.py", "--help"],
        cwd=harness.ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "--seconds" in out and "--pairs" in out and "--json" in out
