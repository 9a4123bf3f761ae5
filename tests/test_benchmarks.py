"""The benchmark scripts run (at toy sizes) and check their own numbers, so they do not rot."""

import json

import pytest

from tests.support import PROTOLM, run_cli


def test_head_benchmark_checks_both_implementations_agree(tmp_path):
    result = run_cli("benchmarks/head.py", "--grid", "smoke", "--repeats", "1", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    [row] = json.loads((tmp_path / "head_smoke_cpu.json").read_text())["rows"]
    assert row["same_numbers"] is True and row["vectorised_ms"] > 0 and row["loop_ms"] > 0


GPU_ARCHS = [["--arch", "roberta-large"], ["--arch", "llama-1b", "--lora"]]


@pytest.mark.parametrize("arch", GPU_ARCHS, ids=["roberta", "llama-lora"])
def test_gpu_benchmark_smoke_runs_on_any_device(arch, tmp_path):
    result = run_cli("benchmarks/gpu.py", "--smoke", *arch, "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    rows = json.loads((tmp_path / "gpu_smoke.json").read_text())["rows"]
    assert {r["head"] for r in rows} == {"prototype", "linear"} and all(r["examples_per_s"] > 0 for r in rows)
    if "--lora" in arch:
        assert all(r["trainable_m"] < 0.5 * r["params_m"] for r in rows)


@pytest.mark.slow
def test_serving_benchmark_smoke_runs_and_checks_onnx_against_torch(tiny_run, tmp_path):
    model = tmp_path / "model"
    exported = run_cli(
        *PROTOLM, "export", f"model={tiny_run}", f"out={model}", "onnx=true", f"hydra.run.dir={tmp_path / 'log'}"
    )
    assert exported.returncode == 0, exported.stderr[-2000:]
    args = ["--examples", "8", "--rounds", "1", "--requests", "12", "--concurrency", "3"]
    result = run_cli("benchmarks/serving.py", "--model", str(model), *args, "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr[-2000:]
    found = json.loads((tmp_path / "serving.json").read_text())
    assert {(r["batch"], r["runtime"]) for r in found["predict"]} == {
        (b, r) for b in (1, 32) for r in ("torch eager", "onnxruntime")
    }
    assert all(r["max_abs_logit_diff"] <= 1e-4 and r["examples_per_s"] > 0 for r in found["predict"])
    phases = [(r["server"], r["endpoint"], r["concurrency"]) for r in found["server"]]
    assert phases == [("this checkout", path, n) for path in ("/predict", "/explain") for n in (1, 3)]
    assert all(r["errors"] == 0 and r["requests"] == 12 for r in found["server"])
    assert all(r["in_flight_over_one_at_a_time"] > 0 for r in found["server_speedup"])


def test_peers_explain_smoke_scores_every_explainer(tiny_run, tmp_path):
    args = [
        "--what",
        "explain",
        "--prototype-run",
        str(tiny_run),
        "--start",
        "28",
        "--examples",
        "6",
        "--ig-steps",
        "4",
    ]
    result = run_cli(
        "benchmarks/peers.py", *args, "--lime-samples", "12", "--shap-samples", "12", "--out", str(tmp_path)
    )
    assert result.returncode == 0, result.stderr[-2000:]
    found = json.loads((tmp_path / "peers_explain.json").read_text())
    # From the 28th of the 32 reported examples: the 4 left, and the record says which.
    assert (found["settings"]["start"], found["settings"]["examples"]) == (28, 4)
    rows = {r["rationale"]: r for r in found["rows"]}
    explainers = ("greedy_gates", "gates", "attention", "contribution", "integrated_gradients", "lime", "kernel_shap")
    assert set(rows) == {*explainers, "random"}
    assert all(rows[name]["ms_per_example"] > 0 for name in explainers)
    assert found["derived"]["best_posthoc"] in ("integrated_gradients", "lime", "kernel_shap")
    # Every rationale's AOPC is a drop in a probability: within [-1, 1].
    assert all(-1 <= r[k] <= 1 for r in rows.values() for k in ("aopc_comprehensiveness", "aopc_sufficiency"))


def test_peers_explain_refuses_a_start_past_the_reported_split(tiny_run, tmp_path):
    args = ["--what", "explain", "--prototype-run", str(tiny_run), "--start", "32", "--out", str(tmp_path)]
    result = run_cli("benchmarks/peers.py", *args)
    assert result.returncode != 0
    assert "--start=32: the reported split has 32 examples; give 0 to 31" in result.stderr
    assert not (tmp_path / "peers_explain.json").exists()


@pytest.mark.slow
def test_peers_train_smoke_runs_protolm_and_the_hf_trainer_on_the_same_examples(tmp_path):
    common = ["data.max_train_samples=64", "data.max_eval_samples=32"]
    args = ["--what", "train", "--rounds", "1", "--common", *common, "--work", str(tmp_path / "w")]
    result = run_cli("benchmarks/peers.py", *args, "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr[-2000:]
    found = json.loads((tmp_path / "peers_train.json").read_text())
    assert [r["run"] for r in found["rows"]] == ["protolm-linear", "protolm-prototype", "hf-trainer"]
    # The same 64 sentences and batch size: the same number of steps for everyone.
    assert {r["steps"] for runs in found["runs"].values() for r in runs} == {2}
    assert all(r["startup_s"] > 0 and r["examples_per_s"] > 0 and 0 <= r["dev_acc_mean"] <= 1 for r in found["rows"])


@pytest.mark.slow
def test_data_benchmark_smoke_measures_a_first_and_a_cached_second_run(tmp_path):
    args = ["--sizes", "200,400", "--work", str(tmp_path / "w"), "--out", str(tmp_path)]
    result = run_cli("benchmarks/data.py", *args)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = json.loads((tmp_path / "data.json").read_text())["rows"]
    assert [(r["code"], r["rows"]) for r in rows] == [("this", 200), ("this", 400)]
    for row in rows:
        for run in ("first", "second"):
            assert row[run]["first_step_s"] > 0 and row[run]["peak_memory_mb"] > 0
        # train, selection and reported split cached by the first run, read (nothing added) by the second
        assert row["first"]["cache_entries"] == row["second"]["cache_entries"] == 3
