"""`faceid demo`: the end-to-end demo on generated data, or with --data on a tree of photos (see faceid.demo)."""

import argparse
from pathlib import Path

from faceid.commands.options import add_config_options, add_select_option
from faceid.demo import DEMO_CONFIG

SUMMARY = "run the end-to-end demo on generated data (or, with --data, on photos)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("demo-output"),
                        help="where the demo writes (default demo-output/)")
    parser.add_argument("--data", type=Path, default=None,
                        help="identity folders of photos (DIR/<name>/<photo>, e.g. ORL) to run on instead of "
                             "generated faces: detected and aligned with MTCNN")
    add_select_option(parser)
    add_config_options(parser, "YAML configuration (default configs/demo-synthetic.yaml)", default=DEMO_CONFIG,
                       example="training.epochs=3")


def run(args: argparse.Namespace) -> int:
    from faceid.demo import run_demo

    run_demo(args.out, args.config, args.overrides, args.data, args.select)
    return 0
