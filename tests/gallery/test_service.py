"""The HTTP service, driven over real HTTP on 127.0.0.1."""

import io
import json
import urllib.error
import urllib.request

import numpy as np
import pytest
from PIL import Image

from faceid.data.folder import list_identity_folder
from faceid.gallery.gallery import Gallery
from faceid.gallery.service.app import create_app
from faceid.torch_embedder import TorchEmbedder
from tests.gallery.conftest import MILVUS
from tests.gallery.http_client import call, running


@pytest.fixture(scope="module", params=["faiss", MILVUS])
def server(tmp_path_factory, small_synthetic, request):
    """A served gallery on each backend."""
    folder = tmp_path_factory.mktemp("served")
    embedder = TorchEmbedder.untrained("small_cnn", 16, 64, device="cpu")
    gallery = Gallery.create(folder / "g", embedder, backend=request.param)
    images = {i.relative: i.path for i in list_identity_folder(small_synthetic / "aligned")}
    with running(create_app(gallery, api_key="secret", max_request_bytes=200_000)) as (base, _):
        yield base, images


def test_enroll_identify_verify_remove_round_trip(server):
    base, images = server
    photo = lambda name: (images[name].name, images[name].read_bytes())  # noqa: E731
    files = [("files", *photo(f"id_00001/00{k}.png")) for k in range(3)]
    status, body = call(f"{base}/identities/alice", "POST", files=files)
    assert status == 200 and body["added"] == 3
    call(f"{base}/identities/bob", "POST", files=[("files", *photo("id_00002/000.png"))])
    status, body = call(f"{base}/identities")
    assert status == 200 and [i["identity"] for i in body] == ["alice", "bob"]
    status, body = call(f"{base}/identify", "POST", fields={"k": 2, "closed_set": "true"},
                        files=[("file", *photo("id_00001/001.png"))])
    assert status == 200 and body["candidates"][0] == {"identity": "alice", "score": pytest.approx(1.0, abs=1e-5)}
    status, body = call(f"{base}/verify", "POST", fields={"identity": "bob", "threshold": 0.5},
                         files=[("file", *photo("id_00002/000.png"))])
    assert status == 200 and body["accepted"] is True and body["threshold"] == 0.5
    status, body = call(f"{base}/identities/bob", "DELETE")
    assert status == 200 and body["templates"] == 1
    status, body = call(f"{base}/health")
    assert status == 200 and body["status"] == "ok" and (body["identities"], body["templates"]) == (1, 3)


def test_bad_requests_get_4xx_with_a_reason(server):
    base, images = server
    good = images["id_00003/000.png"].read_bytes()
    assert call(f"{base}/identities", key=None)[0] == 401
    assert call(f"{base}/identities", key="wrong")[0] == 401
    status, body = call(f"{base}/identify", "POST", files=[("file", "notes.jpg", b"plain text, not a picture")])
    assert status == 422 and "not a readable image" in body["detail"]
    status, body = call(f"{base}/identify", "POST", files=[("file", "empty.jpg", b"")])
    assert status == 422 and "empty file" in body["detail"]
    status, body = call(f"{base}/verify", "POST", fields={"identity": "nobody"}, files=[("file", "a.png", good)])
    assert status == 404 and "not enrolled" in body["detail"]
    status, body = call(f"{base}/identify", "POST", fields={"k": 0}, files=[("file", "a.png", good)])
    assert status == 422
    big = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (400, 400, 3), dtype=np.uint8)).save(big, "PNG")
    status, body = call(f"{base}/identify", "POST", files=[("file", "big.png", big.getvalue())])
    assert status == 413 and "larger than 200000 bytes" in body["detail"]
    status, body = call(f"{base}/verify", "POST", files=[("file", "a.png", good)])
    assert status == 422  # the identity field is missing


def test_openapi_spec_lists_the_endpoints(server):
    base, _ = server
    with urllib.request.urlopen(f"{base}/openapi.json", timeout=10) as response:
        spec = json.loads(response.read())
    assert {"/health", "/identities", "/identities/{name}", "/verify", "/identify"} <= set(spec["paths"])
