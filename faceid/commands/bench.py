"""`faceid bench TARGET`: the benchmarks of each stage."""

import argparse
from pathlib import Path

from faceid.commands.options import add_device_option, add_workers_option, positive_count
from faceid.data.locations import ENVIRONMENT, DataNotConfigured, real_data

SUMMARY = "benchmarks (losses, detect, embed, enroll, gallery, serve, train): ratios to a baseline from the same run"

TARGETS = ["losses", "detect", "embed", "enroll", "gallery", "serve", "train"]
PHOTOS = "caltech_faces"  # the data set under FACEID_DATA that `bench detect`, `embed` and `enroll` read


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", choices=TARGETS, help="what to benchmark")
    add_device_option(parser)
    parser.add_argument("--repeats", type=positive_count, default=3, help="timed repetitions per case")
    parser.add_argument("--quick", action="store_true",
                        help="small sizes, for a smoke run (`bench gallery`: 1k and 10k instead of 10k, 100k, 1M)")
    parser.add_argument("--data", type=Path, default=None,
                        help=f"real photos for `bench detect`, `embed`, `enroll` (default ${ENVIRONMENT}/{PHOTOS}) and "
                             f"`bench train` (default ${ENVIRONMENT}/orl); for `bench gallery`, the folder holding "
                             f"orl/, essex_grimace/, essex_faces94/ and yale/ (default ${ENVIRONMENT})")
    parser.add_argument("--limit", type=positive_count, default=200, help="at most this many images for `bench detect`")
    add_workers_option(parser, None, help="`bench serve`: server processes (default 1); `bench enroll`: decode + "
                                          "detect processes (default 2)")


def run(args: argparse.Namespace) -> int:
    if args.target == "train":
        from faceid.training.benchmarks.train import run_train_benchmark

        run_train_benchmark(args.device, quick=args.quick, data=args.data)
        return 0
    if args.target == "serve":
        from faceid.gallery.benchmarks.serve import run_serve_benchmark

        run_serve_benchmark(per_client=8 if args.quick else 24, workers=args.workers or 1)
    elif args.target == "gallery":
        from faceid.gallery.benchmarks.search import run_gallery_benchmark

        run_gallery_benchmark(sizes=(1_000, 10_000) if args.quick else (10_000, 100_000, 1_000_000), data=args.data)
    elif args.target == "embed":
        from faceid.export.benchmarks.embed import run_embed_benchmark

        run_embed_benchmark(_photos(args.data, optional=True), repeats=args.repeats)
    elif args.target == "enroll":
        from faceid.gallery.benchmarks.enroll import run_enroll_benchmark

        run_enroll_benchmark(_photos(args.data), workers=args.workers or 2, repeats=args.repeats)
    elif args.target == "detect":
        from faceid.evaluation.benchmarks.detection import run_detection_benchmark

        run_detection_benchmark(_photos(args.data), limit=args.limit)
    else:
        from faceid.evaluation.benchmarks.losses import run_loss_benchmark

        run_loss_benchmark(device=args.device, repeats=args.repeats, quick=args.quick)
    return 0


def _photos(data: Path | None, optional: bool = False) -> Path | None:
    """--data, else $FACEID_DATA/caltech_faces; when neither is set, None if `optional` (`bench embed` then
    skips its end-to-end row), else DataNotConfigured, which `faceid` reports as an error."""
    try:
        return real_data(data, PHOTOS)
    except DataNotConfigured:
        if optional:
            return None
        raise
