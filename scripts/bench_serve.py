"""What `mnistzoo serve` adds to a prediction, and a short load run.

    python scripts/bench_serve.py [--requests 250] [--clients 8] [--out benchmarks/serve.md]

The server is ``mnistzoo serve`` in its own process on a free port of 127.0.0.1, with one model,
mlp3_dropout_bn from the starter pack. The body is a real test digit as a PNG. Two measurements:

1. overhead, single client, taking turns: the bare path in-process (decode and prepare the PNG,
   predict) against the same request over HTTP on a kept-alive connection; p50 of each and their
   difference (the goal: the server adds at most 1 ms at p50);
2. load: ``--clients`` threads each sending ``--requests`` requests at once; errors, p50/p99, throughput.
"""

from __future__ import annotations

import argparse
import http.client
import io
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from PIL import Image

from mnistzoo import data, load_pretrained
from mnistzoo._env import cpu_name
from mnistzoo.preparation import as_images

ROOT = Path(__file__).resolve().parent.parent
MODEL = "mlp3_dropout_bn@1"


def start_server() -> tuple[subprocess.Popen, int]:
    """``mnistzoo serve MODEL`` in its own process (as users run it), on a free port; wait until it answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "mnistzoo", "serve", MODEL, "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return server, port
        except OSError:
            time.sleep(0.1)
    server.kill()
    raise SystemExit(f"the server did not start: {server.stderr.read().decode()[-2000:]}")


def post(conn: http.client.HTTPConnection, body: bytes) -> float:
    """One request on a kept-alive connection; its wall time in ms (raises on anything but 200)."""
    t0 = time.perf_counter()
    conn.request("POST", f"/api/predict?models={MODEL}", body=body, headers={"Content-Type": "image/png"})
    response = conn.getresponse()
    response.read()
    if response.status != 200:
        raise RuntimeError(f"status {response.status}")
    return (time.perf_counter() - t0) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=250)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=500, help="single-client requests (and bare calls)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "serve.md")
    parser.add_argument("--load", default="nothing else running", help="what else ran on the machine meanwhile")
    args = parser.parse_args()
    buffer = io.BytesIO()
    Image.fromarray(data.load("mnist").x_test[0]).save(buffer, format="PNG")
    body = buffer.getvalue()
    clf = load_pretrained(MODEL)
    server, port = start_server()

    def bare() -> float:
        t0 = time.perf_counter()
        clf.predict_proba(as_images(Image.open(io.BytesIO(body))))
        return (time.perf_counter() - t0) * 1e3

    conn = http.client.HTTPConnection("127.0.0.1", port)
    for _ in range(50):  # warm-up of both paths
        bare(), post(conn, body)
    bare_ms, http_ms = [], []
    for _ in range(args.rounds):  # taking turns, so a slow phase of the machine hits both
        bare_ms.append(bare())
        http_ms.append(post(conn, body))
    conn.close()

    errors, times = 0, []

    def client(_: int) -> tuple[int, list[float]]:
        c, failed, got = http.client.HTTPConnection("127.0.0.1", port, timeout=60), 0, []
        for _ in range(args.requests):
            try:
                got.append(post(c, body))
            except (RuntimeError, OSError, http.client.HTTPException):
                failed += 1
                c.close()
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        c.close()
        return failed, got

    started = time.perf_counter()
    with ThreadPoolExecutor(args.clients) as pool:
        for failed, got in pool.map(client, range(args.clients)):
            errors, times = errors + failed, times + got
    wall = time.perf_counter() - started
    server.terminate()
    server.wait(30)

    p50_bare, p50_http = statistics.median(bare_ms), statistics.median(http_ms)
    load_p50, load_p99 = np.percentile(times, [50, 99])
    lines = [
        "# mnistzoo serve: what the server adds, and a load run",
        "",
        f"Measured {datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC} by `python scripts/bench_serve.py` on {cpu_name()} "
        f"({os.cpu_count()} cores), Python {platform.python_version()}; machine load: {args.load}. Model "
        f"{MODEL} (starter pack), body: an MNIST test digit as a {len(body)}-byte PNG. Server: `mnistzoo serve` in "
        "its own process (uvicorn, one worker, 127.0.0.1); clients: http.client on kept-alive connections.",
        "",
        f"## Overhead: one client, {args.rounds} requests taking turns with the bare path",
        "",
        "| path | p50 ms | p90 ms |",
        "|---|---:|---:|",
        f"| bare: decode + prepare + predict, in-process | {p50_bare:.3f} | {np.percentile(bare_ms, 90):.3f} |",
        f"| HTTP: POST /api/predict | {p50_http:.3f} | {np.percentile(http_ms, 90):.3f} |",
        "",
        f"The server adds **{p50_http - p50_bare:.3f} ms** at p50 (goal ≤ 1 ms: "
        f"{'met' if p50_http - p50_bare <= 1 else 'MISSED'}).",
        "",
        f"## Load: {args.clients} clients x {args.requests} requests at once",
        "",
        "| requests | errors | p50 ms | p99 ms | requests/s |",
        "|---:|---:|---:|---:|---:|",
        f"| {len(times) + errors} | {errors} | {load_p50:.2f} | {load_p99:.2f} | {len(times) / wall:.0f} |",
        "",
        f"With {args.clients} clients on {os.cpu_count()} cores, a request's latency is mostly its wait in the queue.",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
