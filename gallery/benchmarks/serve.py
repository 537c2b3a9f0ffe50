"""`faceid bench serve`: the HTTP service under concurrent load, against in-process batched identification
of the same images measured in the same run.

A real `faceid serve` runs in a subprocess on 127.0.0.1; client threads (1, 4, 16) send /identify
requests with real face images (generated faces, aligned) over keep-alive connections, a bounded
number each. Printed: throughput and p50/p99 latency per client count, the in-process
`identify_many` rate on the same images, and /health p99 while three oversized uploads
(13000x13000 palette PNGs, ~165 KB each) are in flight. Targets, as ratios to baselines of this run:
16 clients >= 0.7x in-process throughput; p99 at 4 clients <= 3x the idle single-request latency;
/health p99 <= 100 ms during the uploads.
"""

import http.client
import io
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np
from PIL import Image

from faceid.data.folder import list_identity_folder

API_KEY = "bench"


def _multipart(field: str, filename: str, data: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def _post(connection, path: str, body: bytes, content_type: str) -> int:
    connection.request("POST", path, body, {"Content-Type": content_type, "X-API-Key": API_KEY})
    response = connection.getresponse()
    response.read()
    return response.status


def _clients(port: int, bodies: list, clients: int, per_client: int) -> tuple[float, np.ndarray]:
    """(requests per second, latencies in s) of `clients` threads each sending `per_client` /identify requests."""
    latencies, failures = [], []

    def client(number: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        for i in range(per_client):
            body, content_type = bodies[(number * per_client + i) % len(bodies)]
            started = time.perf_counter()
            status = _post(connection, "/identify", body, content_type)
            latencies.append(time.perf_counter() - started)
            if status != 200:
                failures.append(status)
        connection.close()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if failures:
        raise RuntimeError(f"{len(failures)} /identify requests failed: {sorted(set(failures))}")
    return len(latencies) / elapsed, np.array(latencies)


def _health_during_uploads(port: int, uploads: int = 3, seconds: float = 3.0) -> tuple[np.ndarray, list]:
    buffer = io.BytesIO()
    Image.new("P", (13000, 13000), 0).save(buffer, "PNG", optimize=True)
    body, content_type = _multipart("file", "huge.png", buffer.getvalue())
    statuses, stop = [], time.perf_counter() + seconds

    def uploader() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while time.perf_counter() < stop:
            statuses.append(_post(connection, "/identify", body, content_type))
        connection.close()

    threads = [threading.Thread(target=uploader) for _ in range(uploads)]
    for thread in threads:
        thread.start()
    latencies, connection = [], http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    while any(thread.is_alive() for thread in threads):
        started = time.perf_counter()
        connection.request("GET", "/health")
        connection.getresponse().read()
        latencies.append(time.perf_counter() - started)
        time.sleep(0.01)
    for thread in threads:
        thread.join()
    return np.array(latencies), statuses


def _in_process_rate(gallery, images: list[bytes], batch: int = 32, rounds: int = 3) -> float:
    """Probes per second of decode + one embedder batch + one `identify_many` per `batch` images."""
    def once() -> None:
        for start in range(0, len(images), batch):
            prepared = [gallery.resolver.prepare(data, f"probe {i}")
                        for i, data in enumerate(images[start:start + batch])]
            gallery.identify_many(gallery.resolver.embed_prepared(prepared), k=5)

    once()
    started = time.perf_counter()
    for _ in range(rounds):
        once()
    return rounds * len(images) / (time.perf_counter() - started)


def _wait_until_up(port: int, server: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited with status {server.returncode}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/health")
            if connection.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"the server did not answer on port {port} within {seconds} s")


def run_serve_benchmark(client_counts=(1, 4, 16), per_client: int = 24, identities: int = 40, port: int = 8765,
                        workers: int = 1) -> dict:
    from faceid.checkpoint import save_backbone_checkpoint
    from faceid.data.synthetic import generate_dataset
    from faceid.gallery.session import open_gallery
    from faceid.torch_embedder import TorchEmbedder

    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        generate_dataset(folder / "data", identities=identities, images_per_identity=4, seed=0, progress=False)
        embedder = TorchEmbedder.untrained("small_cnn", 128, 112, device="cpu")
        save_backbone_checkpoint(folder / "model.pt", embedder.model, "small_cnn", 128, 112)
        items = list_identity_folder(folder / "data" / "aligned")
        gallery = open_gallery(folder / "g", str(folder / "model.pt"), aligned=True, device="cpu", create=True)
        gallery.enroll_many({i.identity: [i.path] for i in items if i.path.stem == "000"})
        probes = [i.path.read_bytes() for i in items if i.path.stem != "000"]
        in_process = _in_process_rate(gallery, probes)
        gallery.close()
        bodies = [_multipart("file", f"probe{n}.png", data) for n, data in enumerate(probes)]
        server = subprocess.Popen([sys.executable, "-m", "faceid.cli", "serve", str(folder / "g"), "--device", "cpu",
                                   "--port", str(port), "--api-key", API_KEY, "--workers", str(workers)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            _wait_until_up(port, server)
            rows = {c: _clients(port, bodies, c, per_client) for c in client_counts}
            health, statuses = _health_during_uploads(port)
        finally:
            server.terminate()
            server.wait(timeout=30)
    return _report(in_process, rows, health, statuses)


def _report(in_process: float, rows: dict, health: np.ndarray, statuses: list) -> dict:
    idle = float(np.median(rows[min(rows)][1]))
    print(f"in-process identify_many (batches of 32): {in_process:8.1f} probes/s  (baseline)")
    print(f"{'clients':>8} {'req/s':>8} {'x in-proc':>10} {'p50 ms':>8} {'p99 ms':>8} {'p99/idle':>9}")
    for clients, (rate, latencies) in rows.items():
        p50, p99 = np.percentile(latencies, [50, 99])
        print(f"{clients:>8} {rate:8.1f} {rate / in_process:10.2f} {p50 * 1e3:8.1f} {p99 * 1e3:8.1f} {p99 / idle:9.2f}")
    health_p99 = float(np.percentile(health, 99))
    print(f"/health during 3 oversized uploads: p99 {health_p99 * 1e3:.1f} ms over {len(health)} requests; "
          f"upload answers {sorted(set(statuses))} x{len(statuses)}")
    top, four = max(rows), rows.get(4, rows[max(rows)])
    checks = {f"{top} clients >= 0.7x in-process": rows[top][0] / in_process >= 0.7,
              "p99 at 4 clients <= 3x idle": float(np.percentile(four[1], 99)) <= 3 * idle,
              "/health p99 <= 100 ms during uploads": health_p99 <= 0.1}
    for name, ok in checks.items():
        print(f"  target {name}: {'met' if ok else 'MISSED'}")
    return {"in_process": in_process, "idle_s": idle, "health_p99_s": health_p99, "targets": checks}
