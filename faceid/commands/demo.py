"""`faceid demo`: the end-to-end demo on generated data (see faceid.demo)."""

import argparse
from pathlib import Path

from faceid.commands.options import add_config_options
from faceid.demo import DEMO_CONFIG

SUMMARY = "run the end-to-end demo on generated data"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("demo-output"),
                        help="where the demo writes (default demo-output/)")
    add_config_options(parser, "YAML configuration (default configs/demo-synthetic.yaml)", default=DEMO_CONFIG,
                       example="training.epochs=3")


def run(args: argparse.Namespace) -> int:
    from faceid.demo import run_demo

    run_demo(args.out, args.config, args.overrides)
    return 0
