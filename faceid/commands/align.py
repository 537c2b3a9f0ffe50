"""`faceid align`: detect and align the faces of an image tree."""

import argparse
from pathlib import Path

from faceid.commands.options import add_device_option, print_json

SUMMARY = "detect and align faces of an identity-folder tree"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", type=Path, help="identity-folder tree, flat folder, or a file listing image paths")
    parser.add_argument("destination", type=Path, help="where the aligned tree and manifest.jsonl go")
    parser.add_argument("--workers", type=int, default=1, help="parallel worker processes (default 1)")
    parser.add_argument("--overwrite", action="store_true", help="redo images already in the manifest")
    parser.add_argument("--select", choices=["all", "largest", "best", "center"], default="largest",
                        help="which face to keep when an image holds several (all: one crop each)")
    parser.add_argument("--size", type=int, default=112, help="side of the aligned crops")
    parser.add_argument("--min-face-size", type=int, default=20)
    parser.add_argument("--min-score", type=float, default=0.9)
    parser.add_argument("--max-side", type=int, default=1280, help="larger images are downscaled for detection")
    add_device_option(parser, default="cpu")


def run(args: argparse.Namespace) -> int:
    from faceid.align_tree import align_tree

    summary = align_tree(args.source, args.destination, workers=args.workers, overwrite=args.overwrite,
                         select=args.select, size=args.size, device=args.device, min_face_size=args.min_face_size,
                         min_score=args.min_score, max_side=args.max_side)
    print_json(summary)
    nothing_done = summary["processed"] > 0 and summary["ok"] == 0
    return 1 if nothing_done else 0
