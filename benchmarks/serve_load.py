"""A bounded load test of ``fcnet serve``: a fixed number of requests from a few concurrent clients, loopback only.

Every response is checked against the model's own prediction for the same input; the run reports
requests per second and p50/p99 latency. It stops by itself after ``clients × requests`` calls.

    python benchmarks/serve_load.py runs/lab/model.npz [--clients 4] [--requests 500]
"""

import argparse
import http.client
import json
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model_path, port):
    """Start ``fcnet serve`` on 127.0.0.1:``port`` and wait until /healthz answers; returns the process."""
    proc = subprocess.Popen([sys.executable, "-m", "fcnet", "serve", str(model_path), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                if r.status == 200:
                    return proc
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(proc.stderr.read().decode()) from None
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the server did not start within 60 s")


def load_test(port, bodies, expected, clients=4, requests=250):
    """Send ``clients × requests`` predictions over keep-alive connections; returns (rps, p50 ms, p99 ms, errors)."""
    latencies, errors = [], []
    lock = threading.Lock()

    def client(k):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        mine, bad = [], []
        for i in range(requests):
            j = (k * requests + i) % len(bodies)
            start = time.perf_counter()
            conn.request("POST", "/api/predict", bodies[j], {"Content-Type": "application/json"})
            response = conn.getresponse()
            data = response.read()
            mine.append(time.perf_counter() - start)
            if response.status != 200 or json.loads(data)["label"] != expected[j]:
                bad.append((response.status, data[:200]))
        conn.close()
        with lock:
            latencies.extend(mine)
            errors.extend(bad)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
    return len(latencies) / elapsed, statistics.median(latencies) * 1e3, p99 * 1e3, errors


def workload(model, n=200, seed=0):
    """``n`` random 784-pixel inputs as JSON bodies, and the label the model gives each."""
    x = np.random.default_rng(seed).random((n, model.input_dim))
    expected = [int(v) for v in model.predict(x.astype(model.dtype)).argmax(axis=1)]
    return [json.dumps({"pixels": row.round(4).tolist()}).encode() for row in x.round(4)], expected


def main():
    import fcnet

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--requests", type=int, default=500, help="per client")
    args = parser.parse_args()
    model = fcnet.load_model(args.model)
    bodies, expected = workload(model)
    port = free_port()
    server = start_server(args.model, port)
    try:
        load_test(port, bodies, expected, 2, 50)  # warm-up
        rps, p50, p99, errors = load_test(port, bodies, expected, args.clients, args.requests)
    finally:
        server.terminate()
        server.wait()
    print(f"{args.clients} clients x {args.requests} requests: {rps:.0f} predictions/s, p50 {p50:.1f} ms, "
          f"p99 {p99:.1f} ms, {len(errors)} wrong or failed responses")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
