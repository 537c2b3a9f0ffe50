"""`faceid verify`: 1:1 verification of an image against an enrolled identity. Exit status 0: the same person,
1: not the same person, 2: an error."""

import argparse
from pathlib import Path

from faceid.commands.options import add_photo_gallery_options, add_threshold_option, open_gallery_from
from faceid.commands.output import probe_note, report

SUMMARY = "1:1 verification of an image against an enrolled identity (exit 0 same, 1 different, 2 error)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_photo_gallery_options(parser)
    parser.add_argument("image", type=Path, help="the probe image")
    parser.add_argument("--identity", required=True, help="the enrolled identity the probe claims to be")
    add_threshold_option(parser)


def run(args: argparse.Namespace) -> int:
    with open_gallery_from(args) as gallery:
        decision = gallery.verify(args.image, args.identity, args.threshold).to_dict()
    report(args, decision, _line)
    return 0 if decision["accepted"] else 1


def _line(decision: dict) -> str:
    from faceid.gallery.threshold_policy import describe_source

    verdict = "same person" if decision["accepted"] else "not the same person"
    return (f"{decision['identity']}: {verdict}  (score {decision['score']:.3f}, threshold "
            f"{decision['threshold']:.3f}, {describe_source(decision['threshold_source'])})"
            + probe_note(decision["probe"]))
