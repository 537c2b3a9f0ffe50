"""`faceid identify`: 1:N open-set identification of probe images against a gallery."""

import argparse
from pathlib import Path

from faceid.commands.options import add_gallery_options, add_threshold_option, open_gallery_from, print_json

SUMMARY = "1:N open-set identification against a gallery"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_gallery_options(parser)
    parser.add_argument("images", nargs="+", type=Path)
    parser.add_argument("-k", type=int, default=5, help="candidates per probe (default 5)")
    add_threshold_option(parser)
    parser.add_argument("--json", action="store_true", help="JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    from gallery.gallery import GalleryError

    gallery = open_gallery_from(args)
    rows = []
    for image in args.images:
        try:
            result = gallery.identify(image, args.k, args.threshold)
            rows.append({"image": str(image), "identity": result.identity, "candidates": result.candidates,
                         "threshold": result.threshold, "threshold_source": result.threshold_source})
        except GalleryError as error:
            rows.append({"image": str(image), "error": str(error)})
    if args.json:
        print_json(rows)
    else:
        for row in rows:
            print(_table_line(row))
    return 0 if any("error" not in row for row in rows) else 1


def _table_line(row: dict) -> str:
    if "error" in row:
        return f"{row['image']}: error: {row['error']}"
    best = ", ".join(f"{name} {score:.3f}" for name, score in row["candidates"])
    threshold = "none" if row["threshold"] is None else f"{row['threshold']:.3f}"
    return f"{row['image']}: {row['identity']}  (threshold {threshold}; top: {best})"
