"""`faceid verify`: 1:1 verification against an enrolled identity."""

import argparse
from dataclasses import asdict
from pathlib import Path

from faceid.commands.options import add_gallery_options, add_threshold_option, open_gallery_from, print_json

SUMMARY = "1:1 verification of an image against an enrolled identity"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_gallery_options(parser)
    parser.add_argument("image", type=Path)
    parser.add_argument("--identity", required=True)
    add_threshold_option(parser)


def run(args: argparse.Namespace) -> int:
    with open_gallery_from(args) as gallery:
        decision = gallery.verify(args.image, args.identity, args.threshold)
    print_json(asdict(decision))
    return 0
