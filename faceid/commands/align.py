"""`faceid align`: detect and align the faces of an image tree."""

import argparse
from pathlib import Path

from faceid.commands.options import add_device_option, add_select_option, add_workers_option, positive_count
from faceid.commands.output import report

SUMMARY = "detect and align faces of an identity-folder tree"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", type=Path, help="identity-folder tree, flat folder, or a file listing image paths")
    parser.add_argument("destination", type=Path, help="where the aligned tree and manifest.jsonl go")
    add_workers_option(parser, 1, help="parallel worker processes (default 1)")
    parser.add_argument("--overwrite", action="store_true", help="redo images already in the manifest")
    add_select_option(parser, every=True)
    parser.add_argument("--template", default="arcface_112",
                        help="the crop to make: a named alignment template (arcface_112, dlib_150, facenet_160), "
                             "or a YAML file with points and size; use the template of the model you will train "
                             "or fine-tune (see docs/alignment.md)")
    parser.add_argument("--size", type=positive_count, default=None,
                        help="side of the aligned crops (default: the template's)")
    parser.add_argument("--min-face-size", type=positive_count, default=20,
                        help="smallest face side, in pixels, the detector looks for")
    parser.add_argument("--min-score", type=float, default=0.9, help="lowest detector confidence kept")
    parser.add_argument("--max-side", type=positive_count, default=1280,
                        help="larger images are downscaled for detection")
    add_device_option(parser, default="cpu")


def _template(args: argparse.Namespace):
    import yaml

    from faceid.alignment import alignment_template

    spec = args.template
    if spec.lower().endswith((".yaml", ".yml")):
        spec = yaml.safe_load(Path(spec).read_text())
    template = alignment_template(spec)
    return template.scaled(args.size) if args.size else template


def run(args: argparse.Namespace) -> int:
    from faceid.align_tree import align_tree

    summary = align_tree(args.source, args.destination, workers=args.workers, overwrite=args.overwrite,
                         select=args.select, size=_template(args), device=args.device, min_face_size=args.min_face_size,
                         min_score=args.min_score, max_side=args.max_side)
    report(args, summary)
    nothing_done = summary["processed"] > 0 and summary["ok"] == 0
    return 1 if nothing_done else 0
