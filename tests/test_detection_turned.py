"""Faces that MTCNN misses upright are searched in the image turned a quarter each way, and mapped back."""

import numpy as np
import pytest

from faceid.data.images import read_rgb
from faceid.detection import FaceDetector, turned_back, without_overlaps
from faceid.face_selection import DetectedFace, box_iou


@pytest.fixture(scope="module")
def detectors():
    return FaceDetector(device="cpu"), FaceDetector(device="cpu", retry_turned=False)


@pytest.mark.parametrize("turns", [1, 3])
def test_a_point_turned_back_lands_on_the_pixel_np_rot90_moved(turns):
    """Naive reference: light one pixel, turn the image with np.rot90, find the lit pixel; the centre of the lit pixel
    in the turned image, turned back, is the centre of the pixel that was lit."""
    height, width = 7, 11
    rng = np.random.default_rng(turns)
    for _ in range(20):
        row, column = int(rng.integers(height)), int(rng.integers(width))
        image = np.zeros((height, width), np.uint8)
        image[row, column] = 1
        turned_row, turned_column = np.argwhere(np.rot90(image, turns))[0]
        centre = np.array([turned_column + 0.5, turned_row + 0.5], np.float32)
        face = DetectedFace(np.array([*centre, *(centre + 1)], np.float32), 0.99, np.tile(centre, (5, 1)))
        back = turned_back(face, turns, image.shape)
        assert np.allclose(back.landmarks, [column + 0.5, row + 0.5]), (row, column)
        assert back.box[2] - back.box[0] == pytest.approx(1) and back.box[3] - back.box[1] == pytest.approx(1)
        assert back.box[0] <= column + 0.5 <= back.box[2] and back.box[1] <= row + 0.5 <= back.box[3]


def test_turned_back_refuses_other_turns():
    face = DetectedFace(np.zeros(4, np.float32), 0.99, np.zeros((5, 2), np.float32))
    with pytest.raises(ValueError, match="turns must be 1 or 3"):
        turned_back(face, 2, (10, 10))


@pytest.mark.parametrize("turns", [1, 3])
def test_a_sideways_studio_photo_is_found_turned_with_its_upright_landmarks(detectors, shared_data, turns):
    on, off = detectors
    upright = read_rgb(shared_data / "orl" / "s1" / "1.pgm")
    (face,) = off.detect_arrays([upright])[0]
    sideways = np.ascontiguousarray(np.rot90(upright, turns))
    assert off.detect_arrays([sideways])[0] == []
    (found,) = on.detect_arrays([sideways])[0]
    height, width = upright.shape[:2]
    x, y = face.landmarks[:, 0], face.landmarks[:, 1]
    expected = np.stack([y, width - x] if turns == 1 else [height - y, x], axis=-1)  # the forward turn of (x, y)
    assert np.abs(found.landmarks - expected).max() < 3, (found.landmarks, expected)
    assert found.landmarks[0, 1] != pytest.approx(found.landmarks[1, 1], abs=5)  # eyes one above the other


def test_a_real_photo_of_a_person_lying_down_is_found_only_turned(detectors, shared_data):
    on, off = detectors
    photo = read_rgb(shared_data / "celeba_wild" / "7370" / "183341.jpg")
    assert off.detect_arrays([photo])[0] == []
    (found,) = on.detect_arrays([photo])[0]
    height, width = photo.shape[:2]
    assert (found.box[:2] >= -1).all() and found.box[2] <= width + 1 and found.box[3] <= height + 1
    assert found.score >= 0.9


def test_box_iou_against_counted_pixels():
    """Naive reference: integer boxes painted on a grid, overlapping and union pixels counted."""
    rng = np.random.default_rng(0)
    for _ in range(50):
        a, b = (np.sort(rng.integers(0, 30, (2, 2)), axis=0).T.ravel()[[0, 2, 1, 3]] for _ in range(2))
        masks = []
        for x1, y1, x2, y2 in (a, b):
            mask = np.zeros((30, 30), bool)
            mask[y1:y2, x1:x2] = True
            masks.append(mask)
        union = (masks[0] | masks[1]).sum()
        expected = (masks[0] & masks[1]).sum() / union if union else 0.0
        assert box_iou(a, b) == pytest.approx(expected), (a, b)


def test_without_overlaps_keeps_the_best_of_overlapping_faces_and_every_separate_one():
    def face(x1, score):
        return DetectedFace(np.array([x1, 0, x1 + 10, 10], np.float32), score, np.zeros((5, 2), np.float32))

    worse, better, apart = face(0, 0.95), face(2, 0.99), face(50, 0.91)  # worse and better: IoU 8/12
    kept = without_overlaps([worse, apart, better])
    assert [f.score for f in kept] == [0.99, 0.91]
    assert len(without_overlaps([worse, better], max_iou=0.7)) == 2


@pytest.mark.parametrize("photo", ["7308/047644.jpg", "7327/191138.jpg"])
def test_a_face_found_in_both_quarter_turns_is_one_face_not_an_ambiguous_pair(detectors, shared_data, photo):
    """These two photos' faces are turned diagonally: each quarter turn finds it, one of them upside down."""
    on, off = detectors
    rgb = read_rgb(shared_data / "celeba_wild" / photo)
    per_turn = [off.detect_arrays([np.ascontiguousarray(np.rot90(rgb, turns))])[0] for turns in (1, 3)]
    assert all(per_turn) and off.detect_arrays([rgb])[0] == []
    everything = FaceDetector(device="cpu", select="all").detect_arrays([rgb])[0]
    assert len(everything) == 1 and everything[0].score == max(f.score for faces in per_turn for f in faces)
    (chosen,) = on.detect_arrays([rgb])[0]
    assert not chosen.ambiguous
