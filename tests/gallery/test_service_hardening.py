"""The HTTP service stays responsive under load, is closed to bad input and never silently wrong."""

import contextlib
import io
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from PIL import Image

from faceid.data.folder import list_identity_folder
from faceid.gallery.gallery import Gallery
from faceid.gallery.service.app import create_app
from faceid.torch_embedder import TorchEmbedder
from tests.gallery.conftest import MILVUS
from tests.gallery.doubles import RecordingEmbedder, embeddings_gallery
from tests.gallery.http_client import call, free_port, running
from tests.waiting import wait_for


@pytest.fixture(scope="module", params=["faiss", MILVUS])
def slow(tmp_path_factory, small_synthetic, request):
    """A served gallery of two identities, on each backend, whose embedder a test can hold mid-batch
    (`RecordingEmbedder.hold`): (base URL, the app, the embedder, images)."""
    embedder = RecordingEmbedder(TorchEmbedder.untrained("small_cnn", 16, 64, device="cpu"))
    images = [i.path for i in list_identity_folder(small_synthetic / "aligned")]
    gallery = Gallery.create(tmp_path_factory.mktemp("slow") / "g", embedder, backend=request.param)
    gallery.enroll("alice", images[:2])
    gallery.enroll("bob", images[4:6])
    app = create_app(gallery, api_key="secret", max_request_bytes=300_000)
    with running(app) as (base, _):
        yield base, app, embedder, images


def _identify(base, image, **fields):
    fields = fields if "threshold" in fields else {"closed_set": "true", **fields}  # the gallery has no threshold
    return call(f"{base}/identify", "POST", fields=fields, files=[("file", image.name, image.read_bytes())])


def test_health_answers_while_identifications_run(slow):
    base, _, embedder, images = slow
    with ThreadPoolExecutor(4) as pool:
        with embedder.hold():  # the identifications stay in the embedder until /health has answered
            running = [pool.submit(_identify, base, images[i]) for i in range(4)]
            wait_for(lambda: embedder.waiting or any(f.done() for f in running),
                     what="an identification to reach the embedder")
            assert not any(f.done() for f in running), [f.result() for f in running if f.done()]
            assert call(f"{base}/health", key=None)[0] == 200  # behind the identifications, it would time out
            assert embedder.waiting and not any(f.done() for f in running)  # they were running all along
        assert all(f.result()[0] == 200 for f in running)


def test_concurrent_identifications_share_embedder_batches(slow, monkeypatch):
    base, app, embedder, images = slow
    batcher, arrived = app.state.batcher, []
    identify = batcher.identify

    async def counted(*arguments):  # a request reaching the batcher, its image decoded and aligned
        arrived.append(True)
        return await identify(*arguments)

    monkeypatch.setattr(batcher, "identify", counted)
    embedder.batches.clear()
    with ThreadPoolExecutor(8) as pool:
        with embedder.hold():  # the first batches stay in the embedder while the other requests queue up
            requests = [pool.submit(_identify, base, images[i % 8], k=1) for i in range(8)]
            wait_for(lambda: (len(arrived) == 8 and embedder.waiting) or any(r.done() for r in requests),
                     what=lambda: f"all 8 identifications to reach the batcher ({len(arrived)} did) while the "
                                  f"embedder holds a batch ({embedder.waiting} held)")
        answers = [r.result() for r in requests]
    assert all(status == 200 for status, _ in answers), answers
    # one request at a time would be 8 batches of 1: those that queued behind the held batch shared one
    assert max(embedder.batches) > 1 and len(embedder.batches) < 8, embedder.batches


def _palette_png(side: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("P", (side, side), 0).save(buffer, "PNG", optimize=True)
    return buffer.getvalue()


def test_oversized_images_are_refused_from_the_header_and_health_stays_fast(slow):
    base, *_ = slow
    bomb = _palette_png(13000)
    assert len(bomb) < 300_000
    upload = lambda: call(f"{base}/identify", "POST", files=[("file", "bomb.png", bomb)])  # noqa: E731
    with ThreadPoolExecutor(3) as pool:
        uploads = [pool.submit(upload) for _ in range(3)]
        health = []
        while not all(u.done() for u in uploads) or len(health) < 5:
            started = time.perf_counter()
            assert call(f"{base}/health", key=None)[0] == 200
            health.append(time.perf_counter() - started)
        answers = [u.result() for u in uploads]
    assert all(status == 422 and "too large: 13000x13000 pixels" in body["detail"] for status, body in answers)
    assert max(health) < 1.0, health


@pytest.mark.parametrize("threshold", ["nan", "inf", "-inf", "-5", "1.5", "-1.0001"])
def test_a_request_threshold_must_be_a_finite_cosine(slow, threshold):
    base, _, _, images = slow
    status, body = _identify(base, images[0], threshold=threshold)
    assert status == 422 and "threshold" in body["detail"]
    status, body = call(f"{base}/verify", "POST", fields={"identity": "alice", "threshold": threshold},
                         files=[("file", "a.png", images[0].read_bytes())])
    assert status == 422 and "threshold" in body["detail"]


def test_a_request_may_raise_the_calibrated_threshold_but_never_lower_it(tmp_path, small_synthetic, backend):
    embedder = TorchEmbedder.untrained("small_cnn", 16, 64, device="cpu")
    image = list_identity_folder(small_synthetic / "aligned")[0].path
    gallery = Gallery.create(tmp_path / "g", embedder, backend=backend)
    gallery.enroll("alice", [image])
    gallery.set_threshold(0.6, {"source": "test"})
    verify = lambda base, t: call(f"{base}/verify", "POST", fields={"identity": "alice", "threshold": t},  # noqa: E731
                                   files=[("file", "a.png", image.read_bytes())])
    with running(create_app(gallery, api_key="secret")) as (base, _):
        status, body = verify(base, -0.9)
        assert status == 422 and "below the gallery's" in body["detail"]
        status, body = verify(base, 0.9)
        assert status == 200 and body["threshold"] == 0.9 and body["accepted"] is True
    with running(create_app(gallery, api_key="secret", threshold_override="none")) as (base, _):
        assert verify(base, 0.9)[0] == 422
    with running(create_app(gallery, api_key="secret", threshold_override="any")) as (base, _):
        assert verify(base, -0.9)[:1] == (200,)


@pytest.mark.parametrize("name", ["%20%20", "%09", "a%00b", "a%0Ab", "%E2%80%AEevil", "a%E2%80%8Bb", "UNKNOWN",
                                  "x" * 200])
def test_hostile_identity_names_are_refused(slow, name):
    base, _, _, images = slow
    status, body = call(f"{base}/identities/{name}", "POST", files=[("files", "a.png", images[0].read_bytes())])
    assert status == 422 and "identity name" in body["detail"]


def test_a_name_equal_to_an_enrolled_one_after_case_folding_is_refused(slow):
    base, _, _, images = slow
    status, body = call(f"{base}/identities/ALICE", "POST", files=[("files", "a.png", images[9].read_bytes())])
    assert status == 422 and "clashes with the enrolled 'alice'" in body["detail"]


def test_404_and_422_depend_on_the_error_not_its_text(slow):
    base, _, _, images = slow
    status, body = call(f"{base}/identify", "POST", files=[("file", "x is not enrolled.jpg", b"not a picture")])
    assert status == 422 and "not a readable image" in body["detail"]
    status, body = call(f"{base}/verify", "POST", fields={"identity": "nobody"},
                         files=[("file", "a.png", images[0].read_bytes())])
    assert status == 404 and "'nobody' is not enrolled" in body["detail"]
    assert call(f"{base}/identities/nobody", "DELETE")[0] == 404


def test_a_file_name_cannot_turn_a_422_into_a_404(tmp_path, small_synthetic, backend):
    image = list_identity_folder(small_synthetic / "aligned")[0].path
    gallery = embeddings_gallery(tmp_path / "g", backend)  # no embedder
    with running(create_app(gallery)) as (base, _):
        status, body = call(f"{base}/identify", "POST", files=[("file", "x is not enrolled.jpg", image.read_bytes())])
    assert status == 422 and "images need the gallery to be opened with an embedder" in body["detail"]


def test_health_without_the_key_says_only_ok(slow):
    base, *_ = slow
    assert call(f"{base}/health", key=None) == (200, {"status": "ok"})
    assert call(f"{base}/health", key="wrong") == (200, {"status": "ok"})
    status, body = call(f"{base}/health")
    assert status == 200 and body["identities"] >= 2


def _raw(port: int, head: bytes, body: bytes, wait: float) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as connection:
        connection.sendall(head + body)
        received = b""
        with contextlib.suppress(TimeoutError, ConnectionError):
            while chunk := connection.recv(65536):
                received += chunk
        return received


def test_a_stalled_body_gets_408_and_the_connection_is_closed(tmp_path, backend):
    gallery = embeddings_gallery(tmp_path / "g", backend, dim=4)
    with running(create_app(gallery, read_timeout_s=1.0)) as (_, port):
        started = time.perf_counter()
        head = (b"POST /identify HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                b"Content-Length: 1000\r\n\r\n")
        answer = _raw(port, head, b"--b\r\nxxxxx", wait=8)
        assert answer.startswith(b"HTTP/1.1 408") and time.perf_counter() - started < 6


def test_a_chunked_body_over_the_limit_gets_413(tmp_path, backend):
    gallery = embeddings_gallery(tmp_path / "g", backend, dim=4)
    with running(create_app(gallery, max_request_bytes=10_000)) as (_, port):
        head = (b"POST /identify HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n")
        part = b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\n\r\n" + b"x" * 4000
        chunks = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in [part, b"y" * 4000, b"z" * 4000]) + b"0\r\n\r\n"
        answer = _raw(port, head, chunks, wait=8)
        assert answer.startswith(b"HTTP/1.1 413") and b"larger than 10000 bytes" in answer


@pytest.mark.slow  # two server processes start, each loading torch: ~15 s per backend
def test_several_worker_processes_serve_one_gallery_and_keep_uploads(tmp_path, small_synthetic, shared_backend):
    from faceid.checkpoint import save_backbone_checkpoint
    from faceid.gallery.session import open_gallery

    embedder = TorchEmbedder.untrained("small_cnn", 16, 64, device="cpu")
    save_backbone_checkpoint(tmp_path / "model.pt", embedder.model, "small_cnn", 16, 64)
    open_gallery(tmp_path / "g", str(tmp_path / "model.pt"), aligned=True, device="cpu", create=True,
                 keep_images=True, **shared_backend).close()
    image = list_identity_folder(small_synthetic / "aligned")[0].path
    port, log = free_port(), tmp_path / "serve.log"
    with open(log, "w") as output:
        server = subprocess.Popen([sys.executable, "-m", "faceid.cli", "serve", str(tmp_path / "g"), "--device",
                                   "cpu", "--port", str(port), "--workers", "2"], stdout=output,
                                  stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"

    def answering() -> bool:
        if server.poll() is not None:
            raise AssertionError(f"`faceid serve` exited ({server.returncode}) before answering; its output:\n"
                                 f"{log.read_text()[-3000:]}")
        with contextlib.suppress(OSError):
            return call(f"{base}/health")[0] == 200
        return False

    try:
        wait_for(answering, interval=0.2, what=lambda: f"`faceid serve` to answer /health on port {port}; its "
                                                       f"output:\n{log.read_text()[-3000:]}")
        status, body = call(f"{base}/identities/alice", "POST", files=[("files", "a.png", image.read_bytes())])
        assert status == 200 and body["added"] == 1
        answers = [call(f"{base}/identify", "POST", fields={"closed_set": "true"},
                        files=[("file", "p.png", image.read_bytes())])
                   for _ in range(8)]
        assert all(status == 200 and body["identity"] == "alice" for status, body in answers), answers
    finally:
        server.terminate()
        server.wait(timeout=30)
    kept = list((tmp_path / "g" / "images").rglob("*.png"))
    assert len(kept) == 1 and kept[0].read_bytes() == image.read_bytes()
