import hashlib

import cv2
import numpy as np
import pytest

from faceid.alignment import template_for_size
from faceid.data.folder import list_identity_folder
from faceid.data.synthetic import draw_face, generate_dataset, read_landmarks, sample_identity


def _digest(root):
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_other_seed_other_faces(tmp_path):
    generate_dataset(tmp_path / "a", 3, 2, seed=7, progress=False)
    generate_dataset(tmp_path / "b", 3, 2, seed=7, progress=False)
    generate_dataset(tmp_path / "c", 3, 2, seed=8, progress=False)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    a, c = _digest(tmp_path / "a"), _digest(tmp_path / "c")
    assert a.keys() == c.keys()
    assert all(a[k] != c[k] for k in a if k.endswith(".png"))


def test_identity_folder_layout(small_synthetic):
    for tree in ("raw", "aligned"):
        images = list_identity_folder(small_synthetic / tree)
        assert len(images) == 12 * 4
        assert sorted({i.identity for i in images}) == [f"id_{k:05d}" for k in range(12)]
        assert all(i.path.name in {"000.png", "001.png", "002.png", "003.png"} for i in images)
    assert cv2.imread(str(small_synthetic / "aligned/id_00000/000.png")).shape == (112, 112, 3)
    assert cv2.imread(str(small_synthetic / "raw/id_00000/000.png")).shape == (224, 224, 3)


def test_landmark_files_cover_every_image_and_lie_inside_it(small_synthetic):
    raw = read_landmarks(small_synthetic / "raw/landmarks.csv")
    aligned = read_landmarks(small_synthetic / "aligned/landmarks.csv")
    images = {i.relative for i in list_identity_folder(small_synthetic / "raw")}
    assert set(raw) == images == set(aligned)
    for points in raw.values():
        assert ((points > 0) & (points < 224)).all()
        assert points[0, 0] < points[1, 0] and points[3, 0] < points[4, 0]  # left before right
        assert points[:2, 1].mean() < points[2, 1] < points[3:, 1].mean()  # eyes, nose, mouth top to bottom


def test_aligned_landmarks_are_near_the_template(small_synthetic):
    aligned = np.stack(list(read_landmarks(small_synthetic / "aligned/landmarks.csv").values()))
    residual = np.linalg.norm(aligned - template_for_size(112), axis=2).mean()
    assert residual < 6.0  # a least-squares fit of an identity's own geometry: close, not exact


def test_landmarks_match_the_drawn_features():
    """The eye landmarks sit on the drawn pupils: the darkest pixels around each eye."""
    rng = np.random.default_rng(0)
    identity = sample_identity(rng)
    image, _, landmarks = draw_face(identity, rng, yaw=0.0)
    gray = image.astype(np.float32).sum(2)
    for x, y in landmarks[:2]:
        x, y = int(round(x)), int(round(y))
        window = gray[y - 12:y + 13, x - 12:x + 13]
        dy, dx = np.unravel_index(np.argmin(window), window.shape)
        assert abs(dx - 12) <= 3 and abs(dy - 12) <= 3


def test_identities_are_not_given_away_by_one_attribute():
    identities = [sample_identity(np.random.default_rng([0, k])) for k in range(200)]
    for attribute in ("face_half_width", "eye_half_distance", "mouth_half_width", "nose_y"):
        values = np.array([getattr(i, attribute) for i in identities])
        gaps = np.diff(np.sort(values))
        assert gaps.max() < 0.1 * (values.max() - values.min())  # a continuum, no isolated clusters
    assert len({i.skin for i in identities}) == 200


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="identities"):
        generate_dataset(tmp_path, 0, 2, progress=False)
