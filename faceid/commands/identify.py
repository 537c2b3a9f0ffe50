"""`faceid identify`: 1:N open-set identification of probe images (files or folders) against a gallery; with
`--all-faces`, every face of each photo (`--annotate` draws them)."""

import argparse
from pathlib import Path

from faceid.commands.options import add_photo_gallery_options, add_threshold_option, open_gallery_from, positive_count
from faceid.commands.output import probe_note, report

SUMMARY = "1:N open-set identification against a gallery"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_photo_gallery_options(parser)
    parser.add_argument("images", nargs="+", type=Path, help="probe images, or folders of them")
    parser.add_argument("-k", type=positive_count, default=5, help="candidates per probe")
    add_threshold_option(parser)
    parser.add_argument("--closed-set", action="store_true",
                        help="name the best candidate whoever it is, with no threshold (only for a gallery that "
                             "holds everyone the probes can be)")
    parser.add_argument("--all-faces", action="store_true",
                        help="identify every detected face of each photo (one line per face), not only the largest")
    parser.add_argument("--annotate", type=Path, metavar="OUT.jpg",
                        help="with one photo: draw each face's box, name and score into OUT.jpg (implies --all-faces)")


def run(args: argparse.Namespace) -> int:
    from faceid.data.folder import expand_images

    images = expand_images(args.images)
    if args.annotate and len(images) != 1:
        raise ValueError(f"--annotate draws one photo; {len(images)} were given")
    with open_gallery_from(args) as gallery:
        rows = [_identified(gallery, image, args) for image in images]
    report(args, rows, _lines)
    return 0 if any("error" not in row for row in rows) else 2


def _identified(gallery, image: Path, args: argparse.Namespace) -> dict:
    """One probe's row: its identity and candidates (or every face's), or the error that names it."""
    from faceid.gallery.gallery import GalleryError
    from faceid.gallery.threshold_policy import NoThreshold

    try:
        if args.all_faces or args.annotate:
            return {"image": str(image), "faces": [m.to_dict() for m in _all_faces(gallery, image, args)]}
        return {"image": str(image), **gallery.identify(image, args.k, args.threshold, args.closed_set).to_dict()}
    except NoThreshold:
        raise
    except GalleryError as error:
        return {"image": str(image), "error": str(error)}


def _all_faces(gallery, image: Path, args: argparse.Namespace) -> list:
    from faceid.gallery.photos import identify_photo
    from faceid.gallery.samples.resolver import read_image

    rgb = read_image(image, str(image))[0]
    matches = identify_photo(gallery, rgb, args.k, args.threshold, name=str(image), closed_set=args.closed_set)
    if args.annotate:
        from faceid.gallery.annotate import write_annotated

        write_annotated(args.annotate, rgb, matches)
    return matches


def _lines(rows: list[dict]) -> str:
    return "\n".join(_row_lines(row) for row in rows)


def _row_lines(row: dict) -> str:
    if "error" in row:
        return f"{row['image']}: error: {row['error']}"
    if "faces" not in row:
        return f"{row['image']}: {_answer(row)}"
    if not row["faces"]:
        return f"{row['image']}: no face found"
    return "\n".join(f"{row['image']} face {number} [{','.join(f'{v:.0f}' for v in face['box'])}] "
                     f"(detector {face['score']:.3f}): {_answer(face)}" for number, face in enumerate(row["faces"], 1))


def _answer(row: dict) -> str:
    from faceid.gallery.threshold_policy import describe_source

    best = ", ".join(f"{c['identity']} {c['score']:.3f}" for c in row["candidates"]) or "nobody enrolled"
    threshold = "no threshold" if row["threshold"] is None else f"threshold {row['threshold']:.3f}"
    return (f"{row['identity']}  ({threshold}, {describe_source(row['threshold_source'])}; top: {best})"
            + probe_note(row.get("probe")))
