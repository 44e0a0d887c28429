"""The benchmarks run end to end (``--quick``): real nodes, both sides measured, ratios printed.

Nothing here judges speed: the machine running the tests may be loaded, so the
ratios only have to be there and be positive numbers.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"

pytestmark = [
    pytest.mark.timeout(300),
    pytest.mark.skipif(
        not all(shutil.which(tool) for tool in ("erl", "erlc", "epmd")),
        reason="needs Erlang/OTP (erl, erlc, epmd)",
    ),
]


def run_quick(script: str, tmp_path: Path) -> tuple[dict[str, float], dict]:
    out_json = tmp_path / f"{script}.json"
    proc = subprocess.run(
        [sys.executable, str(BENCHMARKS / f"{script}.py"), "--quick", "--json", str(out_json)],
        capture_output=True,
        text=True,
        timeout=280,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 0, f"{script} --quick failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    ratios: dict[str, float] = {}
    for line in proc.stdout.splitlines():
        if line.startswith("RATIO "):
            fields = line.split()
            assert len(fields) == 3, f"malformed RATIO line: {line!r}"
            ratios[fields[1]] = float(fields[2])
    return ratios, json.loads(out_json.read_text())


def assert_positive(ratios: dict[str, float], expected: set[str]) -> None:
    assert expected <= set(ratios), f"missing RATIO lines: {sorted(expected - set(ratios))}"
    for name, value in ratios.items():
        assert value > 0 and value != float("inf"), f"RATIO {name} is {value}"


def test_rpc_latency_runs(tmp_path: Path) -> None:
    ratios, payload = run_quick("rpc_latency", tmp_path)
    assert_positive(ratios, {"seq_erpc", "seq_rex", "seq_rex_vs_rpc_call", "par64_erpc", "par64_rex"})
    assert payload["ratios"] == pytest.approx(ratios, rel=1e-3)


def test_decode_throughput_runs(tmp_path: Path) -> None:
    ratios, payload = run_quick("decode_throughput", tmp_path)
    # An item erlang_py cannot decode is reported and left out; Arsenal's side is always there.
    compared = [name for name, item in payload["items"].items() if item["erlang_py_decode_error"] is None]
    assert set(payload["items"]) == {"process_list", "state_map", "trace_tuples"}
    expected = {f"decode_{name}" for name in compared} | ({"decode_corpus"} if compared else set())
    assert_positive(ratios, expected)
    for item in payload["items"].values():
        assert item["terms"] > 0 and item["bytes"] > 0
        assert "decode/arsenal" in item["seconds_per_call"]


def test_rest_list_processes_runs(tmp_path: Path) -> None:
    ratios, payload = run_quick("rest_list_processes", tmp_path)
    assert_positive(ratios, {"rest_list_processes"})
    assert payload["ratios"] == pytest.approx(ratios, rel=1e-3)
    assert payload["params"]["process_count"] >= payload["params"]["spawned_processes"] == 20_000


def test_rest_process_info_runs(tmp_path: Path) -> None:
    ratios, payload = run_quick("rest_process_info", tmp_path)
    assert_positive(ratios, {"rest_info_p50", "rest_info_p99", "rest_info_throughput"})
    assert payload["ratios"] == pytest.approx(ratios, rel=1e-3)
    for figures in payload["figures"].values():
        assert figures["throughput"]["median"] > 0


def test_trace_throughput_runs(tmp_path: Path) -> None:
    ratios, payload = run_quick("trace_throughput", tmp_path)
    assert_positive(ratios, {"trace_throughput"})
    assert payload["ratios"] == pytest.approx(ratios, rel=1e-3)
    for side in ("arsenal", "dbg"):
        assert payload["figures"][side]["median"] > 0
    # Arsenal's sessions ended at max_events, with every event either stored or counted as dropped.
    for r in payload["rounds"]["arsenal"]:
        assert r["end_reason"] == "max_events"
        assert r["events"] + r["dropped"] == payload["params"]["events"]


def test_trace_overhead_runs(tmp_path: Path) -> None:
    ratios, payload = run_quick("trace_overhead", tmp_path)
    expected = {"trace_overhead", "trace_overhead_vs_dbg", "trace_overhead_limited"}
    expected |= {"trace_safety_p50", "trace_safety_p99", "trace_safety_after_p99"}
    assert_positive(ratios, expected)
    assert payload["ratios"] == pytest.approx(ratios, rel=1e-3)
    # The safety trace always ends by one of its limits, never by running out of time.
    assert set(payload["safety"]["end_reasons"]) <= {"rate_limit", "queue_overflow"}
    assert all(phase["samples"] > 0 for phase in payload["safety"]["latency_ms"].values())


def test_sampling_overhead_runs(tmp_path: Path) -> None:
    ratios, payload = run_quick("sampling_overhead", tmp_path)
    # Percentages of one core: the measured overheads may be a hair below zero (noise), never
    # missing or infinite; the projection from the burst is a positive cost.
    expected = {"sampling_overhead_pct_default", "sampling_overhead_pct_1s", "sampling_projected_pct_default"}
    assert expected <= set(ratios)
    assert all(abs(value) < 100 for value in ratios.values())
    assert ratios["sampling_projected_pct_default"] > 0
    assert payload["ratios"] == pytest.approx(ratios, rel=1e-3)
    rounds = payload["rounds"]
    assert set(rounds) == {"idle", "default", "1s"}
    assert all(r["samples"] == 0 for r in rounds["idle"])  # the baseline is really idle
    assert all(r["samples"] >= 1 for r in rounds["1s"])  # and the sampler really sampled
    assert all(b["calls"] == payload["params"]["burst"] for b in payload["burst_rounds"])


@pytest.mark.skipif(
    not all(shutil.which(tool) for tool in ("elixir", "mix")), reason="needs Elixir (elixir, mix)"
)
def test_sandbox_runs(tmp_path: Path) -> None:
    ratios, payload = run_quick("sandbox", tmp_path)
    assert_positive(ratios, {"sandbox_start_empty", "sandbox_start_app", "sandbox_hot_swap"})
    assert payload["ratios"] == pytest.approx(ratios, rel=1e-3)
    # Every part measured both sides in every round (the script checks each swap converted all
    # the processes on both sides, and fails otherwise).
    for part in ("start_empty", "start_app", "hot_swap"):
        for side in ("arsenal", "by_hand"):
            rounds = payload["rounds"][part][side]
            assert len(rounds) == payload["params"]["rounds"]
            assert all(r["total_s"] > 0 for r in rounds)
    assert payload["params"]["processes"] == 100


def test_cluster_runs(tmp_path: Path) -> None:
    ratios, payload = run_quick("cluster", tmp_path)
    assert_positive(
        ratios,
        {
            "cluster_health_vs_slowest_node",
            "cluster_process_list_vs_slowest_node",
            "cluster_health_vs_gathered_calls",
        },
    )
    assert payload["nodes"] == 4 and payload["missing"] == 0
    assert payload["ratios"] == pytest.approx(ratios, rel=1e-3)
