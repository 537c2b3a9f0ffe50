"""`faceid identify`: 1:N open-set identification of probe images against a gallery; with
`--all-faces`, every face of each photo (`--annotate` draws them)."""

import argparse
from pathlib import Path

from faceid.commands.options import (
    add_gallery_options,
    add_threshold_option,
    open_gallery_from,
    positive_count,
    print_json,
)

SUMMARY = "1:N open-set identification against a gallery"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_gallery_options(parser)
    parser.add_argument("images", nargs="+", type=Path)
    parser.add_argument("-k", type=positive_count, default=5, help="candidates per probe (default 5)")
    add_threshold_option(parser)
    parser.add_argument("--json", action="store_true", help="JSON instead of a table")
    parser.add_argument("--all-faces", action="store_true",
                        help="identify every detected face of each photo (one line per face), not only the largest")
    parser.add_argument("--annotate", type=Path, metavar="OUT.jpg",
                        help="with one photo: draw each face's box, name and score into OUT.jpg (implies --all-faces)")


def run(args: argparse.Namespace) -> int:
    if args.annotate and len(args.images) != 1:
        raise ValueError(f"--annotate draws one photo; {len(args.images)} were given")
    with open_gallery_from(args) as gallery:
        rows = [_identified(gallery, image, args) for image in args.images]
    if args.json:
        print_json(rows)
    else:
        for row in rows:
            print(_table_line(row) if "faces" not in row else _face_lines(row))
    return 0 if any("error" not in row for row in rows) else 1


def _identified(gallery, image: Path, args: argparse.Namespace) -> dict:
    """One probe's row: its identity and candidates (or every face's), or the error that names it."""
    from faceid.gallery.gallery import GalleryError

    try:
        if args.all_faces or args.annotate:
            return {"image": str(image), "faces": [m.to_dict() for m in _all_faces(gallery, image, args)]}
        result = gallery.identify(image, args.k, args.threshold)
        return {"image": str(image), "identity": result.identity, "candidates": result.candidates,
                "threshold": result.threshold, "threshold_source": result.threshold_source}
    except GalleryError as error:
        return {"image": str(image), "error": str(error)}


def _all_faces(gallery, image: Path, args: argparse.Namespace) -> list:
    from faceid.gallery.photos import identify_photo
    from faceid.gallery.samples.resolver import read_image

    rgb = read_image(image, str(image))[0]
    matches = identify_photo(gallery, rgb, args.k, args.threshold, name=str(image))
    if args.annotate:
        from faceid.gallery.annotate import write_annotated

        write_annotated(args.annotate, rgb, matches)
    return matches


def _threshold_text(threshold) -> str:
    return "none" if threshold is None else f"{threshold:.3f}"


def _table_line(row: dict) -> str:
    if "error" in row:
        return f"{row['image']}: error: {row['error']}"
    best = ", ".join(f"{name} {score:.3f}" for name, score in row["candidates"])
    return f"{row['image']}: {row['identity']}  (threshold {_threshold_text(row['threshold'])}; top: {best})"


def _face_lines(row: dict) -> str:
    if not row["faces"]:
        return f"{row['image']}: no face found"
    lines = []
    for number, face in enumerate(row["faces"], 1):
        box = ",".join(f"{v:.0f}" for v in face["box"])
        best = ", ".join(f"{c['identity']} {c['score']:.3f}" for c in face["candidates"])
        lines.append(f"{row['image']} face {number} [{box}] (detector {face['score']:.3f}): {face['identity']}  "
                     f"(threshold {_threshold_text(face['threshold'])}; top: {best})")
    return "\n".join(lines)
