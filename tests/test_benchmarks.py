"""The benchmark scripts run (at toy sizes) and check their own numbers, so they do not rot."""

import json

import pytest

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


@pytest.mark.slow
def test_serving_benchmark_smoke_runs_and_checks_onnx_against_torch(tiny_run, tmp_path):
    model = tmp_path / "model"
    exported = run_cli(
        "export.py", f"ckpt_path={tiny_run}", f"out={model}", "onnx=true", f"hydra.run.dir={tmp_path / 'log'}"
    )
    assert exported.returncode == 0, exported.stderr[-2000:]
    args = ["--examples", "8", "--rounds", "1", "--requests", "12", "--concurrency", "3", "--port", "0"]
    result = run_cli("benchmarks/serving.py", "--model", str(model), *args, "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr[-2000:]
    found = json.loads((tmp_path / "serving.json").read_text())
    assert {(r["batch"], r["runtime"]) for r in found["predict"]} == {
        (b, r) for b in (1, 32) for r in ("torch eager", "onnxruntime")
    }
    assert all(r["max_abs_logit_diff"] <= 1e-4 and r["examples_per_s"] > 0 for r in found["predict"])
    assert [r["endpoint"] for r in found["server"]] == ["/predict", "/explain"]
    assert all(r["errors"] == 0 and r["requests"] == 12 for r in found["server"])
