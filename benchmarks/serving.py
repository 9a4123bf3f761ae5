"""Benchmark 5: using a trained model: batch prediction (torch vs onnxruntime) and the server under load.

    python run.py experiment=demo hydra.run.dir=outputs/demo          # a trained model (a few minutes)
    protolm export model=outputs/demo out=outputs/demo-model onnx=true
    python benchmarks/serving.py --model outputs/demo-model            # both parts
    python benchmarks/serving.py --model outputs/demo-model --what server --baseline ../old-checkout \
        --out benchmarks/measured

``--what predict``: examples/s of the model on SST-2 dev sentences at batch 1 and 32, torch eager
(``Classifier.predict``'s forward) against onnxruntime on the exported ``model.onnx``, after
checking they give the same logits; interleaved rounds, medians. ``--what server``: ``protolm
serve`` of this checkout (and of ``--baseline``, an older checkout, its server started as that
checkout starts it), each in its own process, all loaded before the first request; then
``--requests`` requests of one text each to /predict and to /explain, sent one at a time and with
``--concurrency`` in flight, each phase sent in ``--rounds-server`` parts and the parts of every
phase and server interleaved, so that a busy machine's drift hits them alike; p50/p99 latency,
requests/s, errors, the server's CPU per request (and, for a batching server, requests per batch
and texts per model call), each server's resident memory before and after, and per server and
endpoint the requests/s in flight over one at a time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.common import machine, table, write  # noqa: E402


def dev_texts(n: int) -> list[str]:
    from protolm.config import default_data_dir

    lines = (Path(default_data_dir()) / "sst2" / "dev.tsv").read_text().splitlines()[1:]
    return [line.split("\t")[0] for line in lines][:n]


def bench_predict(model_dir: Path, n: int, rounds: int) -> list[dict]:
    import onnxruntime

    import protolm

    clf = protolm.load(model_dir)
    options = onnxruntime.SessionOptions()
    # onnxruntime's threads spin after each run by default, taking the cores from the torch rounds
    # interleaved with its own: without this, eager torch measures several times slower than it is.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.intra_op_num_threads = torch.get_num_threads()
    session = onnxruntime.InferenceSession(
        str(model_dir / "model.onnx"), sess_options=options, providers=["CPUExecutionProvider"]
    )
    names = [i.name for i in session.get_inputs()]
    texts = dev_texts(n)

    def batches(size: int, kind: str):
        return [
            clf.tokenizer(
                texts[i : i + size], padding=True, truncation=True, max_length=clf.max_length, return_tensors=kind
            )
            for i in range(0, len(texts), size)
        ]

    @torch.no_grad()
    def run_torch(encoded):
        for enc in encoded:
            clf.model(**enc)

    def run_onnx(encoded):
        for enc in encoded:
            session.run(["logits"], {k: enc[k] for k in names})

    check = batches(32, "pt")[0]
    with torch.no_grad():
        expected = clf.model(**check).logits.numpy()
    found = session.run(["logits"], {k: check[k].numpy() for k in names})[0]
    same = float(np.abs(found - expected).max())
    rows = []
    for size in (1, 32):
        encoded_pt, encoded_np = batches(size, "pt"), batches(size, "np")
        times = {"torch eager": [], "onnxruntime": []}
        run_torch(encoded_pt[:2]), run_onnx(encoded_np[:2])  # warm-up
        for _ in range(rounds):  # interleaved: drift on a shared machine hits both alike
            for name, fn, encoded in (("torch eager", run_torch, encoded_pt), ("onnxruntime", run_onnx, encoded_np)):
                start = time.perf_counter()
                fn(encoded)
                times[name].append(time.perf_counter() - start)
        eager = statistics.median(times["torch eager"])
        for name, values in times.items():
            median = statistics.median(values)
            rows.append(
                {
                    "batch": size,
                    "runtime": name,
                    "examples_per_s": len(texts) / median,
                    "speed_vs_eager": eager / median,
                    "max_abs_logit_diff": same,
                }
            )
    return rows


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_healthy(process: subprocess.Popen, url: str, timeout_s: float) -> None:
    """Wait for a serve.py process to answer ``/health``; RuntimeError if it exits or takes too long."""
    import httpx

    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"serve.py exited with {process.returncode} before answering /health")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.5)
    raise RuntimeError(f"serve.py did not answer /health within {timeout_s:g} s")


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_s(pid: int) -> float:
    """CPU seconds the process has used (all its threads, user and system): what a request costs,
    unlike its wall time, does not grow when other jobs share the cores."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def load(url: str, path: str, bodies: list[dict], concurrency: int) -> dict:
    """``bodies`` posted to ``path``, ``concurrency`` at a time: the latencies, errors and wall time."""
    import httpx

    latencies, errors = [], 0
    queue = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)

    async def worker(client):
        nonlocal errors
        while not queue.empty():
            body = queue.get_nowait()
            start = time.perf_counter()
            try:
                response = await client.post(f"{url}{path}", json=body)
                errors += response.status_code != 200
            except httpx.HTTPError:
                errors += 1
            latencies.append(time.perf_counter() - start)

    async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=concurrency)) as client:
        start = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        wall = time.perf_counter() - start
    return {"latencies": latencies, "errors": errors, "wall_s": wall}


def summary(latencies: list[float], errors: int, wall_s: float) -> dict:
    latencies = sorted(latencies)
    return {
        "requests": len(latencies),
        "errors": errors,
        "p50_ms": 1000 * latencies[len(latencies) // 2],
        "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
        "requests_per_s": len(latencies) / wall_s,
    }


def server_command(code: Path, model_dir: Path, port: int) -> list[str]:
    """How the checkout at ``code`` starts its server: ``python -m protolm serve``, or the serve.py
    script of the checkouts before the protolm command."""
    start = ["-m", "protolm", "serve"] if (code / "protolm" / "__main__.py").exists() else ["serve.py"]
    return [sys.executable, *start, f"model={model_dir}", f"port={port}", "log_level=warning"]


@contextlib.contextmanager
def running_server(code: Path, model_dir: Path):
    """The server of the checkout at ``code`` on a free port, answering /health: (url, pid)."""
    records = tempfile.mkdtemp(prefix="protolm-serve-")  # the server's .hydra records, not kept
    port = free_port()
    environment = {**os.environ, "PYTHONPATH": str(code)}  # that checkout's code, whatever is installed
    command = [*server_command(code, model_dir.resolve(), port), f"hydra.run.dir={records}"]
    process = subprocess.Popen(command, cwd=code, env=environment, stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_until_healthy(process, url, timeout_s=600)
        except RuntimeError as err:
            raise SystemExit(f"{code}: {err}") from None
        yield url, process.pid
    finally:
        process.terminate()
        process.wait(timeout=30)
        shutil.rmtree(records, ignore_errors=True)


def commit_of(code: Path) -> str:
    found = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=code)
    return found.stdout.strip() or "unknown"


def bench_server(model_dir: Path, requests: int, concurrency: int, baseline: Path | None, rounds: int) -> list[dict]:
    """Every server under the same requests, one at a time and ``concurrency`` in flight (see the
    module's docstring); one row per server, endpoint and concurrency. The requests of each phase
    are sent in ``rounds`` parts, the phases' parts interleaved: each figure spans the whole run."""
    codes = {"this checkout": ROOT, **({"baseline": baseline.resolve()} if baseline else {})}
    bodies = [{"texts": [t]} for t in dev_texts(requests)]
    phases: dict[tuple, dict] = {}
    with contextlib.ExitStack() as servers:
        urls = {name: servers.enter_context(running_server(code, model_dir)) for name, code in codes.items()}
        before = {name: rss_kb(pid) for name, (_, pid) in urls.items()}
        for url, _ in urls.values():  # warm-up: the first requests of a process are slower
            asyncio.run(load(url, "/predict", bodies[:20], concurrency))
        for path in ("/predict", "/explain"):
            for part in (bodies[i::rounds] for i in range(rounds)):
                for in_flight in (1, concurrency):
                    for name, (url, pid) in urls.items():
                        measure(phases.setdefault((name, path, in_flight), {}), url, pid, path, part, in_flight)
        after = {name: rss_kb(pid) for name, (_, pid) in urls.items()}
    rows = []
    for (name, path, in_flight), phase in phases.items():
        row = {"server": name, "commit": commit_of(codes[name]), "endpoint": path, "concurrency": in_flight}
        row |= summary(phase["latencies"], phase["errors"], phase["wall_s"])
        row["server_cpu_ms_per_request"] = 1000 * phase["cpu_s"] / row["requests"]
        row |= batching(phase.get("served"))
        row["server_rss_before_mb"], row["server_rss_after_mb"] = before[name] / 1024, after[name] / 1024
        rows.append(row)
    return rows


def measure(phase: dict, url: str, pid: int, path: str, bodies: list[dict], in_flight: int) -> None:
    """One part of a phase, added to what ``phase`` holds: latencies, errors, wall and server CPU
    seconds, and what the server's batcher did (when it has one)."""
    spent, counts = cpu_s(pid), served(url)
    found = asyncio.run(load(url, path, bodies, in_flight))
    phase.setdefault("latencies", []).extend(found["latencies"])
    phase["errors"] = phase.get("errors", 0) + found["errors"]
    phase["wall_s"] = phase.get("wall_s", 0.0) + found["wall_s"]
    phase["cpu_s"] = phase.get("cpu_s", 0.0) + cpu_s(pid) - spent
    if counts is not None:
        done = {key: value - counts[key] for key, value in served(url).items()}
        phase["served"] = {key: phase.get("served", {}).get(key, 0) + value for key, value in done.items()}


def served(url: str) -> dict | None:
    """What the server's batcher has done so far (/health's ``served``; None: a server without one)."""
    import httpx

    return httpx.get(f"{url}/health", timeout=30).json().get("served")


def batching(done: dict | None) -> dict:
    """Requests per batch and texts per model call over a phase (empty for a server without a batcher)."""
    if done is None:
        return {}
    return {
        "requests_per_batch": done["requests"] / max(done["batches"], 1),
        "texts_per_model_call": done["texts"] / max(done["model_calls"], 1),
    }


def server_setting() -> dict:
    """What the servers ran with: the web stack's versions, torch's threads and how busy the machine was."""
    import fastapi
    import uvicorn

    return {
        "fastapi": fastapi.__version__,
        "uvicorn": uvicorn.__version__,
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "load_average_before": os.getloadavg(),
    }


def speedups(rows: list[dict], concurrency: int) -> list[dict]:
    """Per server and endpoint: requests/s with ``concurrency`` in flight over one at a time."""
    rate = {(r["server"], r["endpoint"], r["concurrency"]): r["requests_per_s"] for r in rows}
    return [
        {"server": server, "endpoint": path, "in_flight_over_one_at_a_time": rate[server, path, concurrency] / one}
        for (server, path, in_flight), one in rate.items()
        if in_flight == 1
    ]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--model", type=Path, required=True, help="an exported model directory (with model.onnx for --what predict)"
    )
    parser.add_argument("--what", choices=("predict", "server", "both"), default="both")
    parser.add_argument("--examples", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds-server", type=int, default=5, help="parts each server phase is sent in")
    parser.add_argument("--baseline", type=Path, default=None, help="an older checkout whose server is measured too")
    parser.add_argument("--out", type=Path, default=None, help="where the JSON goes (default benchmarks/results/)")
    args = parser.parse_args()
    command = " ".join(["python", *(a if " " not in a else repr(a) for a in sys.argv)])
    result = {"command": command, "machine": machine(), "model": str(args.model)}
    if args.what in ("predict", "both"):
        result["predict"] = bench_predict(args.model, args.examples, args.rounds)
        print(table(result["predict"], ["batch", "runtime", "examples_per_s", "speed_vs_eager", "max_abs_logit_diff"]))
    if args.what in ("server", "both"):
        result["server_setting"] = server_setting()
        result["server"] = bench_server(args.model, args.requests, args.concurrency, args.baseline, args.rounds_server)
        result["server_setting"]["load_average_after"] = os.getloadavg()
        result["server_speedup"] = speedups(result["server"], args.concurrency)
        columns = ["server", "endpoint", "concurrency", "requests", "errors", "p50_ms", "p99_ms", "requests_per_s"]
        columns += ["server_cpu_ms_per_request", "requests_per_batch", "texts_per_model_call"]
        print(table(result["server"], [*columns, "server_rss_before_mb", "server_rss_after_mb"]))
        print(table(result["server_speedup"], ["server", "endpoint", "in_flight_over_one_at_a_time"]))
    print(f"wrote {write('serving', result, args.out)}")


if __name__ == "__main__":
    main()
