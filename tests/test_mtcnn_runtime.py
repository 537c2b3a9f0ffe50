"""MTCNN without torch (faceid.mtcnn_runtime) against facenet-pytorch's own MTCNN and its torch/torchvision parts."""

import subprocess
import sys

import numpy as np
import pytest
import torch
import torchvision
from facenet_pytorch import MTCNN
from facenet_pytorch.models.utils.detect_face import batched_nms_numpy

from faceid.data.images import read_rgb
from faceid.mtcnn_runtime import OnnxMTCNN, area_resize, batched_nms, min_nms


def _naive_area_resize(image: np.ndarray, size) -> np.ndarray:
    """Adaptive average pooling written out: cell (i, j) averages rows floor(i H / h) .. ceil((i + 1) H / h) - 1."""
    channels, height, width = image.shape
    out = np.zeros((channels, *size))
    for i in range(size[0]):
        for j in range(size[1]):
            rows = slice(i * height // size[0], -(-(i + 1) * height // size[0]))
            cols = slice(j * width // size[1], -(-(j + 1) * width // size[1]))
            out[:, i, j] = image[:, rows, cols].mean(axis=(1, 2))
    return out


@pytest.mark.parametrize("source, size", [((17, 23), (9, 12)), ((40, 31), (24, 24)), ((7, 5), (12, 11))])
def test_area_resize_is_torchs_area_interpolation(source, size):
    image = np.random.default_rng(0).uniform(0, 255, (3, *source)).astype(np.float32)
    expected = torch.nn.functional.interpolate(torch.from_numpy(image)[None], size=size, mode="area")[0].numpy()
    assert np.allclose(area_resize(image, size), expected, atol=1e-3)
    assert np.allclose(area_resize(image, size), _naive_area_resize(image, size), atol=1e-3)


def _random_boxes(count: int, seed: int):
    rng = np.random.default_rng(seed)
    corner = rng.uniform(0, 200, (count, 2))
    boxes = np.concatenate([corner, corner + rng.uniform(5, 60, (count, 2))], axis=1).astype(np.float32)
    return boxes, rng.uniform(0, 1, count).astype(np.float32), rng.integers(0, 3, count)


@pytest.mark.parametrize("count", [50, 1500])  # 1500 boxes: 6000 coordinates, torchvision's per-image branch
def test_batched_nms_keeps_what_torchvision_keeps_in_its_order(count):
    boxes, scores, images = _random_boxes(count, count)
    expected = torchvision.ops.batched_nms(torch.from_numpy(boxes), torch.from_numpy(scores),
                                           torch.from_numpy(images), 0.5).numpy()
    assert batched_nms(boxes, scores, images, 0.5).tolist() == expected.tolist()


def test_min_nms_keeps_what_facenet_pytorch_keeps():
    boxes, scores, images = _random_boxes(300, 7)
    expected = batched_nms_numpy(torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(images), 0.7,
                                 "Min").numpy()
    assert min_nms(boxes, scores, images, 0.7).tolist() == expected.tolist()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from faceid.export.mtcnn_onnx import export_mtcnn

    folder = tmp_path_factory.mktemp("mtcnn")
    digests = export_mtcnn(folder)
    assert sorted(digests) == ["onet.onnx", "pnet.onnx", "rnet.onnx"]
    return folder


def _same_answers(ours, theirs, tolerance=1e-2):
    for mine, reference in zip(zip(*ours, strict=True), zip(*theirs, strict=True), strict=True):
        boxes, scores, points = mine
        if reference[0] is None:
            assert boxes is None and points is None
            continue
        assert boxes.shape == reference[0].shape
        assert np.abs(boxes - reference[0]).max() < tolerance and np.abs(points - reference[2]).max() < tolerance
        assert np.abs(scores - np.asarray(reference[1], np.float32)).max() < 1e-4


def test_onnx_mtcnn_finds_the_same_faces_as_facenet_pytorch(exported, shared_data):
    """Boxes and landmarks within 0.01 px on in-the-wild photos (one or several faces, none) and a studio photo,
    one at a time and as a batch of equal-size images."""
    ours, theirs = OnnxMTCNN(exported), MTCNN(keep_all=True, device="cpu")
    photos = sorted((shared_data / "celeba_wild").rglob("*.jpg"))[::320] + [shared_data / "orl" / "s1" / "1.pgm"]
    photos.append(shared_data / "celeba_wild" / "7370" / "183341.jpg")  # no upright face
    for photo in photos:
        rgb = read_rgb(photo)[None]
        _same_answers(ours.detect(rgb), theirs.detect(rgb, landmarks=True))
    batch = np.stack([read_rgb(shared_data / "orl" / f"s{i}" / "1.pgm") for i in (1, 2, 3)])
    _same_answers(ours.detect(batch), theirs.detect(batch, landmarks=True))


def test_a_folder_without_the_networks_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"{tmp_path}: no pnet.onnx, rnet.onnx, onet.onnx"):
        OnnxMTCNN(tmp_path)


def test_the_runtime_imports_no_torch():
    code = "import sys, faceid.mtcnn_runtime; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
