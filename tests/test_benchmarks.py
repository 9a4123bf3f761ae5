"""The benchmark scripts run (at toy sizes) and check their own numbers, so they do not rot."""

import json

from tests.support import run_cli


def test_head_benchmark_checks_both_implementations_agree(tmp_path):
    result = run_cli("benchmarks/head.py", "--grid", "smoke", "--repeats", "1", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    [row] = json.loads((tmp_path / "head_smoke_cpu.json").read_text())["rows"]
    assert row["same_numbers"] is True and row["vectorised_ms"] > 0 and row["loop_ms"] > 0


def test_gpu_benchmark_smoke_runs_on_any_device(tmp_path):
    result = run_cli("benchmarks/gpu.py", "--smoke", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    rows = json.loads((tmp_path / "gpu_smoke.json").read_text())["rows"]
    assert {r["head"] for r in rows} == {"prototype", "linear"} and all(r["examples_per_s"] > 0 for r in rows)
