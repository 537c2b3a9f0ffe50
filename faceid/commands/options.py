"""Options and output shared by several `faceid` subcommands, each written once."""

import argparse
import json
from pathlib import Path

DEVICES = ("auto", "cpu", "cuda")


def add_device_option(parser: argparse.ArgumentParser, default: str = "auto") -> None:
    parser.add_argument("--device", default=default, choices=DEVICES)


def add_config_options(parser: argparse.ArgumentParser, config_help: str, default: Path | None = None,
                       example: str = "training.lr=0.05") -> None:
    """The --config YAML file and the repeatable --set KEY=VALUE overrides (collected in args.overrides)."""
    parser.add_argument("--config", type=Path, default=default, help=config_help)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help=f"override a configuration key, e.g. --set {example}")


def add_gallery_options(parser: argparse.ArgumentParser) -> None:
    """What every gallery-facing command takes to open a gallery (see gallery.session.open_gallery)."""
    parser.add_argument("gallery", type=Path, help="gallery directory")
    parser.add_argument("--model", default=None, help="embedding model (needed when the gallery is created)")
    parser.add_argument("--aligned", action="store_true", default=None,
                        help="images are aligned crops: skip detection (remembered by a new gallery)")
    add_device_option(parser)


def add_threshold_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threshold", type=float, default=None, help="default: the gallery's calibrated threshold")


def open_gallery_from(args: argparse.Namespace, **create_options):
    """The gallery named by the options of `add_gallery_options`."""
    from gallery.session import open_gallery

    return open_gallery(args.gallery, args.model, args.aligned, args.device, **create_options)


def print_json(value, default=None) -> None:
    print(json.dumps(value, indent=2, default=default))
