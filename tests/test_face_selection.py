"""The subject rule, the ambiguity flag, the quality measures and gate, and the centred face, each against a naive
reference written from its definition."""

import math

import numpy as np
import pytest

from faceid.face_quality import NOSE_DEPTH, FaceQuality, QualityGate, measure_quality, pose, sharpness
from faceid.face_selection import AMBIGUITY_MARGIN, DEFAULT_SELECT, DetectedFace, select_faces, subject_score
from faceid.preprocessing import CENTRED_LANDMARKS, centred_face


def face(x1, y1, x2, y2, score=0.99) -> DetectedFace:
    return DetectedFace(np.array([x1, y1, x2, y2], np.float32), score, np.zeros((5, 2), np.float32))


def reference_subject(faces, height, width):
    """insightface's max_num ranking, written out with faceid's measured weight, on the part of each box inside the
    photo: area - 0.25 * squared centre offset, the best first."""
    best, best_value = None, -math.inf
    for f in faces:
        x1, y1 = max(0.0, float(f.box[0])), max(0.0, float(f.box[1]))
        x2, y2 = min(float(width), float(f.box[2])), min(float(height), float(f.box[3]))
        offset_x, offset_y = (x1 + x2) / 2 - width / 2, (y1 + y2) / 2 - height / 2
        value = (x2 - x1) * (y2 - y1) - 0.25 * (offset_x ** 2 + offset_y ** 2)
        if value > best_value:
            best, best_value = f, value
    return best


def test_the_default_is_the_subject_rule():
    assert DEFAULT_SELECT == "subject"


def test_subject_rule_matches_the_reference_on_random_photos():
    rng = np.random.default_rng(0)
    for _ in range(200):
        height, width = rng.integers(100, 600, 2)
        faces = []
        for _ in range(rng.integers(1, 6)):
            x, y = rng.uniform(-40, width - 10), rng.uniform(-40, height - 10)  # some boxes reach past the edges
            side = rng.uniform(8, 150)
            faces.append(face(x, y, x + side, y + side * 1.2))
        (chosen,) = select_faces(faces, "subject", (height, width))
        assert np.array_equal(chosen.box, reference_subject(faces, height, width).box)


def test_a_centred_subject_beats_a_bigger_neighbour_cut_by_the_edge_and_largest_does_not():
    shape = (320, 320)
    subject, neighbour = face(130, 120, 190, 195), face(250, 90, 320, 200)  # 60x75 centred, 70x110 at the edge
    assert neighbour.area > subject.area
    assert np.array_equal(select_faces([neighbour, subject], "subject", shape)[0].box, subject.box)
    assert np.array_equal(select_faces([neighbour, subject], "largest", shape)[0].box, neighbour.box)


def test_only_the_part_of_a_box_inside_the_photo_counts():
    """MTCNN's box of a face cut by the edge reaches past it: a 160x170 box, two thirds outside a 480-px-wide photo,
    loses to a 60x80 centred subject (counted whole, it would score 27200 - 0.25 x 270² = 8975 against 4800)."""
    shape = (360, 480)
    subject, cut = face(210, 140, 270, 220), face(428, 92, 588, 262)
    assert np.array_equal(select_faces([cut, subject], "subject", shape)[0].box, subject.box)


def test_a_large_subject_beside_the_centre_beats_a_small_face_at_the_centre():
    """celeba_wild's case against insightface's weight 2: a 150x180 subject 120 px from the centre of a 400x400 photo
    and a 40x50 face behind it at the centre (with weight 2 the small face would score 2000 against -1800)."""
    shape = (400, 400)
    subject, small = face(245, 110, 395, 290), face(180, 175, 220, 225)
    assert np.array_equal(select_faces([small, subject], "subject", shape)[0].box, subject.box)


def test_two_faces_equally_good_as_subjects_are_ambiguous_and_name_the_other_box():
    shape = (200, 400)
    left, right = face(120, 70, 180, 130), face(220, 70, 280, 130)  # mirror images about the centre
    (chosen,) = select_faces([left, right], "subject", shape)
    assert chosen.ambiguous
    other = right if np.array_equal(chosen.box, left.box) else left
    assert np.array_equal(chosen.rival, other.box)


def test_ambiguity_follows_the_margin_exactly():
    shape = (400, 400)
    chosen = face(170, 170, 230, 230)  # centred, area 3600, score 3600
    for gap, expected in ((AMBIGUITY_MARGIN * 3600 - 1, True), (AMBIGUITY_MARGIN * 3600 + 1, False)):
        offset = math.sqrt(gap / 0.25)  # a rival of the same size whose subject score is 3600 - gap
        rival = face(170 + offset, 170, 230 + offset, 230)
        assert subject_score(rival, shape) == pytest.approx(3600 - gap, abs=1e-2)
        (picked,) = select_faces([chosen, rival], "subject", shape)
        assert np.array_equal(picked.box, chosen.box) and picked.ambiguous is expected


def test_the_margin_of_a_face_cut_by_the_edge_counts_only_its_visible_part():
    """The subject score counts the part of a box inside the photo; so does the ambiguity margin. A chosen face half
    past the top edge (200x200 box, 200x100 visible, score 20000 - 0.25 x 150² = 14375) has a margin of 10000, not
    20000: a small central face (60x60, score 3600) is no rival, a 70x70 one (4900) is."""
    shape = (400, 400)
    cut = face(100, -100, 300, 100)
    assert subject_score(cut, shape) == pytest.approx(14375)
    for side, expected in ((60, False), (70, True)):
        small = face(200 - side / 2, 200 - side / 2, 200 + side / 2, 200 + side / 2)
        (picked,) = select_faces([cut, small], "subject", shape)
        assert np.array_equal(picked.box, cut.box) and picked.ambiguous is expected, side


def test_one_face_or_a_small_background_face_is_not_ambiguous():
    shape = (320, 320)
    subject = face(100, 90, 220, 230)
    assert not select_faces([subject], "subject", shape)[0].ambiguous
    assert not select_faces([subject, face(10, 10, 30, 34)], "subject", shape)[0].ambiguous


def test_an_explicit_rule_that_picks_a_worse_subject_is_ambiguous():
    shape = (320, 320)
    subject, neighbour = face(130, 120, 190, 195), face(250, 90, 320, 200)
    assert select_faces([subject, neighbour], "largest", shape)[0].ambiguous


def test_pose_against_a_rotated_head_model():
    """A head turned by yaw t: eyes at x = +-e cos t, nose tip at NOSE_DEPTH e sin t (orthographic projection)."""
    e = 30.0
    for degrees in (-40, -10, 0, 25, 45):
        t = math.radians(degrees)
        points = np.array([[-e * math.cos(t), 0], [e * math.cos(t), 0], [NOSE_DEPTH * e * math.sin(t), 25],
                           [-20, 50], [20, 50]]) + 100
        interocular, yaw, roll = pose(points)
        assert interocular == pytest.approx(2 * e * math.cos(t)) and yaw == pytest.approx(degrees, abs=1e-6)
        assert roll == pytest.approx(0, abs=1e-9)


def test_roll_is_the_eye_line_angle():
    points = np.array([[0, 0], [10, 10], [5, 8], [0, 15], [10, 15]], float)
    assert pose(points)[2] == pytest.approx(45.0)


def test_sharpness_against_a_loop_over_pixels():
    rng = np.random.default_rng(1)
    crop = rng.integers(0, 256, (12, 14, 3)).astype(np.uint8)
    grey = crop.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    values = [grey[y - 1, x] + grey[y + 1, x] + grey[y, x - 1] + grey[y, x + 1] - 4 * grey[y, x]
              for y in range(1, 11) for x in range(1, 13)]
    assert sharpness(crop) == pytest.approx(float(np.var(values)))
    assert sharpness(np.full((20, 20, 3), 128, np.uint8)) == 0.0


@pytest.mark.parametrize("field, value, word", [("interocular", 5.0, "too small"), ("sharpness", 1.0, "blurred"),
                                                ("yaw", -70.0, "turned"), ("detector_score", 0.5, "uncertain")])
def test_each_gate_check_fails_alone_and_names_itself(field, value, word):
    good = dict(interocular=60.0, sharpness=100.0, yaw=5.0, roll=0.0, detector_score=0.999)
    gate = QualityGate()
    assert gate.problems(FaceQuality(**good)) == []
    problems = gate.problems(FaceQuality(**{**good, field: value}))
    assert len(problems) == 1 and word in problems[0]


def test_measure_quality_reads_the_landmarks_crop_and_score():
    landmarks = np.array([[40, 50], [80, 50], [60, 70], [45, 90], [75, 90]], np.float32)
    quality = measure_quality(landmarks, np.zeros((150, 150, 3), np.uint8), 0.97)
    assert quality.interocular == pytest.approx(40) and quality.yaw == pytest.approx(0)
    assert quality.sharpness == 0.0 and quality.detector_score == pytest.approx(0.97)


@pytest.mark.parametrize("shape", [(320, 240), (240, 320), (250, 250)])
def test_centred_face_places_the_mean_layout_at_the_centre_of_the_shorter_side(shape):
    centred = centred_face(shape)
    height, width = shape
    expected = np.array([width / 2, height / 2]) + CENTRED_LANDMARKS * min(height, width)
    assert np.allclose(centred.landmarks, expected, atol=1e-4)
    x1, y1, x2, y2 = centred.box
    assert 0 <= x1 < expected[:, 0].min() and expected[:, 0].max() < x2 <= width
    assert 0 <= y1 < expected[:, 1].min() and expected[:, 1].max() < y2 <= height
