"""Downloads against a local HTTP server: success, resume, checksum, errors, timeouts, offline, cache."""

import contextlib
import dataclasses
import hashlib
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from faceid.zoo import ZooError, cached_path, pull, resolve
from faceid.zoo import catalog as zoo_catalog

IMPORT_HINT = "faceid models import FILE --as sface"


class ServerState:
    """What the test server serves, and the knobs that make it misbehave."""

    def __init__(self, files: dict[str, bytes]):
        self.files = dict(files)
        self.requests: list[tuple[str, str | None]] = []
        self.drops = 0  # answers cut after half the body, then the connection is closed
        self.ignore_range = False
        self.stall: str | None = None  # "headers": never answer; "body": stop after half the body
        self.release = threading.Event()
        self.base = ""

    def url(self, name: str) -> str:
        return self.base + name


def _handler(state: ServerState):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:
            state.requests.append((self.path, self.headers.get("Range")))
            data = state.files.get(self.path.lstrip("/"))
            if data is None:
                self.send_error(404)
                return
            if state.stall == "headers":
                state.release.wait(10)
                return
            start, requested = 0, self.headers.get("Range")
            if requested and not state.ignore_range:
                start = int(requested.removeprefix("bytes=").split("-")[0])
                if start >= len(data):
                    self.send_error(416)
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            body = data[start:]
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if state.drops or state.stall == "body":
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                if state.stall == "body":
                    state.release.wait(10)
                state.drops = max(0, state.drops - 1)
                return
            self.wfile.write(body)

    return Handler


@contextlib.contextmanager
def serving(files: dict[str, bytes]):
    state = ServerState(files)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.base = f"http://127.0.0.1:{server.server_address[1]}/"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.release.set()
        server.shutdown()
        server.server_close()


def point(monkeypatch, name: str, urls: tuple[str, ...] | None = None, **changes) -> None:
    """Make catalog entry `name` download from `urls` (the real catalog keeps the real addresses)."""
    entry = zoo_catalog.CATALOG[name]
    monkeypatch.setitem(zoo_catalog.CATALOG, name, dataclasses.replace(entry, urls=urls or entry.urls, **changes))


def tiny_onnx(dim: int = 128, size: int = 112, seed: int = 0) -> bytes:
    """A valid embedding model: global average pool then a linear map to `dim`."""
    from onnx import TensorProto, helper, numpy_helper

    weight = np.random.default_rng(seed).standard_normal((3, dim)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["data"], ["pooled"]),
         helper.make_node("Flatten", ["pooled"], ["flat"]),
         helper.make_node("MatMul", ["flat", "weight"], ["embedding"])],
        "tiny", [helper.make_tensor_value_info("data", TensorProto.FLOAT, ["N", 3, size, size])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", dim])],
        [numpy_helper.from_array(weight, "weight")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def model_bytes() -> bytes:
    return tiny_onnx()


@pytest.fixture
def server(model_bytes, monkeypatch):
    with serving({"sface.onnx": model_bytes}) as state:
        point(monkeypatch, "sface", (state.url("sface.onnx"),), sha256=sha(model_bytes))
        yield state


def test_pull_downloads_verifies_and_caches(server, model_bytes, home):
    from faceid.export.embedder import load_embedder

    path = pull("sface", progress=False)
    assert path == home / "models" / "sface" / "sface.onnx" and path.read_bytes() == model_bytes
    assert not (home / "models" / "sface" / "download").exists()
    embedder = load_embedder(path, preprocessing=path.with_suffix(".yaml"))
    assert embedder.model_input.input_size == 112 and embedder.model_input.std[0] == pytest.approx(1 / 255)
    assert embedder.embed(np.zeros((2, 112, 112, 3), np.uint8) + 100).shape == (2, 128)


def test_dropped_connection_resumes_with_range(server, model_bytes):
    server.drops = 1
    assert pull("sface", progress=False).read_bytes() == model_bytes
    half = len(model_bytes) // 2
    assert server.requests == [("/sface.onnx", None), ("/sface.onnx", f"bytes={half}-")]


def test_server_ignoring_range_gets_a_full_download(server, model_bytes):
    server.drops, server.ignore_range = 1, True
    assert pull("sface", progress=False).read_bytes() == model_bytes
    assert len(server.requests) == 2 and server.requests[1][1] is not None


def test_a_partial_file_the_server_cannot_continue_is_replaced(server, model_bytes, home):
    partial = home / "models" / "sface" / "download" / "sface.onnx.part"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(model_bytes + b"left over from another file")
    size = partial.stat().st_size
    assert pull("sface", progress=False).read_bytes() == model_bytes
    assert [header for _, header in server.requests] == [f"bytes={size}-", None]  # 416, then a full download


def test_stalled_body_times_out_and_the_next_pull_resumes(server, model_bytes, home):
    server.stall = "body"
    started = time.monotonic()
    with pytest.raises(ZooError, match="timed out") as raised:
        pull("sface", progress=False, timeout=1)
    assert time.monotonic() - started < 5 and server.url("sface.onnx") in str(raised.value)
    assert IMPORT_HINT in str(raised.value) and cached_path("sface") is None
    partial = home / "models" / "sface" / "download" / "sface.onnx.part"
    assert partial.stat().st_size == len(model_bytes) // 2
    server.stall = None
    server.release.set()
    assert pull("sface", progress=False).read_bytes() == model_bytes
    assert server.requests[-1] == ("/sface.onnx", f"bytes={len(model_bytes) // 2}-")


def test_server_that_never_answers_times_out(server, monkeypatch):
    server.stall = "headers"
    monkeypatch.setenv("FACEID_DOWNLOAD_TIMEOUT", "1")
    with pytest.raises(ZooError, match="no answer within 1 s") as raised:
        pull("sface", progress=False)
    assert server.url("sface.onnx") in str(raised.value) and IMPORT_HINT in str(raised.value)


def test_checksum_mismatch_is_refused_and_nothing_is_kept(server, monkeypatch, home):
    point(monkeypatch, "sface", (server.url("sface.onnx"),), sha256="0" * 64)
    with pytest.raises(ZooError, match="sha256 mismatch"):
        pull("sface", progress=False)
    assert cached_path("sface") is None
    assert not [p for p in home.rglob("*") if p.is_file()]


def test_missing_file_names_the_url_and_the_import_command(server, monkeypatch):
    point(monkeypatch, "sface", (server.url("gone.onnx"),))
    with pytest.raises(ZooError, match="HTTP error 404") as raised:
        pull("sface", progress=False)
    assert server.url("gone.onnx") in str(raised.value) and IMPORT_HINT in str(raised.value)


def test_a_failing_mirror_falls_back_to_the_next(server, model_bytes, monkeypatch):
    point(monkeypatch, "sface", (server.url("gone.onnx"), server.url("sface.onnx")), sha256=sha(model_bytes))
    assert pull("sface", progress=False).read_bytes() == model_bytes


def test_offline_makes_no_request(server, monkeypatch):
    monkeypatch.setenv("FACEID_OFFLINE", "1")
    with pytest.raises(ZooError, match="FACEID_OFFLINE") as raised:
        resolve("sface")
    assert IMPORT_HINT in str(raised.value) and server.requests == []


def test_cached_model_makes_no_request(server, monkeypatch):
    path = pull("sface", progress=False)
    server.requests.clear()
    assert pull("sface", progress=False) == path and resolve("sface") == path
    monkeypatch.setenv("FACEID_OFFLINE", "1")
    assert resolve("sface") == path and server.requests == []
