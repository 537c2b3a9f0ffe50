"""Fit the dlib_150 landmark mapping (faceid.dlib_landmark_fit) on photos where MTCNN and dlib both find a face.

For every face that MTCNN and dlib's HOG detector both find (boxes overlapping, IoU > 0.3), both point sets are
expressed in the frame of faceid's mean dlib_150 template (the similarity of MTCNN's five points onto
DLIB_TEMPLATE_150): MTCNN's points are the input, dlib's shape_predictor_5 points (found from the HOG box, as
dlib's own pipeline does) the output of a least-squares linear map (faceid.landmark_mapping). Faces whose two
point sets disagree by more than --outlier px (the crop error below, with the mean template) are not the same face
or not the same points and are left out.

The error of a crop is how far dlib's own five points land, in faceid's chip, from where dlib's chip puts them
(`DLIB_CHIP_POINTS`): with the mean template alone and with the mapping. It is printed held out (two folds split
by identity, each fitted on the other), then the mapping fitted on every face is written to
faceid/dlib_landmark_fit.py.

Detections come from tools/celeba_wild_study.py's cache (computed there on first use). Run from the repo root:
    PYTHONPATH=$PWD python tools/fit_dlib_landmark_mapping.py --cache /tmp/study [--data ../shared/data/celeba_wild]
"""

import argparse
import sys
import textwrap
from pathlib import Path

import numpy as np
from celeba_wild_study import dlib_faces, mtcnn_faces

from faceid.alignment import DLIB_TEMPLATE_150, AlignmentTemplate, alignment_matrix, apply_affine, estimate_similarity
from faceid.data.folder import list_identity_folder
from faceid.face_selection import box_iou
from faceid.landmark_mapping import LandmarkMapping, fit_landmark_mapping

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "faceid" / "dlib_landmark_fit.py"

# Where dlib.get_face_chip(image, shape_5, size=150, padding=0.25) puts shape_predictor_5's points (right eye outer
# and inner corner, left eye outer and inner corner, base of the nose, in that order): dlib's
# get_face_chip_details maps them onto these points of its mean face, in units of the unpadded chip
# (dlib/image_transforms/interpolation.h), and the padded chip is (0.25 + p) / 1.5 of its 150 px side.
DLIB_MEAN_FACE_5 = np.array([[0.8595674595992, 0.2134981538014], [0.6460604764104, 0.2289674387677],
                             [0.1205750620789, 0.2137274526848], [0.3340850613712, 0.2290642403242],
                             [0.4901123135679, 0.6277975316475]])
DLIB_CHIP_POINTS = (0.25 + DLIB_MEAN_FACE_5) / 1.5 * 150


def matched_faces(paths: list[Path], cache: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(MTCNN points, dlib points, photo index) of every face both detectors found, in image pixels."""
    mtcnn, dlibs = mtcnn_faces(paths, cache), dlib_faces(paths, cache)
    ours, theirs, photo = [], [], []
    for index, (faces, found) in enumerate(zip(mtcnn, dlibs, strict=True)):
        for face in faces:
            overlaps = [(box_iou(other["box"], face.box), other) for other in found]
            best = max(overlaps, key=lambda item: item[0], default=(0.0, None))
            if best[0] > 0.3:
                ours.append(face.landmarks)
                theirs.append(best[1]["points"])
                photo.append(index)
    return np.array(ours, np.float64), np.array(theirs, np.float64), np.array(photo)


def in_template_frame(ours: np.ndarray, theirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both point sets in the frame of the mean template (MTCNN's points onto DLIB_TEMPLATE_150)."""
    matrices = [estimate_similarity(points, DLIB_TEMPLATE_150) for points in ours]
    return (np.stack([apply_affine(m, p) for m, p in zip(matrices, ours, strict=True)]),
            np.stack([apply_affine(m, p) for m, p in zip(matrices, theirs, strict=True)]))


def crop_error(frame_ours: np.ndarray, frame_theirs: np.ndarray, mapping: LandmarkMapping | None) -> np.ndarray:
    """Per face, the mean distance (chip px) of dlib's points in faceid's chip (faceid.alignment.alignment_matrix
    with the mean template and `mapping`) from where dlib's chip puts them."""
    template = AlignmentTemplate("fitted", DLIB_TEMPLATE_150, (150, 150), mapping)
    return np.array([np.linalg.norm(apply_affine(alignment_matrix(ours, template), theirs) - DLIB_CHIP_POINTS,
                                    axis=1).mean() for ours, theirs in zip(frame_ours, frame_theirs, strict=True)])


def _numbers(values) -> str:
    return ", ".join(f"{value:.8g}" for value in values)


def module_text(mapping: LandmarkMapping, faces: int, photos: int, data: list[Path], held_out: str) -> str:
    rows = "\n".join(f"        [{_numbers(row[:5])},\n         {_numbers(row[5:])}]," for row in mapping.weights)
    target = ", ".join(f"[{x:.8g}, {y:.8g}]" for x, y in mapping.target[:3])
    target += ",\n                     " + ", ".join(f"[{x:.8g}, {y:.8g}]" for x, y in mapping.target[3:])
    about = textwrap.fill(
        f"Written by tools/fit_dlib_landmark_mapping.py (do not edit by hand): least squares over {faces} faces of "
        f"{photos} photos ({', '.join(folder.name for folder in data)}) that MTCNN and dlib's HOG detector both found. "
        f"Held out (two folds split by identity), the mean distance of dlib's own points in faceid's chip from where "
        f"dlib's chip puts them: {held_out}. The target is where dlib.get_face_chip(..., size=150, padding=0.25) puts "
        f"those points.", width=116)
    return f'''"""The dlib_150 landmark mapping: MTCNN's five points to dlib's shape_predictor_5 points, in the chip.

{about}
"""

import numpy as np

from faceid.landmark_mapping import LandmarkMapping

DLIB_150_MAPPING = LandmarkMapping(
    weights=np.array([
{rows}
    ]),
    bias=np.array([{_numbers(mapping.bias[:5])},
                   {_numbers(mapping.bias[5:])}]),
    target=np.array([{target}]),
)
'''


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, action="append",
                        help="identity folders of photos (repeatable; default ../shared/data/celeba_wild)")
    parser.add_argument("--cache", type=Path, required=True, help="where detections are kept (one folder per --data)")
    parser.add_argument("--outlier", type=float, default=15.0,
                        help="a face whose crop error with the mean template exceeds this (chip px) is left out")
    args = parser.parse_args(argv)
    data = args.data or [ROOT.parent / "shared" / "data" / "celeba_wild"]
    parts = []
    for folder in data:
        items = list_identity_folder(folder)
        (args.cache / folder.name).mkdir(parents=True, exist_ok=True)
        ours, theirs, photo = matched_faces([item.path for item in items], args.cache / folder.name)
        parts.append((*in_template_frame(ours, theirs), [f"{folder.name}/{items[i].relative}" for i in photo]))
    frame_ours, frame_theirs = (np.concatenate([part[i] for part in parts]) for i in (0, 1))
    photo = np.array([name for part in parts for name in part[2]])
    keep = crop_error(frame_ours, frame_theirs, None) < args.outlier
    print(f"{len(keep)} faces found by both detectors; {int((~keep).sum())} left out (crop error > {args.outlier} px)")
    frame_ours, frame_theirs, photo = frame_ours[keep], frame_theirs[keep], photo[keep]
    identity = np.array([name.rsplit("/", 1)[0] for name in photo])
    names = sorted(set(identity))
    fold = np.array([names.index(name) % 2 for name in identity])
    plain, mapped = [], []
    for held in (0, 1):
        mapping = fit_landmark_mapping(frame_ours[fold != held], frame_theirs[fold != held], DLIB_CHIP_POINTS)
        plain.append(crop_error(frame_ours[fold == held], frame_theirs[fold == held], None))
        mapped.append(crop_error(frame_ours[fold == held], frame_theirs[fold == held], mapping))
    plain, mapped = np.concatenate(plain), np.concatenate(mapped)
    held_out = (f"{plain.mean():.2f} px with the mean template alone, {mapped.mean():.2f} px with the mapping "
                f"(95th percentile {np.percentile(plain, 95):.2f} -> {np.percentile(mapped, 95):.2f})")
    print("held out:", held_out)
    mapping = fit_landmark_mapping(frame_ours, frame_theirs, DLIB_CHIP_POINTS)
    OUTPUT.write_text(module_text(mapping, len(frame_ours), len(set(photo)), data, held_out))
    print(f"wrote {OUTPUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
