"""Benchmark 5: using a trained model: batch prediction (torch vs onnxruntime) and the server under load.

    python run.py experiment=demo hydra.run.dir=outputs/demo          # a trained model (a few minutes)
    python export.py ckpt_path=outputs/demo out=outputs/demo-model onnx=true
    python benchmarks/serving.py --model outputs/demo-model            # both parts
    python benchmarks/serving.py --model outputs/demo-model --what server --requests 500 --concurrency 16

``--what predict``: examples/s of the model on SST-2 dev sentences at batch 1 and 32, torch eager
(``Classifier.predict``'s forward) against onnxruntime on the exported ``model.onnx``, after
checking they give the same logits; interleaved rounds, medians. ``--what server``: serve.py in
its own process, ``--requests`` requests with ``--concurrency`` in flight, to /predict (one text)
and to /explain (one text); p50/p99 latency, errors, and the server's resident memory before and
after.
"""

from __future__ import annotations

import argparse
import asyncio
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


async def load(url: str, path: str, bodies: list[dict], concurrency: int) -> dict:
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
    latencies.sort()
    return {
        "requests": len(bodies),
        "errors": errors,
        "p50_ms": 1000 * latencies[len(latencies) // 2],
        "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
        "requests_per_s": len(bodies) / wall,
    }


def bench_server(model_dir: Path, requests: int, concurrency: int, port: int) -> list[dict]:
    records = tempfile.mkdtemp(prefix="protolm-serve-")  # the server's .hydra records, not kept
    command = [sys.executable, "-m", "protolm", "serve", f"model={model_dir}", f"port={port}", "log_level=warning"]
    process = subprocess.Popen([*command, f"hydra.run.dir={records}"], cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_until_healthy(process, url, timeout_s=300)
        except RuntimeError as err:
            raise SystemExit(str(err)) from None
        texts = dev_texts(requests)
        before = rss_kb(process.pid)
        rows = []
        for path in ("/predict", "/explain"):
            result = asyncio.run(load(url, path, [{"texts": [t]} for t in texts], concurrency))
            rows.append({"endpoint": path, "concurrency": concurrency, **result})
        after = rss_kb(process.pid)
        for row in rows:
            row["server_rss_before_mb"], row["server_rss_after_mb"] = before / 1024, after / 1024
        return rows
    finally:
        process.terminate()
        process.wait(timeout=30)
        shutil.rmtree(records, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="an exported model directory with model.onnx")
    parser.add_argument("--what", choices=("predict", "server", "both"), default="both")
    parser.add_argument("--examples", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--port", type=int, default=8391, help="the server's port (0: a free one)")
    parser.add_argument("--out", type=Path, default=None, help="where the JSON goes (default benchmarks/results/)")
    args = parser.parse_args()
    result = {"machine": machine(), "model": str(args.model)}
    if args.what in ("predict", "both"):
        result["predict"] = bench_predict(args.model, args.examples, args.rounds)
        print(table(result["predict"], ["batch", "runtime", "examples_per_s", "speed_vs_eager", "max_abs_logit_diff"]))
    if args.what in ("server", "both"):
        result["server"] = bench_server(args.model, args.requests, args.concurrency, args.port or free_port())
        columns = ["endpoint", "concurrency", "requests", "errors", "p50_ms", "p99_ms", "requests_per_s"]
        print(table(result["server"], [*columns, "server_rss_before_mb", "server_rss_after_mb"]))
    print(f"wrote {write('serving', result, args.out)}")


if __name__ == "__main__":
    main()
