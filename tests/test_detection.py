"""Detection, alignment and `faceid align` on the real photos in ../shared/data (skipped if absent)."""

import hashlib
import io
import json

import numpy as np
import pytest
from PIL import Image

from faceid.alignment import align_face, estimate_similarity, template_for_size
from faceid.cli import main
from faceid.data.images import ImageReadError
from faceid.detection import FaceDetector, select_faces
from faceid.preprocessing import FacePreprocessor

PORTRAITS = ["angelina_jolie.jpg", "kate_siegel.jpg", "paul_rudd.jpg", "shea_whigham.jpg"]


@pytest.fixture(scope="module")
def detector():
    return FaceDetector(device="cpu", select="all")


def _small(path, side=480) -> Image.Image:
    image = Image.open(path).convert("RGB")
    image.thumbnail((side, side))
    return image


def test_faces_in_every_portrait_and_all_six_in_the_group_photo(detector, shared_data):
    for name in PORTRAITS:
        faces = detector.detect(shared_data / "photos" / name)
        assert len(faces) == 1, name
        face = faces[0]
        assert face.box.dtype == np.float32 and face.landmarks.shape == (5, 2) and face.landmarks.dtype == np.float32
        assert face.score > 0.95
        left_eye, right_eye, nose, mouth_left, mouth_right = face.landmarks
        assert left_eye[0] < right_eye[0] and mouth_left[0] < mouth_right[0]
        assert max(left_eye[1], right_eye[1]) < nose[1] < min(mouth_left[1], mouth_right[1])
    assert len(detector.detect(shared_data / "photos" / "multiface.jpg")) == 6


def test_selection_policies(detector, shared_data):
    faces = detector.detect(shared_data / "photos" / "multiface.jpg")
    shape = (630, 1200)
    assert select_faces(faces, "largest", shape)[0].area == max(f.area for f in faces)
    assert select_faces(faces, "best", shape)[0].score == max(f.score for f in faces)
    centre = select_faces(faces, "center", shape)[0]
    distances = [np.linalg.norm((f.box[:2] + f.box[2:]) / 2 - (600, 315)) for f in faces]
    assert np.linalg.norm((centre.box[:2] + centre.box[2:]) / 2 - (600, 315)) == pytest.approx(min(distances))
    with pytest.raises(ValueError, match="select must be one of"):
        select_faces(faces, "biggest", shape)


def test_large_images_are_downscaled_and_mapped_back(shared_data):
    path = shared_data / "photos" / "paul_rudd.jpg"
    full = FaceDetector(device="cpu", max_side=2048).detect(path)[0]
    small = FaceDetector(device="cpu", max_side=512).detect(path)[0]
    interocular = np.linalg.norm(full.landmarks[0] - full.landmarks[1])
    assert np.abs(full.landmarks - small.landmarks).mean() < 0.1 * interocular
    assert np.abs(full.box - small.box).max() < 0.15 * (full.box[2] - full.box[0])


def test_bgr_arrays_and_pil_images(detector, shared_data):
    image = _small(shared_data / "photos" / "kate_siegel.jpg")
    rgb = np.asarray(image)
    from_pil, from_rgb = detector.detect(image)[0], detector.detect(rgb)[0]
    from_bgr = detector.detect(rgb[..., ::-1].copy(), bgr=True)[0]
    assert np.allclose(from_pil.landmarks, from_rgb.landmarks) and np.allclose(from_rgb.landmarks, from_bgr.landmarks)


@pytest.mark.parametrize("size", [112, (112, 96), 160, 224])
def test_alignment_is_exact_on_a_similarity_image_of_the_template(size):
    rng = np.random.default_rng(0)
    template = template_for_size(size)
    angle, scale, shift = rng.uniform(-0.6, 0.6), rng.uniform(0.5, 3), rng.uniform(-40, 200, 2)
    rotation = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    landmarks = template @ rotation.T + shift
    image = rng.integers(0, 255, (400, 400, 3), dtype=np.uint8)
    crop, matrix = align_face(image, landmarks, size)
    mapped = landmarks @ matrix[:, :2].T + matrix[:, 2]
    assert np.abs(mapped - template).max() < 1e-3
    height, width = (size, size) if isinstance(size, int) else size
    assert crop.shape == (height, width, 3)


def test_similarity_estimate_refuses_degenerate_landmarks():
    with pytest.raises(ValueError, match="all at one point"):
        estimate_similarity(np.ones((5, 2)), template_for_size(112))
    with pytest.raises(ValueError, match="NaN"):
        estimate_similarity(np.full((5, 2), np.nan), template_for_size(112))


def test_redetected_eyes_on_aligned_real_crops_sit_on_the_template(shared_data):
    preprocessor = FacePreprocessor(device="cpu", select="largest")
    redetector = FaceDetector(device="cpu", select="best", min_face_size=40)
    errors = []
    portraits = [shared_data / "photos" / n for n in PORTRAITS]
    sources = sorted((shared_data / "caltech_faces").glob("*.jpg"))[:12] + portraits
    for path in sources:
        aligned = preprocessor(_small(path, 640))
        assert len(aligned) == 1, path
        again = redetector.detect(aligned[0].crop)
        assert again, f"no face re-detected on the aligned crop of {path}"
        errors.extend(np.linalg.norm(again[0].landmarks[:2] - template_for_size(112)[:2], axis=1))
    assert np.mean(errors) < 3.0


def _jpeg_bytes(image: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", **options)
    return buffer.getvalue()


def test_exif_rotation_is_applied(detector, shared_data, tmp_path):
    upright = _small(shared_data / "photos" / "kate_siegel.jpg")
    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned; viewers rotate 90 degrees clockwise to display it
    path = tmp_path / "rotated.jpg"
    path.write_bytes(_jpeg_bytes(upright.rotate(90, expand=True), exif=exif))
    faces = detector.detect(path)
    assert len(faces) == 1
    eyes_y, mouth_y = faces[0].landmarks[:2, 1].mean(), faces[0].landmarks[3:, 1].mean()
    assert eyes_y < mouth_y  # upright: found in the displayed orientation
    assert np.abs(faces[0].landmarks - detector.detect(upright)[0].landmarks).mean() < 4


def test_grayscale_rgba_cmyk_and_16_bit_inputs(detector, shared_data, tmp_path):
    colour = _small(shared_data / "photos" / "angelina_jolie.jpg", 360)
    colour.convert("RGBA").save(tmp_path / "rgba.png")
    (tmp_path / "cmyk.jpg").write_bytes(_jpeg_bytes(colour.convert("CMYK")))
    gray = np.asarray(colour.convert("L")).astype(np.uint16) * 257
    Image.fromarray(gray).save(tmp_path / "gray16.png")
    for path in [shared_data / "orl" / "s1" / "1.pgm", tmp_path / "rgba.png", tmp_path / "cmyk.jpg",
                 tmp_path / "gray16.png"]:
        assert len(detector.detect(path)) == 1, path
    assert len(detector.detect(np.asarray(colour.convert("RGBA")))) == 1
    assert len(detector.detect(gray)) == 1


def test_bad_files_raise_one_by_one_and_are_skipped_in_batches(detector, shared_data, tmp_path):
    good = shared_data / "caltech_faces" / "image_0001.jpg"
    data = good.read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("this is not a picture")
    expected = {"truncated.jpg": "not a readable image", "empty.jpg": "empty file", "text.jpg": "not a readable image",
                "missing.jpg": "no such file"}
    for name, reason in expected.items():
        with pytest.raises(ImageReadError, match=reason) as error:
            detector.detect(tmp_path / name)
        assert name in str(error.value)
    results = detector.detect_many([tmp_path / n for n in expected] + [good])
    assert [isinstance(r, ImageReadError) for r in results] == [True, True, True, True, False]
    assert len(results[-1]) == 1


def _tree_digest(root):
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_align_command_is_complete_resumable_and_leaves_source_untouched(shared_data, tmp_path, capsys):
    source = tmp_path / "src"
    for identity in ("s1", "s2"):
        (source / identity).mkdir(parents=True)
        for k in (1, 2):
            (source / identity / f"{k}.pgm").write_bytes((shared_data / "orl" / identity / f"{k}.pgm").read_bytes())
    (source / "s2" / "broken.jpg").write_text("not an image")
    before = _tree_digest(source)
    destination = tmp_path / "aligned"
    assert main(["align", "--json", str(source), str(destination), "--workers", "2"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["processed"] == 5 and summary["ok"] == 4 and summary["error"] == 1
    assert summary["failures_by_reason"] == {"not a readable image": 1}
    records = [json.loads(line) for line in (destination / "manifest.jsonl").read_text().splitlines()]
    assert sorted(r["source"] for r in records) == sorted(str(p) for p in source.rglob("*") if p.is_file())
    assert all(r["status"] == "ok" and r["faces"] == 1 and r["score"] > 0.9
               for r in records if "broken" not in r["source"])
    assert (destination / "s1" / "1.png").is_file()
    assert main(["align", "--json", str(source), str(destination)]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["processed"] == 0 and again["skipped_already_done"] == 5
    assert _tree_digest(source) == before
    assert main(["align", "--json", str(source), str(destination), "--overwrite"]) == 0
    assert json.loads(capsys.readouterr().out)["processed"] == 5


def test_align_fails_only_when_nothing_could_be_processed(tmp_path, capsys):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.jpg").write_text("nope")
    assert main(["align", "--json", str(tmp_path / "src"), str(tmp_path / "out")]) == 1
    assert main(["align", "--json", str(tmp_path / "src"), str(tmp_path / "src" / "inside")]) == 2
    assert "must lie outside" in capsys.readouterr().err


def test_align_accepts_a_flat_folder_and_a_list_file(shared_data, tmp_path, capsys):
    flat = tmp_path / "flat"
    flat.mkdir()
    for k in (1, 2):
        (flat / f"{k}.pgm").write_bytes((shared_data / "orl" / "s3" / f"{k}.pgm").read_bytes())
    assert main(["align", "--json", str(flat), str(tmp_path / "a")]) == 0
    assert json.loads(capsys.readouterr().out)["ok"] == 2 and (tmp_path / "a" / "1.png").is_file()
    listing = tmp_path / "images.txt"
    listing.write_text(f"{shared_data / 'orl' / 's4' / '1.pgm'}\n\n{shared_data / 'photos' / 'kate_siegel.jpg'}\n")
    assert main(["align", "--json", str(listing), str(tmp_path / "b")]) == 0
    assert json.loads(capsys.readouterr().out)["ok"] == 2
    assert (tmp_path / "b" / "s4" / "1.png").is_file() and (tmp_path / "b" / "photos" / "kate_siegel.png").is_file()
