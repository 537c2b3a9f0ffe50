"""`faceid compare A B`: are two photos the same person? No gallery needed. Exit status 0: the same person,
1: different people, 2: an error (a missing file, no face...)."""

import argparse
from pathlib import Path

from faceid.commands.options import MODEL_HELP, add_device_option, threshold_value
from faceid.commands.output import report
from faceid.zoo.catalog import DEFAULT_MODEL

SUMMARY = "1:1: are the subjects (main faces) of two photos the same person (exit 0 same, 1 different, 2 error)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("first", type=Path, help="a photo")
    parser.add_argument("second", type=Path, help="another photo")
    parser.add_argument("--model", default=DEFAULT_MODEL, help=MODEL_HELP)
    parser.add_argument("--threshold", type=threshold_value, default=None,
                        help="a cosine in [-1, 1] (default: the model's own, see `faceid models info MODEL`)")
    add_device_option(parser)


def run(args: argparse.Namespace) -> int:
    from faceid.api import compare

    result = compare(args.first, args.second, args.model, args.threshold, args.device,
                     names=(str(args.first), str(args.second)))
    report(args, result, _text)
    return 0 if result["same"] else 1


def _text(result: dict) -> str:
    from faceid.gallery.threshold_policy import describe_source

    verdict = "same person" if result["same"] else "different people"
    boxes = "; ".join(f"{face['image']} face [{','.join(f'{v:.0f}' for v in face['box'])}]"
                      for face in result["faces"])
    return (f"{verdict}: score {result['score']:.3f}, threshold {result['threshold']:.3f} "
            f"({describe_source(result['threshold_source'])})\n{boxes}")
