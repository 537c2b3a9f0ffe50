"""The landmark mapping: fit, prediction, rescaling and alignment through it, each against a naive reference."""

import numpy as np
import pytest

from faceid.alignment import TEMPLATES, AlignmentTemplate, align_face, alignment_matrix, alignment_template
from faceid.landmark_mapping import LandmarkMapping, fit_landmark_mapping

TEMPLATE = TEMPLATES["dlib_150"]


def _random_mapping(seed: int) -> LandmarkMapping:
    rng = np.random.default_rng(seed)
    return LandmarkMapping(np.eye(10) + rng.normal(0, 0.05, (10, 10)), rng.normal(0, 2, 10),
                           TEMPLATE.points + rng.normal(0, 3, (5, 2)))


def _face(seed: int) -> np.ndarray:
    """Five landmarks of a face somewhere in a 400 px photo: the template turned, scaled, moved and jittered."""
    rng = np.random.default_rng(seed)
    angle, scale = rng.uniform(-0.5, 0.5), rng.uniform(0.5, 2.5)
    rotation = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return TEMPLATE.points @ rotation.T + rng.uniform(50, 250, 2) + rng.normal(0, 2, (5, 2))


def _naive_predict(mapping: LandmarkMapping, points: np.ndarray) -> np.ndarray:
    flat = points.ravel()
    out = [sum(mapping.weights[i, j] * flat[j] for j in range(10)) + mapping.bias[i] for i in range(10)]
    return np.array(out).reshape(5, 2)


def _naive_similarity(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Least squares z' = a z + b over complex numbers z = x + iy (a: rotation and scale, b: shift)."""
    z, w = source[:, 0] + 1j * source[:, 1], target[:, 0] + 1j * target[:, 1]
    zc, wc = z - z.mean(), w - w.mean()
    a = sum(wc[k] * np.conj(zc[k]) for k in range(len(z))) / sum(abs(zc[k]) ** 2 for k in range(len(z)))
    b = w.mean() - a * z.mean()
    return np.array([[a.real, -a.imag, b.real], [a.imag, a.real, b.imag]])


def _as_3x3(matrix: np.ndarray) -> np.ndarray:
    return np.vstack([matrix, [0.0, 0.0, 1.0]])


def _naive_alignment(landmarks: np.ndarray, template: AlignmentTemplate) -> np.ndarray:
    first = _naive_similarity(landmarks, template.points)
    in_frame = np.array([first[:, :2] @ p + first[:, 2] for p in landmarks])
    second = _naive_similarity(_naive_predict(template.landmark_mapping, in_frame), template.landmark_mapping.target)
    return (_as_3x3(second) @ _as_3x3(first))[:2]


def test_prediction_is_the_linear_formula():
    mapping = _random_mapping(0)
    for seed in range(5):
        points = _face(seed)
        assert np.allclose(mapping.predict(points), _naive_predict(mapping, points))


def test_the_fit_is_least_squares_and_recovers_a_known_map():
    truth = _random_mapping(1)
    rng = np.random.default_rng(2)
    source = np.stack([TEMPLATE.points + rng.normal(0, 4, (5, 2)) for _ in range(60)])
    exact = np.stack([truth.predict(points) for points in source])
    recovered = fit_landmark_mapping(source, exact, truth.target)
    assert np.allclose(recovered.weights, truth.weights, atol=1e-6) and np.allclose(recovered.bias, truth.bias,
                                                                                      atol=1e-4)
    noisy = exact + rng.normal(0, 1, exact.shape)
    fitted = fit_landmark_mapping(source, noisy, truth.target)
    # naive normal equations, built sample by sample: (sum x x^T) beta = sum x y^T, x = [points, 1]
    gram, moment = np.zeros((11, 11)), np.zeros((11, 10))
    for points, goal in zip(source, noisy, strict=True):
        x = np.append(points.ravel(), 1.0)
        gram += np.outer(x, x)
        moment += np.outer(x, goal.ravel())
    beta = np.linalg.solve(gram, moment)
    assert np.allclose(fitted.weights, beta[:10].T, atol=1e-6) and np.allclose(fitted.bias, beta[10], atol=1e-4)


def test_alignment_through_a_mapping_is_two_similarities():
    template = AlignmentTemplate("mapped", TEMPLATE.points, TEMPLATE.size, _random_mapping(3))
    image = np.random.default_rng(4).integers(0, 255, (400, 400, 3), dtype=np.uint8)
    for seed in range(6):
        landmarks = _face(seed)
        matrix = alignment_matrix(landmarks, template)
        assert np.allclose(matrix, _naive_alignment(landmarks, template), atol=1e-8)
        crop, returned = align_face(image, landmarks, template)
        assert np.array_equal(returned, matrix) and crop.shape == (150, 150, 3)


def test_an_identity_mapping_onto_the_template_is_the_plain_alignment():
    identity = LandmarkMapping(np.eye(10), np.zeros(10), TEMPLATE.points)
    mapped = AlignmentTemplate("identity", TEMPLATE.points, TEMPLATE.size, identity)
    plain = AlignmentTemplate("plain", TEMPLATE.points, TEMPLATE.size)
    landmarks = _face(7)
    assert np.allclose(alignment_matrix(landmarks, mapped), alignment_matrix(landmarks, plain), atol=1e-9)


@pytest.mark.parametrize("size", [300, (150, 120), 75])
def test_a_scaled_mapped_template_makes_the_scaled_crop(size):
    template = AlignmentTemplate("mapped", TEMPLATE.points, TEMPLATE.size, _random_mapping(5))
    scaled = template.scaled(size)
    height, width = (size, size) if isinstance(size, int) else size
    ratio, shift = height / 150, (width - 150 * height / 150) / 2
    frame = np.array([[ratio, 0, shift], [0, ratio, 0]])  # native crop -> scaled crop
    for seed in range(4):
        landmarks = _face(seed)
        expected = (_as_3x3(frame) @ _as_3x3(alignment_matrix(landmarks, template)))[:2]
        assert np.allclose(alignment_matrix(landmarks, scaled), expected, atol=1e-8)


def test_the_mapping_travels_in_a_spec_and_bad_mappings_are_refused():
    template = AlignmentTemplate("mapped", TEMPLATE.points, TEMPLATE.size, _random_mapping(6))
    assert alignment_template(template.to_spec()) == template
    assert alignment_template(TEMPLATE.to_spec()) == TEMPLATE
    assert template != AlignmentTemplate("mapped", TEMPLATE.points, TEMPLATE.size)
    spec = template.to_spec()
    bad = [({**spec["landmark_mapping"], "bias": [0.0] * 9}, r"bias must have shape \(10,\), got \(9,\)"),
           ({**spec["landmark_mapping"], "weights": [[np.nan] * 10] * 10}, "weights contains NaN"),
           ({"weights": spec["landmark_mapping"]["weights"]}, "exactly"),
           ([1, 2], "must be a mapping"),
           ({**spec["landmark_mapping"], "target": "x"}, "target")]
    for mapping, message in bad:
        with pytest.raises(ValueError, match=message):
            alignment_template({**spec, "landmark_mapping": mapping})
    with pytest.raises(ValueError, match="must be a LandmarkMapping"):
        AlignmentTemplate("t", TEMPLATE.points, TEMPLATE.size, {"weights": 1})
    with pytest.raises(ValueError, match="at least 11 faces"):
        fit_landmark_mapping(np.zeros((5, 5, 2)), np.zeros((5, 5, 2)), TEMPLATE.points)
    with pytest.raises(ValueError, match=r"\(N, 5, 2\)"):
        fit_landmark_mapping(np.zeros((20, 4, 2)), np.zeros((20, 4, 2)), TEMPLATE.points)


def test_the_shipped_dlib_mapping_keeps_a_frontal_face_near_the_mean_template():
    """A face exactly on the mean template is frontal: the fitted mapping moves its crop by a few pixels at most,
    and the mapping's target is dlib's chip layout (eyes above the nose, inside the chip)."""
    landmarks = _face(8)
    plain = alignment_matrix(landmarks, AlignmentTemplate("plain", TEMPLATE.points, TEMPLATE.size))
    mapped = alignment_matrix(landmarks, TEMPLATE)
    shift = np.linalg.norm(np.array([p @ mapped[:, :2].T + mapped[:, 2] - (p @ plain[:, :2].T + plain[:, 2])
                                     for p in landmarks]), axis=1)
    assert TEMPLATE.landmark_mapping is not None and shift.max() < 6, shift
    target = TEMPLATE.landmark_mapping.target
    assert (target > 0).all() and (target < 150).all() and target[:4, 1].max() < target[4, 1]
