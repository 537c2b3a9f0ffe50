"""Every face of a photo identified (`identify_photo`), `faceid identify --all-faces`
and `--annotate`, on the six-face photo of the shared data."""

import json

import numpy as np
import pytest

from faceid.cli import main
from faceid.data.images import read_rgb
from faceid.gallery.gallery import Gallery, GalleryError
from faceid.gallery.photos import FaceMatch, identify_photo
from faceid.gallery.session import open_gallery
from tests.gallery.conftest import MILVUS

THRESHOLD = 0.9  # raw-pixel cosine: a face against itself ~1, against another face of the photo < 0.8
ENROLLED = {0: "left", 2: "middle", 5: "right"}  # faces, left to right, enrolled from crops of the photo


@pytest.fixture(scope="module")
def photo(shared_data):
    path = shared_data / "photos" / "multiface.jpg"
    if not path.is_file():
        pytest.skip(f"the six-face photo is not at {path}")
    return path


@pytest.fixture(scope="module", params=["faiss", MILVUS])
def enrolled(photo, tmp_path_factory, request):
    """A pixel-embedder gallery of photos, on each backend, holding three of the six faces (enrolled as the
    embeddings of their detected, aligned crops), and what `identify_photo` finds in the whole photo."""
    gallery = open_gallery(tmp_path_factory.mktemp("photos") / "g", "pixels", device="cpu", create=True,
                           backend=request.param)
    faces = sorted(gallery.resolver.preprocessor.selecting("all").many([read_rgb(photo)])[0],
                   key=lambda f: f.face.box[0])
    assert len(faces) == 6
    embeddings = gallery.resolver.embedder.embed([face.crop for face in faces])
    for index, name in ENROLLED.items():
        assert gallery.enroll(name, [embeddings[index]])["added"] == 1
    matches = identify_photo(gallery, photo, k=3, threshold=THRESHOLD)
    yield gallery, matches, faces
    gallery.close()


def test_every_face_is_identified_enrolled_ones_as_themselves_the_others_unknown(enrolled):
    gallery, matches, faces = enrolled
    assert len(matches) == 6 and all(isinstance(m, FaceMatch) for m in matches)
    assert [m.box[0] for m in matches] == sorted(m.box[0] for m in matches)  # left to right
    for index, (match, face) in enumerate(zip(matches, faces, strict=True)):
        assert np.allclose(match.box, face.face.box) and match.landmarks.shape == (5, 2)
        assert match.score >= 0.9 and match.threshold == THRESHOLD
        assert match.identity == ENROLLED.get(index, "unknown"), (index, match.candidates)
        assert len(match.candidates) == 3 and match.known == (index in ENROLLED)
    assert gallery.resolver.preprocessor.detector.select == "subject"  # enrolment still keeps one face per image
    as_json = json.loads(json.dumps([m.to_dict() for m in matches]))
    assert as_json[0]["identity"] == "left" and len(as_json[0]["box"]) == 4 and len(as_json[0]["landmarks"]) == 5
    assert {"identity", "score"} == set(as_json[0]["candidates"][0])


def test_cli_identifies_all_faces_and_draws_them(enrolled, photo, tmp_path, capsys):
    gallery, matches, _ = enrolled
    out = tmp_path / "annotated.jpg"
    assert main(["identify", str(gallery.path), str(photo), "--all-faces", "--annotate", str(out), "-k", "3",
                 "--threshold", str(THRESHOLD), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows == [{"image": str(photo), "faces": json.loads(json.dumps([m.to_dict() for m in matches]))}]
    before, after = read_rgb(photo).astype(int), read_rgb(out).astype(int)
    assert after.shape == before.shape
    for match in matches:
        x1, y1, x2, y2 = match.box.astype(int)
        assert np.abs(after[y1:y2, x1:x2] - before[y1:y2, x1:x2]).max() > 100  # the box is drawn
    inside = np.zeros(before.shape[:2], bool)
    for match in matches:
        x1, y1, x2, y2 = match.box.astype(int)
        inside[max(0, y1 - 40):y2 + 5, max(0, x1 - 5):x2 + 200] = True
    assert np.abs(after - before)[~inside].mean() < 3  # elsewhere only JPEG noise


def test_cli_prints_one_line_per_face(enrolled, photo, capsys, monkeypatch):
    gallery, matches, _ = enrolled
    monkeypatch.setattr("faceid.gallery.photos.identify_photo", lambda *args, **kwargs: matches)
    assert main(["identify", str(gallery.path), str(photo), "--all-faces", "--threshold", str(THRESHOLD)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 6 and lines[0].startswith(f"{photo} face 1 [") and ": left  (threshold 0.900" in lines[0]
    assert ": unknown  (" in lines[1]


def test_a_photo_without_faces_gives_no_matches(enrolled):
    gallery, _, _ = enrolled
    assert identify_photo(gallery, np.full((120, 160, 3), 128, np.uint8), threshold=THRESHOLD) == []


def test_errors_name_the_photo(enrolled, tmp_path):
    gallery, _, _ = enrolled
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(GalleryError, match="broken.jpg: not a readable image"):
        identify_photo(gallery, tmp_path / "broken.jpg")
    crops_only = Gallery.create(tmp_path / "aligned", fingerprint={"fingerprint": "test", "embedding_dim": 8})
    with pytest.raises(GalleryError, match="door.jpg: finding every face .* face detector"):
        identify_photo(crops_only, tmp_path / "door.jpg")
    crops_only.close()


def test_annotate_needs_exactly_one_photo(enrolled, photo, tmp_path, capsys):
    gallery, _, _ = enrolled
    assert main(["identify", str(gallery.path), str(photo), str(photo), "--annotate", str(tmp_path / "a.jpg")]) == 2
    assert "--annotate draws one photo; 2 were given" in capsys.readouterr().err


def test_http_identify_all_faces_returns_every_face(enrolled, photo):
    from faceid.gallery.service.app import create_app
    from tests.gallery.http_client import call, running

    gallery, matches, _ = enrolled
    with running(create_app(gallery)) as (base, _):
        status, faces = call(f"{base}/identify?all_faces=true", "POST", fields={"k": 3, "threshold": THRESHOLD},
                             files=[("file", "multiface.jpg", photo.read_bytes())], key=None)
    assert status == 200, faces
    assert [face["identity"] for face in faces] == [match.identity for match in matches]
    assert {"box", "landmarks", "identity", "candidates"} <= set(faces[0])
    assert sorted(f["identity"] for f in faces if f["identity"] != "unknown") == sorted(ENROLLED.values())
