"""The HTTP API as a client sees it: offline docs, the spec (security scheme, response models, descriptions), one
identity's detail with thumbnails, statistics, the threshold in force and duplicates named by their upload."""

import base64
import io
import re

import pytest
from PIL import Image

from faceid.data.folder import list_identity_folder
from faceid.gallery.gallery import Gallery
from faceid.gallery.samples.kept_images import set_keep_images
from faceid.gallery.service.app import create_app
from faceid.torch_embedder import TorchEmbedder
from tests.gallery.doubles import embeddings_gallery
from tests.gallery.http_client import call, fetch, running

DATA_URI = "data:image/jpeg;base64,"


@pytest.fixture(scope="module")
def spec_server(tmp_path_factory):
    """A served embeddings gallery (no embedder): enough for the docs and the spec."""
    gallery = embeddings_gallery(tmp_path_factory.mktemp("spec") / "g", dim=4)
    with running(create_app(gallery, api_key="secret")) as (base, _):
        yield base


@pytest.fixture(params=[False, True], ids=["uploads-not-kept", "uploads-kept"])
def served(tmp_path, small_synthetic, request):
    """A served gallery of images (one reader thread), keeping uploads or not: (base URL, gallery, image paths)."""
    gallery = Gallery.create(tmp_path / "g", TorchEmbedder.untrained("small_cnn", 16, 64, device="cpu"))
    set_keep_images(gallery, request.param)
    images = [item.path for item in list_identity_folder(small_synthetic / "aligned")]
    with running(create_app(gallery, api_key="secret", threads=1)) as (base, _):
        yield base, gallery, images


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_docs_pages_load_everything_from_the_app(spec_server, page):
    status, body = fetch(f"{spec_server}{page}", key=None)
    html = body.decode()
    assert status == 200 and "<html>" in html
    external = [url for url in re.findall(r"https?://[^\s\"'<>]+", html) if not url.startswith(spec_server)]
    assert not external, external
    local = set(re.findall(r"[\"'](/[^\s\"'<>]*)[\"']", html))  # src, href, the spec's URL, the OAuth2 redirect
    assert any(url.endswith(".js") for url in local) and "/openapi.json" in local, local
    for url in local:
        status, asset = fetch(f"{spec_server}{url}", key=None)
        assert status == 200 and asset, url


def test_the_spec_declares_the_key_and_types_every_answer(spec_server):
    status, spec = call(f"{spec_server}/openapi.json", key=None)
    assert status == 200
    scheme = spec["components"]["securitySchemes"]["APIKeyHeader"]
    assert {key: scheme[key] for key in ("type", "in", "name")} == {"type": "apiKey", "in": "header",
                                                                    "name": "X-API-Key"}
    operations = {(method, path): operation for path, methods in spec["paths"].items()
                  for method, operation in methods.items()}
    assert {("get", "/stats"), ("get", "/identities/{name}"), ("post", "/identities/{name}")} <= set(operations)
    for (method, path), operation in operations.items():
        assert operation.get("summary") and operation.get("description"), (method, path)
        schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
        assert set(schema) == {"$ref"}, (method, path, schema)
        assert {"APIKeyHeader": []} in operation.get("security", []), (method, path)
    schemas = spec["components"]["schemas"]
    assert set(schemas["Candidate"]["properties"]) == {"identity", "score"}
    assert set(schemas["Verification"]["properties"]) == {"identity", "score", "threshold", "accepted",
                                                          "threshold_source", "probe"}
    assert set(schemas["ProbeFace"]["properties"]) == {"box", "detector_score", "quality", "ambiguous", "other_box"}
    assert {"identity", "candidates", "threshold", "threshold_source"} <= set(schemas["Identification"]["properties"])


def test_the_key_is_still_checked_with_the_same_message(spec_server):
    for path in ("/stats", "/identities", "/identities/alice"):
        assert call(f"{spec_server}{path}", key=None) == (401, {"detail": "missing or wrong X-API-Key header"})
        assert call(f"{spec_server}{path}", key="wrong")[0] == 401
    assert call(f"{spec_server}/health", key=None) == (200, {"status": "ok"})


def _upload(path, name=None):
    return "files", name or path.name, path.read_bytes()


def test_duplicates_are_named_by_their_upload(served):
    base, _, images = served
    same = images[0]
    status, body = call(f"{base}/identities/alice", "POST", files=[_upload(same, "first.png"),
                                                                    _upload(same, "again.png")])
    assert (status, body) == (200, {"added": 1, "duplicates": ["again.png"]})
    status, body = call(f"{base}/identities/alice", "POST", files=[_upload(images[1], "new.png"),
                                                                    _upload(same, "third.png")])
    assert (status, body) == (200, {"added": 1, "duplicates": ["third.png"]})


def test_one_identity_with_its_templates_and_thumbnails(served):
    base, gallery, images = served
    call(f"{base}/identities/alice", "POST", files=[_upload(images[0]), _upload(images[1])])
    status, body = call(f"{base}/identities/alice")
    assert status == 200 and body["identity"] == "alice" and body["templates"] == 2 and body["metadata"] == {}
    assert body["created"] == call(f"{base}/identities")[1][0]["created"]
    assert [sample["file_hash"] for sample in body["samples"]] == [s["file_hash"] for s in
                                                                   gallery.identity("alice")["samples"]]
    kept = gallery.setting("keep_images")
    for sample in body["samples"]:
        assert set(sample) == {"template", "file_name", "file_hash", "quality", "created", "thumbnail"}
        if not kept:  # an upload that is not kept has no file, so no thumbnail either
            assert sample["file_name"] is None and sample["thumbnail"] is None
            continue
        assert sample["file_name"] == f"{sample['file_hash']}.png"  # the kept copy inside the gallery
        assert sample["thumbnail"].startswith(DATA_URI)
        thumbnail = Image.open(io.BytesIO(base64.b64decode(sample["thumbnail"][len(DATA_URI):])))
        assert thumbnail.format == "JPEG" and max(thumbnail.size) <= 96
    status, body = call(f"{base}/identities/nobody")
    assert status == 404 and body["detail"] == "identity 'nobody' is not enrolled"


def test_stats_and_health_say_which_threshold_is_in_force(served):
    base, gallery, images = served
    status, stats = call(f"{base}/stats")
    assert status == 200 and stats["identities"] == 0 and stats["embedding_dim"] == 16
    assert (stats["threshold"], stats["threshold_source"]) == (None, {"source": "none"})
    call(f"{base}/identities/alice", "POST", files=[_upload(images[0])])
    stats = call(f"{base}/stats")[1]
    assert stats["templates"] == stats["indexed_vectors"] == 1  # the reader's gallery caught up with the write
    gallery.set_threshold(0.42, {"source": "calibrate", "target_far": 0.001})
    for answer in (call(f"{base}/stats")[1], call(f"{base}/health")[1]):
        assert answer["threshold"] == 0.42 and answer["threshold_source"] == {"source": "calibrate",
                                                                              "target_far": 0.001}
        assert answer["threshold_description"]
    assert call(f"{base}/health", key=None) == (200, {"status": "ok"})
