"""Options and output shared by several `faceid` subcommands, each written once."""

import argparse
from pathlib import Path

from faceid.face_selection import DEFAULT_SELECT, SELECT_HELP
from faceid.gallery.threshold_policy import DEFAULT_POLICY, OVERRIDE_POLICIES
from faceid.zoo.catalog import DEFAULT_MODEL

DEVICES = ("auto", "cpu", "cuda")
MODEL_HELP = ("a model-zoo name (see `faceid models list`), a faceid checkpoint (.pt) or an ONNX model (.onnx)")


def add_device_option(parser: argparse.ArgumentParser, default: str = "auto") -> None:
    parser.add_argument("--device", default=default, choices=DEVICES,
                        help="where models run: auto picks CUDA when available")


def add_config_options(parser: argparse.ArgumentParser, config_help: str, default: Path | None = None,
                       example: str = "training.lr=0.05") -> None:
    """The --config YAML file and the repeatable --set KEY=VALUE overrides (collected in args.overrides)."""
    parser.add_argument("--config", type=Path, default=default, help=config_help)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help=f"override a configuration key, e.g. --set {example}")


def add_gallery_options(parser: argparse.ArgumentParser, creates: bool = False) -> None:
    """What every gallery-facing command takes to open a gallery (see gallery.session.open_gallery); `creates`:
    the command makes the gallery when it does not exist yet."""
    parser.add_argument("gallery", type=Path, help="gallery directory")
    if creates:
        parser.add_argument("--model", default=None, help=f"embedding model of a new gallery: {MODEL_HELP} "
                            f"(default {DEFAULT_MODEL}); an existing gallery keeps its own")
        parser.add_argument("--aligned", action="store_true", default=None,
                            help="a new gallery's images are aligned crops: skip detection (remembered)")
    else:
        parser.add_argument("--model", default=None, help="the gallery's own model is used; naming another one is "
                            "refused before anything loads (move the gallery with `faceid gallery reembed`)")
        parser.add_argument("--aligned", action="store_true", default=None,
                            help="the images are aligned crops: skip detection (default: as the gallery says)")
    add_device_option(parser)


def add_select_option(parser: argparse.ArgumentParser, every: bool = False, gallery: bool = False) -> None:
    """--select, the face a photo stands for (faceid.face_selection); `every`: also `all`, every face; `gallery`:
    a gallery command, where naming a selection also lets an enrolment take a photo whose face is ambiguous."""
    choices = ["subject", "largest", "best", "center"] + (["all"] if every else [])
    if gallery:
        parser.add_argument("--select", choices=choices, default=None,
                            help=f"{SELECT_HELP} (default: {DEFAULT_SELECT}; naming one also lets enroll take a "
                                 "photo where two faces could be the subject)")
    else:
        parser.add_argument("--select", choices=choices, default=DEFAULT_SELECT,
                            help=SELECT_HELP + (", or all: every face" if every else ""))


def add_photo_gallery_options(parser: argparse.ArgumentParser, creates: bool = False) -> None:
    """`add_gallery_options` and --select, for a gallery command that takes photos."""
    add_gallery_options(parser, creates)
    add_select_option(parser, gallery=True)


def add_threshold_option(parser: argparse.ArgumentParser) -> None:
    """--threshold (a finite cosine in [-1, 1]) and --threshold-override (see gallery.threshold_policy)."""
    parser.add_argument("--threshold", type=threshold_value, default=None,
                        help="decision threshold, a cosine in [-1, 1] (default: the gallery's: its model's default, "
                             "calibrated, or set by hand)")
    add_threshold_override_option(parser)


def add_threshold_override_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threshold-override", choices=OVERRIDE_POLICIES, default=DEFAULT_POLICY,
                        help="may a --threshold (or a request's) move the calibrated one: none, stricter (only "
                             f"raise it) or any (default {DEFAULT_POLICY})")


def add_workers_option(parser: argparse.ArgumentParser, default: int | None, help: str) -> None:
    parser.add_argument("--workers", type=positive_count, default=default, help=help)


def positive_count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def threshold_value(text: str) -> float:
    from faceid.gallery.threshold_policy import check_threshold

    try:
        return check_threshold(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def open_gallery_from(args: argparse.Namespace, **create_options):
    """The gallery named by the options of `add_gallery_options`."""
    from faceid.gallery.session import open_gallery

    model = args.model
    if create_options.get("create") and model is None and not (args.gallery / "gallery.db").exists():
        model = DEFAULT_MODEL
    gallery = open_gallery(args.gallery, model, args.aligned, args.device, select=getattr(args, "select", None),
                           allow_low_quality=getattr(args, "allow_low_quality", False), **create_options)
    gallery.threshold_override = getattr(args, "threshold_override", gallery.threshold_override)
    return gallery
