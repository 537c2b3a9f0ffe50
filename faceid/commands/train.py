"""`faceid train`: train a backbone from a configuration."""

import argparse
import os

from faceid.commands.options import add_config_options
from faceid.commands.output import report

SUMMARY = "train a backbone with a face loss"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_options(parser, "YAML configuration (see configs/)")
    parser.add_argument("--resume", nargs="?", const="auto", default=None,
                        help="continue a run: a checkpoint path, or nothing for RUN_DIR/checkpoints/last.pt")


def run(args: argparse.Namespace) -> int:
    from faceid.config import load_config
    from faceid.training.trainer import Trainer

    summary = Trainer(load_config(args.config, args.overrides), resume=args.resume).train()
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, one process reports
        report(args, {k: v for k, v in summary.items() if k != "last_validation"})
    return 0
