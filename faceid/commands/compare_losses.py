"""`faceid compare-losses`: train one run per loss (optionally fine-tuning a pretrained model) and compare them."""

import argparse
from pathlib import Path

from faceid.commands.options import add_config_options

SUMMARY = "train and compare several losses on one dataset"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_options(parser, "the base training configuration")
    parser.add_argument("--loss", dest="losses", action="append", required=True, metavar="NAME[:{params}]",
                        help="a loss to train, optionally with YAML hyperparameters, e.g. 'cosface:{s: 30, m: 0.2}'")
    parser.add_argument("--eval-data", type=Path, default=None,
                        help="identity-folder tree of evaluation identities "
                        "(default: the held-out identities of data.root)")
    parser.add_argument("--init", default=None, metavar="NAME_OR_CKPT",
                        help="fine-tune this model-zoo model or backbone checkpoint with every loss, and add a row "
                        "for it as it is (default: model.init of the configuration)")
    parser.add_argument("--out", type=Path, required=True, help="one run per loss, plus comparison.md/json")


def run(args: argparse.Namespace) -> int:
    from faceid.config import load_config
    from faceid.training.compare import compare_losses

    rows = compare_losses(load_config(args.config, args.overrides), args.losses, args.eval_data, args.out,
                          args.init)
    print((args.out / "comparison.md").read_text())
    return 0 if rows else 1
