"""`faceid synth`: generate a synthetic dataset."""

import argparse
from pathlib import Path

from faceid.commands.options import positive_count
from faceid.commands.output import report

SUMMARY = "generate a synthetic identity-labelled face dataset (raw + aligned)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--identities", type=positive_count, default=40, help="number of identities (default 40)")
    parser.add_argument("--images-per-identity", type=positive_count, default=10,
                        help="images per identity (default 10)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generator: the same seed, the same faces")
    parser.add_argument("--canvas-size", type=positive_count, default=224, help="side of the raw images")
    parser.add_argument("--aligned-size", type=positive_count, default=112, help="side of the aligned crops")
    parser.add_argument("--out", required=True, type=Path, help="output directory (raw/ and aligned/ go inside)")


def run(args: argparse.Namespace) -> int:
    from faceid.data.synthetic import generate_dataset

    report(args, generate_dataset(args.out, args.identities, args.images_per_identity, args.seed, args.canvas_size,
                                args.aligned_size))
    return 0
