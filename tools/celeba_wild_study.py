"""What in-the-wild photos do to faceid's face selection, crop and quality measures, beside dlib's own pipeline.

On every photo of a folder tree (default ../shared/data/celeba_wild), MTCNN's faces (all of them) and dlib's
(get_frontal_face_detector with one upsampling, shape_predictor_5_face_landmarks, the network's descriptor of
get_face_chip(..., 150, 0.25)) are found once and cached. Then:

- selection: how often `subject` and `largest` choose a face other than the one dlib's pipeline embeds (its largest
  HOG face), and the cosine of dlib's descriptor against faceid's pipeline on the same photo (dlib's network on
  faceid's `dlib_150` chip of the chosen face): mean, 1st percentile, share below 0.9;
- the crop alone: the same cosine where both pipelines embed the same face (MTCNN box and HOG box overlapping),
  by yaw (faceid.face_quality.pose);
- ambiguity: how many photos `subject` marks ambiguous;
- quality: percentiles of each measure of faceid.face_quality over the chosen faces, and the share each
  QualityGate default rejects;
- the centred layout: the mean of the chosen faces' landmarks in units of the photo's shorter side, from its centre
  (faceid.preprocessing.CENTRED_LANDMARKS, used when no face is found).

Run from the repo root (pass another --data, e.g. ../shared/data/orl, for a studio set):
    PYTHONPATH=$PWD python tools/celeba_wild_study.py --cache /tmp/study [--data ../shared/data/celeba_wild]
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from faceid.alignment import align_face
from faceid.data.folder import list_identity_folder
from faceid.data.images import read_rgb
from faceid.face_quality import QualityGate, measure_quality
from faceid.face_selection import DetectedFace, box_iou, select_faces
from faceid.zoo.dlib_format import dlib_model_file

ROOT = Path(__file__).resolve().parents[1]
YAW_BINS = (0, 10, 20, 30, 45, 90)


def mtcnn_faces(paths: list[Path], cache: Path) -> list[list[DetectedFace]]:
    """Every MTCNN face of each photo (faceid's detector defaults), cached in `cache`/mtcnn.json."""
    file = cache / "mtcnn.json"
    if not file.is_file():
        from faceid.detection import FaceDetector

        detector = FaceDetector(select="all", device="cpu")
        found = [[{"box": f.box.tolist(), "score": f.score, "landmarks": f.landmarks.tolist()}
                  for f in detector.detect(path)] for path in tqdm(paths, desc="MTCNN", unit="img")]
        file.write_text(json.dumps(found))
    return [[DetectedFace(np.array(f["box"], np.float32), f["score"], np.array(f["landmarks"], np.float32))
             for f in faces] for faces in json.loads(file.read_text())]


def dlib_faces(paths: list[Path], cache: Path) -> list[list[dict]]:
    """dlib's pipeline on each photo: every HOG face's box, its five shape_predictor_5 points and its descriptor (of
    dlib's own chip), cached in `cache`/dlib.json."""
    file = cache / "dlib.json"
    if not file.is_file():
        import dlib

        models = dlib_model_file().parent
        detector = dlib.get_frontal_face_detector()
        shapes = dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat"))
        encoder = dlib.face_recognition_model_v1(str(models / "dlib_face_recognition_resnet_model_v1.dat"))
        found = []
        for path in tqdm(paths, desc="dlib", unit="img"):
            image = read_rgb(path)
            faces = []
            for r in detector(image, 1):
                shape = shapes(image, r)
                faces.append({"box": [r.left(), r.top(), r.right(), r.bottom()],
                              "points": [[part.x, part.y] for part in shape.parts()],
                              "descriptor": list(encoder.compute_face_descriptor(image, shape, 1))})
            found.append(faces)
        file.write_text(json.dumps(found))
    return json.loads(file.read_text())


def unit(vector) -> np.ndarray:
    vector = np.asarray(vector, np.float64)
    return vector / np.linalg.norm(vector)


def cosine_summary(values) -> dict:
    values = np.asarray(values, np.float64)
    if not len(values):
        return {"photos": 0}
    return {"photos": int(len(values)), "mean": float(values.mean()), "p1": float(np.percentile(values, 1)),
            "below_0.9": int((values < 0.9).sum())}


def study(paths: list[Path], cache: Path) -> dict:
    import dlib

    encoder = dlib.face_recognition_model_v1(str(dlib_model_file()))
    mtcnn, dlibs = mtcnn_faces(paths, cache), dlib_faces(paths, cache)
    pipeline = {"subject": [], "largest": []}
    crop_by_yaw: list[tuple[float, float]] = []
    qualities, layouts, ambiguous, no_face = [], [], [], 0
    for path, faces, theirs in tqdm(list(zip(paths, mtcnn, dlibs, strict=True)), desc="study", unit="img"):
        if not faces:
            no_face += 1
            continue
        rgb = read_rgb(path)
        dlib_largest = max(theirs, key=lambda f: (f["box"][2] - f["box"][0]) * (f["box"][3] - f["box"][1]),
                           default=None)
        for rule in pipeline:
            (chosen,) = select_faces(faces, rule, rgb.shape)
            chip = align_face(rgb, chosen.landmarks, "dlib_150")[0]
            mine = unit(encoder.compute_face_descriptor(chip))
            if dlib_largest is not None:
                pipeline[rule].append(float(mine @ unit(dlib_largest["descriptor"])))
            if rule != "subject":
                continue
            if chosen.ambiguous:
                ambiguous.append(str(path))
            quality = measure_quality(chosen.landmarks, chip, chosen.score)
            qualities.append((str(path), quality))
            side = min(rgb.shape[:2])
            layouts.append((chosen.landmarks - np.array([rgb.shape[1] / 2, rgb.shape[0] / 2])) / side)
            same = [f for f in theirs if box_iou(f["box"], chosen.box) > 0.3]
            if same:
                crop_by_yaw.append((abs(quality.yaw), float(mine @ unit(same[0]["descriptor"]))))
    return {"photos": len(paths), "no_mtcnn_face": no_face,
            "no_dlib_face": sum(1 for t in dlibs if not t),
            "pipeline_cosine": {rule: cosine_summary(values) for rule, values in pipeline.items()},
            "crop_cosine_by_yaw": _by_yaw(crop_by_yaw), "ambiguous": {"count": len(ambiguous), "photos": ambiguous},
            "quality": _quality_table(qualities), "centred_layout": np.mean(layouts, axis=0).round(4).tolist()}


def _by_yaw(pairs: list[tuple[float, float]]) -> dict:
    yaw, cosine = (np.array([p[i] for p in pairs]) for i in (0, 1))
    table = {"all": cosine_summary(cosine)}
    for low, high in zip(YAW_BINS[:-1], YAW_BINS[1:], strict=True):
        table[f"|yaw| {low}-{high}"] = cosine_summary(cosine[(yaw >= low) & (yaw < high)])
    return table


def _quality_table(named: list[tuple[str, object]]) -> dict:
    gate = QualityGate()
    paths, qualities = [p for p, _ in named], [q for _, q in named]
    measures = {name: np.array([getattr(q, name) for q in qualities])
                for name in ("interocular", "sharpness", "yaw", "detector_score")}
    measures["yaw"] = np.abs(measures["yaw"])
    worst = {name: [(paths[i], round(float(values[i]), 3))
                    for i in (np.argsort(-values) if name == "yaw" else np.argsort(values))[:8]]
             for name, values in measures.items()}
    table = {name: {f"p{p}": float(np.percentile(values, p)) for p in (0.5, 1, 2, 5, 50, 95, 99)}
             for name, values in measures.items()}
    table["rejected_by"] = {"min_interocular": int((measures["interocular"] < gate.min_interocular).sum()),
                            "min_sharpness": int((measures["sharpness"] < gate.min_sharpness).sum()),
                            "max_yaw": int((measures["yaw"] > gate.max_yaw).sum()),
                            "min_detector_score": int((measures["detector_score"] < gate.min_detector_score).sum()),
                            "any": int(sum(bool(gate.problems(q)) for q in qualities)), "of": len(qualities)}
    table["worst"] = worst
    return table


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "celeba_wild")
    parser.add_argument("--cache", type=Path, required=True, help="where the detections are kept between runs")
    args = parser.parse_args(argv)
    args.cache.mkdir(parents=True, exist_ok=True)
    result = study([item.path for item in list_identity_folder(args.data)], args.cache)
    (args.cache / "study.json").write_text(json.dumps(result, indent=2))
    print(json.dumps({key: value for key, value in result.items() if key != "ambiguous"}, indent=2))
    print(f"ambiguous: {result['ambiguous']['count']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
