"""MTCNN without torch: facenet-pytorch's `detect_face`, step for step, on onnxruntime and numpy.

The three networks (P-, R- and O-Net) run from their ONNX exports (`faceid.export.mtcnn_onnx.export_mtcnn` writes
them from facenet-pytorch's weights); everything between them is facenet-pytorch's own procedure, re-written here
on numpy arrays: the image pyramid (torch's `interpolate(mode="area")`, i.e. adaptive average pooling), candidate
boxes from P-Net's map, torchvision's `batched_nms` (IoU, both of its strategies), the box regressions, squaring
and padding, and the final "Min" suppression. So the answers are the same boxes, scores and landmarks as
facenet-pytorch's `MTCNN.detect` (tests/test_mtcnn_runtime.py measures how close).
"""

from pathlib import Path

import numpy as np

MTCNN_FILES = {"pnet": "pnet.onnx", "rnet": "rnet.onnx", "onet": "onet.onnx"}
TORCHVISION_VANILLA_NMS_ABOVE = 4000  # torchvision's batched_nms loops per image above this many coordinates (CPU)


def area_resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(C, H, W) float32 -> (C, h, w) as torch's `interpolate(mode="area")`: output cell i averages input rows
    floor(i H / h) .. ceil((i + 1) H / h) - 1 (and the same for columns)."""
    channels, height, width = image.shape
    out_height, out_width = size
    integral = np.zeros((channels, height + 1, width + 1), np.float64)
    integral[:, 1:, 1:] = image.cumsum(axis=1, dtype=np.float64).cumsum(axis=2)
    rows, cols = np.arange(out_height), np.arange(out_width)
    top, bottom = rows * height // out_height, -(-(rows + 1) * height // out_height)
    left, right = cols * width // out_width, -(-(cols + 1) * width // out_width)
    sums = (integral[:, bottom][:, :, right] - integral[:, top][:, :, right]
            - integral[:, bottom][:, :, left] + integral[:, top][:, :, left])
    return (sums / ((bottom - top)[:, None] * (right - left)[None, :])).astype(np.float32)


def _normalised(images: np.ndarray) -> np.ndarray:
    return (images - np.float32(127.5)) * np.float32(0.0078125)


def _iou_nms(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
    """torchvision.ops.nms: best first, drop boxes whose IoU (areas without +1) with a kept one exceeds threshold."""
    x1, y1, x2, y2 = boxes.T
    areas = (x2 - x1) * (y2 - y1)
    order = np.argsort(-scores, kind="stable")
    suppressed = np.zeros(len(boxes), bool)
    keep = []
    for position, i in enumerate(order):
        if suppressed[i]:
            continue
        keep.append(i)
        rest = order[position + 1:]
        width = np.maximum(np.float32(0), np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]))
        height = np.maximum(np.float32(0), np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]))
        inter = width * height
        suppressed[rest[inter / (areas[i] + areas[rest] - inter) > threshold]] = True
    return np.array(keep, dtype=np.int64)


def batched_nms(boxes: np.ndarray, scores: np.ndarray, images: np.ndarray, threshold: float) -> np.ndarray:
    """torchvision.ops.batched_nms on CPU: NMS per image, the kept indices best first."""
    if len(boxes) == 0:
        return np.zeros(0, np.int64)
    if boxes.size > TORCHVISION_VANILLA_NMS_ABOVE:
        members = [np.flatnonzero(images == image) for image in np.unique(images)]
        keep = np.concatenate([mine[_iou_nms(boxes[mine], scores[mine], threshold)] for mine in members])
        return keep[np.argsort(-scores[keep], kind="stable")]
    offsets = images.astype(np.float32) * (boxes.max() + np.float32(1))
    return _iou_nms(boxes + offsets[:, None], scores, threshold)


def min_nms(boxes: np.ndarray, scores: np.ndarray, images: np.ndarray, threshold: float) -> np.ndarray:
    """facenet-pytorch's batched_nms_numpy(..., "Min"): overlap over the smaller box (areas with +1), boxes of
    different images kept apart by an offset."""
    if len(boxes) == 0:
        return np.zeros(0, np.int64)
    shifted = boxes + (images.astype(np.float32) * (boxes.max() + np.float32(1)))[:, None]
    x1, y1, x2, y2 = shifted.T
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = np.argsort(scores)
    keep = []
    while order.size:
        i, rest = order[-1], order[:-1]
        keep.append(i)
        width = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + 1)
        height = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + 1)
        order = rest[width * height / np.minimum(areas[i], areas[rest]) <= threshold]
    return np.array(keep, dtype=np.int64)


def _regressed(boxes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """facenet-pytorch's bbreg: corners moved by the regression times the box's size (+1)."""
    size = np.stack([boxes[:, 2] - boxes[:, 0] + 1, boxes[:, 3] - boxes[:, 1] + 1] * 2, axis=1)
    moved = boxes.copy()
    moved[:, :4] = boxes[:, :4] + offsets * size
    return moved


def _squared(boxes: np.ndarray) -> np.ndarray:
    """facenet-pytorch's rerec: each box made square on its longer side, about its centre."""
    height, width = boxes[:, 3] - boxes[:, 1], boxes[:, 2] - boxes[:, 0]
    side = np.maximum(width, height)
    squared = boxes.copy()
    squared[:, 0] = boxes[:, 0] + width * 0.5 - side * 0.5
    squared[:, 1] = boxes[:, 1] + height * 0.5 - side * 0.5
    squared[:, 2:4] = squared[:, :2] + side[:, None]
    return squared


def _crops(images: np.ndarray, boxes: np.ndarray, owners: np.ndarray, side: int) -> tuple[np.ndarray, np.ndarray]:
    """Each box cut from its image (facenet-pytorch's pad: truncated, clipped to 1..size, 1-based) and resized to
    side x side; the boxes left empty by the clip are dropped (their indices are not in the second array)."""
    height, width = images.shape[2:]
    corners = np.trunc(boxes[:, :4]).astype(np.int64)
    x, y = np.maximum(corners[:, 0], 1), np.maximum(corners[:, 1], 1)
    ex, ey = np.minimum(corners[:, 2], width), np.minimum(corners[:, 3], height)
    kept = np.flatnonzero((ey > y - 1) & (ex > x - 1))
    crops = [area_resize(images[owners[k], :, y[k] - 1:ey[k], x[k] - 1:ex[k]], (side, side)) for k in kept]
    return _normalised(np.stack(crops)) if crops else np.zeros((0, 3, side, side), np.float32), kept


class OnnxMTCNN:
    """MTCNN from the three ONNX files in `folder`; `detect(images)` answers as facenet-pytorch's
    `MTCNN(keep_all=True).detect(images, landmarks=True)` does, per image: boxes (k, 4), scores (k,), landmarks
    (k, 5, 2), largest box first, or None, [None], None when there is no face."""

    def __init__(self, folder: str | Path, min_face_size: int = 20,
                 thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7), factor: float = 0.709,
                 session_options=None):
        import onnxruntime

        folder = Path(folder)
        missing = [name for name in MTCNN_FILES.values() if not (folder / name).is_file()]
        if missing:
            raise FileNotFoundError(f"{folder}: no {', '.join(missing)} (export them with "
                                    f"faceid.export.mtcnn_onnx.export_mtcnn)")
        self.sessions = {stage: onnxruntime.InferenceSession(str(folder / name), session_options,
                                                             providers=["CPUExecutionProvider"])
                         for stage, name in MTCNN_FILES.items()}
        self.min_face_size, self.thresholds, self.factor = min_face_size, tuple(thresholds), factor

    def _run(self, stage: str, batch: np.ndarray) -> list[np.ndarray]:
        return self.sessions[stage].run(None, {"input": batch})

    def _scales(self, height: int, width: int) -> list[float]:
        scale = 12.0 / self.min_face_size
        shortest, scales = min(height, width) * scale, []
        while shortest >= 12:
            scales.append(scale)
            scale, shortest = scale * self.factor, shortest * self.factor
        return scales

    def _proposals(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Stage 1: P-Net over the pyramid; boxes (K, 9: corners, score, regression) and their image indices."""
        height, width = images.shape[2:]
        boxes, owners = [], []
        for scale in self._scales(height, width):
            size = (int(height * scale + 1), int(width * scale + 1))
            pyramid = _normalised(np.stack([area_resize(image, size) for image in images]))
            regression, probability = self._run("pnet", pyramid)
            image, row, col = np.nonzero(probability[:, 1] >= self.thresholds[0])
            cells = np.stack([col, row], axis=1).astype(np.float32)
            found = np.concatenate([np.floor((2 * cells + 1) / scale), np.floor((2 * cells + 12) / scale),
                                    probability[image, 1, row, col][:, None],
                                    regression[image, :, row, col]], axis=1).astype(np.float32)
            pick = batched_nms(found[:, :4], found[:, 4], image, 0.5)
            boxes.append(found[pick])
            owners.append(image[pick])
        boxes = np.concatenate(boxes) if boxes else np.zeros((0, 9), np.float32)
        owners = np.concatenate(owners) if owners else np.zeros(0, np.int64)
        pick = batched_nms(boxes[:, :4], boxes[:, 4], owners, 0.7)
        boxes, owners = boxes[pick], owners[pick]
        size = np.stack([boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]] * 2, axis=1)
        regressed = np.concatenate([boxes[:, :4] + boxes[:, 5:9] * size, boxes[:, 4:5]], axis=1)
        return _squared(regressed), owners

    def _refined(self, images: np.ndarray, boxes: np.ndarray, owners: np.ndarray):
        """Stage 2: R-Net on 24 px crops, threshold, NMS, regression, squared."""
        crops, kept = _crops(images, boxes, owners, 24)
        if not len(kept):
            return boxes[:0], owners[:0]
        regression, probability = self._run("rnet", crops)
        score = probability[:, 1]
        passed = score > self.thresholds[1]
        boxes = np.concatenate([boxes[kept][passed, :4], score[passed, None]], axis=1)
        owners, regression = owners[kept][passed], regression[passed]
        pick = batched_nms(boxes[:, :4], boxes[:, 4], owners, 0.7)
        return _squared(_regressed(boxes[pick], regression[pick])), owners[pick]

    def _output(self, images: np.ndarray, boxes: np.ndarray, owners: np.ndarray):
        """Stage 3: O-Net on 48 px crops: scores, landmarks (from the box before regression), regression, "Min" NMS."""
        crops, kept = _crops(images, boxes, owners, 48)
        if not len(kept):
            return boxes[:0], owners[:0], np.zeros((0, 5, 2), np.float32)
        regression, marks, probability = self._run("onet", crops)
        score = probability[:, 1]
        passed = score > self.thresholds[2]
        boxes = np.concatenate([boxes[kept][passed, :4], score[passed, None]], axis=1)
        owners, regression, marks = owners[kept][passed], regression[passed], marks[passed]
        width, height = boxes[:, 2] - boxes[:, 0] + 1, boxes[:, 3] - boxes[:, 1] + 1
        points = np.stack([width[:, None] * marks[:, :5] + boxes[:, :1] - 1,
                           height[:, None] * marks[:, 5:] + boxes[:, 1:2] - 1], axis=2)
        boxes = _regressed(boxes, regression)
        pick = min_nms(boxes[:, :4], boxes[:, 4], owners, 0.7)
        return boxes[pick], owners[pick], points[pick]

    def detect(self, images: np.ndarray) -> tuple[list, list, list]:
        """`images`: (N, H, W, 3) RGB uint8 of one size. Per image: boxes, scores, landmarks (see the class)."""
        batch = np.asarray(images)
        if batch.ndim != 4 or batch.shape[3] != 3:
            raise ValueError(f"images must be an (N, H, W, 3) array, got shape {batch.shape}")
        planes = batch.transpose(0, 3, 1, 2).astype(np.float32)
        boxes, owners = self._proposals(planes)
        if len(boxes):
            boxes, owners = self._refined(planes, boxes, owners)
        points = np.zeros((0, 5, 2), np.float32)
        if len(boxes):
            boxes, owners, points = self._output(planes, boxes, owners)
        answers = ([], [], [])
        for index in range(len(batch)):
            mine = owners == index
            found, marks = boxes[mine], points[mine]
            if not len(found):
                for answer, empty in zip(answers, (None, [None], None), strict=True):
                    answer.append(empty)
                continue
            order = np.argsort((found[:, 2] - found[:, 0]) * (found[:, 3] - found[:, 1]))[::-1]
            for answer, value in zip(answers, (found[order, :4], found[order, 4], marks[order]), strict=True):
                answer.append(value)
        return answers
