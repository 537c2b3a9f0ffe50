"""The HTTP service, driven over real HTTP on 127.0.0.1."""

import io
import json
import socket
import threading
import time
import urllib.error
import urllib.request
import uuid

import numpy as np
import pytest
import uvicorn
from PIL import Image

from faceid.data.folder import list_identity_folder
from faceid.embedding import TorchEmbedder
from gallery.gallery import Gallery
from gallery.service import create_app


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory, small_synthetic):
    folder = tmp_path_factory.mktemp("served")
    embedder = TorchEmbedder.untrained("small_cnn", 16, 64, device="cpu")
    gallery = Gallery.create(folder / "g", embedder)
    port = _free_port()
    config = uvicorn.Config(create_app(gallery, api_key="secret", max_request_bytes=200_000), host="127.0.0.1",
                            port=port, log_level="warning")
    instance = uvicorn.Server(config)
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not instance.started and time.time() < deadline:
        time.sleep(0.05)
    images = {i.relative: i.path for i in list_identity_folder(small_synthetic / "aligned")}
    yield f"http://127.0.0.1:{port}", images
    instance.should_exit = True
    thread.join(timeout=10)


def _multipart(fields: dict, files: list[tuple[str, str, bytes]]):
    boundary = uuid.uuid4().hex
    body = io.BytesIO()
    for name, value in fields.items():
        body.write(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for field, filename, data in files:
        body.write(f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
                   f"Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n")
    body.write(f"--{boundary}--\r\n".encode())
    return body.getvalue(), f"multipart/form-data; boundary={boundary}"


def _call(url, method="GET", fields=None, files=None, key="secret"):
    data, content_type = _multipart(fields or {}, files or []) if (fields or files) else (None, None)
    request = urllib.request.Request(url, data=data, method=method)
    if content_type:
        request.add_header("Content-Type", content_type)
    if key:
        request.add_header("X-API-Key", key)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def test_enroll_identify_verify_remove_round_trip(server):
    base, images = server
    photo = lambda name: (images[name].name, images[name].read_bytes())  # noqa: E731
    files = [("files", *photo(f"id_00001/00{k}.png")) for k in range(3)]
    status, body = _call(f"{base}/identities/alice", "POST", files=files)
    assert status == 200 and body["added"] == 3
    _call(f"{base}/identities/bob", "POST", files=[("files", *photo("id_00002/000.png"))])
    status, body = _call(f"{base}/identities")
    assert status == 200 and [i["identity"] for i in body] == ["alice", "bob"]
    status, body = _call(f"{base}/identify", "POST", fields={"k": 2}, files=[("file", *photo("id_00001/001.png"))])
    assert status == 200 and body["candidates"][0] == {"identity": "alice", "score": pytest.approx(1.0, abs=1e-5)}
    status, body = _call(f"{base}/verify", "POST", fields={"identity": "bob", "threshold": 0.5},
                         files=[("file", *photo("id_00002/000.png"))])
    assert status == 200 and body["accepted"] is True and body["threshold"] == 0.5
    status, body = _call(f"{base}/identities/bob", "DELETE")
    assert status == 200 and body["templates"] == 1
    status, body = _call(f"{base}/health")
    assert status == 200 and body == {"status": "ok", "identities": 1, "templates": 3}


def test_bad_requests_get_4xx_with_a_reason(server):
    base, images = server
    good = images["id_00003/000.png"].read_bytes()
    assert _call(f"{base}/identities", key=None)[0] == 401
    assert _call(f"{base}/identities", key="wrong")[0] == 401
    status, body = _call(f"{base}/identify", "POST", files=[("file", "notes.jpg", b"plain text, not a picture")])
    assert status == 422 and "not a readable image" in body["detail"]
    status, body = _call(f"{base}/identify", "POST", files=[("file", "empty.jpg", b"")])
    assert status == 422 and "empty file" in body["detail"]
    status, body = _call(f"{base}/verify", "POST", fields={"identity": "nobody"}, files=[("file", "a.png", good)])
    assert status == 404 and "not enrolled" in body["detail"]
    status, body = _call(f"{base}/identify", "POST", fields={"k": 0}, files=[("file", "a.png", good)])
    assert status == 422
    big = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (400, 400, 3), dtype=np.uint8)).save(big, "PNG")
    status, body = _call(f"{base}/identify", "POST", files=[("file", "big.png", big.getvalue())])
    assert status == 413 and "larger than 200000 bytes" in body["detail"]
    status, body = _call(f"{base}/verify", "POST", files=[("file", "a.png", good)])
    assert status == 422  # the identity field is missing


def test_openapi_spec_lists_the_endpoints(server):
    base, _ = server
    with urllib.request.urlopen(f"{base}/openapi.json", timeout=10) as response:
        spec = json.loads(response.read())
    assert {"/health", "/identities", "/identities/{name}", "/verify", "/identify"} <= set(spec["paths"])
