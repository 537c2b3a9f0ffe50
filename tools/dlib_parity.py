"""faceid's path against dlib's own pipeline on the same pairs of a folder of photos (celeba_wild by default; ORL,
Yale, Essex with --data).

faceid's path is `faceid evaluate --model dlib_resnet_v1 --detect` with its defaults (MTCNN detection, the subject
rule, the photo's centre where no face is found, faceid's `dlib_150` alignment, the converted network in PyTorch),
run through the CLI itself: it scores every pair.

dlib's pipeline is what `face_recognition.face_encodings(face_recognition.load_image_file(path))` does
(face_recognition's api.py; the package itself needs pkg_resources, so dlib is called directly):
PIL image converted to RGB (ORL's grayscale replicated) -> dlib.get_frontal_face_detector() with one upsampling
-> shape_predictor_5_face_landmarks (face_recognition's default "small" landmark model) ->
face_recognition_model_v1.compute_face_descriptor(image, shape, num_jitters=1). face_recognition compares
descriptors by Euclidean distance (a match at <= 0.6); both that and the cosine of the descriptors are scored.

Both use the protocol `faceid evaluate` builds (build_pair_protocol over list_identity_folder, same folds,
pairs per fold and seed: 10 folds x (300 genuine + 300 impostor) by default) and the same 10-fold accuracy. Where
HOG finds no face, dlib's pipeline is given faceid's fallback (the shape predictor on the box of the face taken to
be at the photo's centre), so both score every pair; both are also given on the pairs where both found the faces.
Per photo, the cosine of faceid's embedding to dlib's descriptor of the same photo shows where the two embed
different faces.

Run from the repo root (the photos from --data, else $FACEID_DATA/celeba_wild, else ../shared/data/celeba_wild):
    PYTHONPATH=$PWD python tools/dlib_parity.py [--data FOLDER] [--out dlib-parity]
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from evaluation.embeddings import CENTRED
from faceid.cli import main as faceid_main
from faceid.data.folder import list_identity_folder
from faceid.data.locations import real_data
from faceid.data.protocols import PairProtocol, build_pair_protocol
from faceid.evaluation.verification import kfold_accuracy
from faceid.preprocessing import centred_face
from faceid.zoo.dlib_format import dlib_model_file

ROOT = Path(__file__).resolve().parents[1]
FACE_RECOGNITION_TOLERANCE = 0.6  # face_recognition.compare_faces' default distance


def faceid_path(args: argparse.Namespace) -> tuple[dict, dict[str, np.ndarray], set[str]]:
    """Run `faceid evaluate --model dlib_resnet_v1 --detect` itself; its report.json, the embeddings it computed
    (from its embedding cache, keyed by resolved image path; an image it could not use is absent) and the photos
    it scored from the centre (no face found)."""
    out, cache = args.out / "faceid-evaluate", args.out / "embedding-cache"
    for stale in cache.glob("*.npz"):  # this run's embeddings only
        stale.unlink()
    code = faceid_main(["evaluate", "--model", "dlib_resnet_v1", "--detect", "--data", str(args.data),
                        "--out", str(out), "--folds", str(args.folds), "--pairs-per-fold", str(args.pairs_per_fold),
                        "--seed", str(args.seed), "--device", "cpu", "--cache-dir", str(cache)])
    if code != 0:
        raise SystemExit(f"faceid evaluate failed with exit status {code}")
    (cache_file,) = cache.glob("*-detect-*.npz")
    with np.load(cache_file) as data:
        embeddings = dict(zip(data["paths"].tolist(), data["embeddings"], strict=True))
        centred = {path for path, remark in zip(data["paths"].tolist(), data["remarks"].tolist(), strict=True)
                   if remark == CENTRED}
    return json.loads((out / "report.json").read_text()), embeddings, centred


def dlib_descriptors(paths: list[str]) -> tuple[dict[str, np.ndarray], set[str]]:
    """face_recognition.face_encodings on each image, keyed by resolved path: the largest face's descriptor (the
    usual `face_encodings(image)` call gives one per face; the largest is the fairest pick for centred photos).
    Where the HOG detector finds no face, dlib's pipeline gets faceid's own fallback: the shape predictor runs on
    the box of the face taken to be at the photo's centre (faceid.preprocessing.centred_face), so that it too
    scores every pair. Returns the descriptors and the photos that used the fallback."""
    import dlib

    models = dlib_model_file().parent
    detector = dlib.get_frontal_face_detector()
    landmarks = dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat"))
    encoder = dlib.face_recognition_model_v1(str(models / "dlib_face_recognition_resnet_model_v1.dat"))
    descriptors, centred = {}, set()
    for path in tqdm(paths, desc="dlib", unit="img"):
        key = str(Path(path).resolve())
        image = np.array(Image.open(path).convert("RGB"))  # face_recognition.load_image_file(path, mode="RGB")
        faces = detector(image, 1)
        if faces:
            face = max(faces, key=lambda rect: rect.area())
        else:
            centred.add(key)
            face = dlib.rectangle(*(int(round(v)) for v in centred_face(image.shape).box))
        descriptors[key] = np.array(encoder.compute_face_descriptor(image, landmarks(image, face), 1))
    return descriptors, centred


def photo_agreement(faceid_vectors: dict[str, np.ndarray], dlib_vectors: dict[str, np.ndarray]) -> dict:
    """The cosine of faceid's embedding to dlib's descriptor of the same photo: mean, 1st percentile, how many are
    below 0.9 (the two embedded different faces, or one of them a poor crop) and those photos."""
    shared = sorted(set(faceid_vectors) & set(dlib_vectors))
    cosines = np.array([float(faceid_vectors[p] @ dlib_vectors[p] / np.linalg.norm(dlib_vectors[p]))
                        for p in shared])
    return {"photos": len(shared), "mean": float(cosines.mean()), "p1": float(np.percentile(cosines, 1)),
            "below_0.9": int((cosines < 0.9).sum()), "below_0.9_photos": [p for p, c in zip(shared, cosines,
                                                                                               strict=True) if c < 0.9]}


def detected_pairs(protocol: PairProtocol, centred: set[str]) -> np.ndarray:
    """The pairs whose two photos both had a face found (neither scored from the centre)."""
    found = np.array([str(Path(p).resolve()) not in centred for p in protocol.paths])
    return found[protocol.first] & found[protocol.second]


def score(protocol: PairProtocol, vectors: dict[str, np.ndarray], keep: np.ndarray, seed: int) -> dict:
    """10-fold accuracy (mean, std in %) of the cosine and of the negative Euclidean distance on the kept pairs,
    and the accuracy of face_recognition's fixed rule (same person when the distance is <= 0.6), which holds
    for dlib's raw descriptors only (faceid's embeddings are L2-normalised: None for them)."""
    resolved = [str(Path(p).resolve()) for p in protocol.paths]
    first = np.stack([vectors[resolved[a]] for a in protocol.first[keep]]).astype(np.float64)
    second = np.stack([vectors[resolved[b]] for b in protocol.second[keep]]).astype(np.float64)
    is_same = protocol.is_same[keep]
    folds = protocol.fold[keep] if protocol.fold is not None else None
    unit = [v / np.linalg.norm(v, axis=1, keepdims=True) for v in (first, second)]
    distance = np.linalg.norm(first - second, axis=1)
    result = {"pairs": int(keep.sum())}
    for name, scores in (("cosine", (unit[0] * unit[1]).sum(1)), ("-euclidean", -distance)):
        mean, std, _ = kfold_accuracy(scores, is_same, folds=folds, seed=seed)
        result[name] = (100 * mean, 100 * std)
    raw = not np.allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-4)
    result["distance<=0.6"] = 100 * float(((distance <= FACE_RECOGNITION_TOLERANCE) == is_same).mean()) if raw else None
    return result


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=None,
                        help="identity folders of photos (default $FACEID_DATA/celeba_wild)")
    parser.add_argument("--out", type=Path, default=Path("dlib-parity"))
    parser.add_argument("--folds", type=int, default=10)
    parser.add_argument("--pairs-per-fold", type=int, default=600, help="half genuine, half impostor")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    args.data = real_data(args.data, "celeba_wild", default=ROOT.parent / "shared" / "data")
    return args


def _line(name: str, figures: dict) -> str:
    return (f"{name:<32} {figures['pairs']:>5} pairs  cosine {figures['cosine'][0]:6.2f} ± {figures['cosine'][1]:4.2f}"
            f"  -euclidean {figures['-euclidean'][0]:6.2f} ± {figures['-euclidean'][1]:4.2f}"
            + (f"  distance<=0.6 {figures['distance<=0.6']:6.2f}" if figures["distance<=0.6"] is not None else ""))


def main(argv=None) -> int:
    args = parse_args(argv)
    if not args.data.is_dir():
        raise SystemExit(f"{args.data} is not a directory of identity folders")
    report, faceid_vectors, faceid_centred = faceid_path(args)
    protocol = build_pair_protocol(list_identity_folder(args.data), args.folds, args.pairs_per_fold, args.seed)
    dlib_vectors, dlib_centred = dlib_descriptors(list(protocol.paths))
    every = np.ones(len(protocol.is_same), dtype=bool)
    both = detected_pairs(protocol, faceid_centred | dlib_centred)
    images = len(protocol.paths)
    rows = {"faceid (evaluate --detect)": score(protocol, faceid_vectors, every, args.seed),
            "dlib (face_encodings)": score(protocol, dlib_vectors, every, args.seed),
            "faceid, both found the faces": score(protocol, faceid_vectors, both, args.seed),
            "dlib, both found the faces": score(protocol, dlib_vectors, both, args.seed)}
    reported = report["verification"]
    print(f"\n{args.data}: {images} images, {len(protocol.is_same)} pairs in {args.folds} folds")
    print(f"no face found, scored from the centre: faceid (MTCNN) {len(faceid_centred)} photos, dlib (HOG, one "
          f"upsampling) {len(dlib_centred)}; unreadable: {report['images_failed']}")
    print(f"faceid evaluate report: 10-fold accuracy {100 * reported['accuracy_10fold_mean']:.2f} ± "
          f"{100 * reported['accuracy_10fold_std']:.2f}")
    for name, figures in rows.items():
        print(_line(name, figures))
    for subset, (ours, theirs) in {"every pair": ("faceid (evaluate --detect)", "dlib (face_encodings)"),
                                   "both found the faces": ("faceid, both found the faces",
                                                            "dlib, both found the faces")}.items():
        gap = rows[ours]["cosine"][0] - rows[theirs]["cosine"][0]
        gap_euclidean = rows[ours]["cosine"][0] - rows[theirs]["-euclidean"][0]
        print(f"difference faceid - dlib ({subset}): {gap:+.2f} points vs dlib's cosine, "
              f"{gap_euclidean:+.2f} vs dlib's -euclidean")
    agreement = photo_agreement({p: v for p, v in faceid_vectors.items() if p not in faceid_centred},
                                {p: v for p, v in dlib_vectors.items() if p not in dlib_centred})
    print(f"per photo, faceid's embedding vs dlib's descriptor ({agreement['photos']} photos where both found a "
          f"face): mean cosine {agreement['mean']:.4f}, 1st percentile {agreement['p1']:.4f}, "
          f"below 0.9: {agreement['below_0.9']}")
    summary = {"images": images, "centred_faceid": len(faceid_centred), "centred_dlib": len(dlib_centred),
               "photo_agreement": agreement, "faceid_report_photos": report.get("photos"), **rows}
    (args.out / "parity.json").write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
