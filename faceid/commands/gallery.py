"""`faceid gallery ACTION`: list, inspect, calibrate or edit a gallery."""

import argparse
from pathlib import Path

from faceid.commands.options import add_gallery_options, add_select_option, open_gallery_from
from faceid.commands.output import report
from faceid.gallery.threshold_policy import DEFAULT_TARGET_FAR

SUMMARY = "list, inspect, calibrate or edit a gallery"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    def action(name: str, text: str, photos: bool = False) -> argparse.ArgumentParser:
        sub = actions.add_parser(name, help=text)
        add_gallery_options(sub)
        if photos:
            add_select_option(sub, gallery=True)
        return sub

    action("list", "enrolled identities")
    action("stats", "counts, sizes, and the threshold in force with where it came from")
    action("audit", "the append-only audit log")
    action("remove", "remove an identity").add_argument("identity", help="the identity to remove")
    rename = action("rename", "rename an identity")
    rename.add_argument("identity", help="its current name")
    rename.add_argument("new_name", help="its new name")
    calibrate = action("calibrate", "set the threshold from genuine/impostor pairs at a target FAR", photos=True)
    calibrate.add_argument("--data", type=Path, required=True,
                           help="identity-folder tree of calibration people (not the enrolled ones): every pair of "
                                "its images is used; a target FAR its pairs cannot measure is refused before any "
                                "embedding, with the smallest one they can")
    calibrate.add_argument("--pairs", type=Path, default=None,
                           help="LFW pairs.txt or CSV: use only these pairs (default: every pair of --data)")
    calibrate.add_argument("--target-far", type=float, default=DEFAULT_TARGET_FAR,
                           help="the false accept rate to hold: the threshold is the lowest whose FAR on the "
                                "calibration impostor pairs is at most this; needs at least 1/FAR impostor pairs")
    action("set-threshold", "set the decision threshold by hand").add_argument(
        "threshold", type=float, help="a cosine in [-1, 1]: higher accepts fewer strangers and fewer genuine probes")
    action("export", "write the gallery to one .npz").add_argument("file", type=Path, help="the .npz to write")
    action("import", "merge an exported .npz into the gallery").add_argument("file", type=Path,
                                                                            help="the .npz to merge")
    action("reembed", "migrate every template to the --model embedder (needs each template's image)")
    action("keep-images", "keep a copy of every enrolled image inside the gallery (so it can be re-embedded)"
           ).add_argument("setting", choices=["on", "off"], help="on: keep copies of images enrolled from now")
    action("check", "verify the index and its snapshot against gallery.db vector by vector (exit 1 if not)")
    action("tune", "tune an approximate index (nprobe...) again with real probe faces to recall@1 0.99",
           photos=True).add_argument(
        "--probes", type=Path, required=True,
        help="a folder of probe images (other photos of enrolled people; embedded with the gallery's model) "
             "or the .npz/.npy of `faceid embed`")


def run(args: argparse.Namespace) -> int:
    if args.action == "check":
        return _check(args)
    if args.action == "reembed":  # opened without its old model, which may be gone
        from faceid.gallery.session import reembed_to

        if not args.model:
            raise ValueError("name the model to migrate to with --model")
        report(args, reembed_to(args.gallery, args.model, args.device))
        return 0
    with open_gallery_from(args) as gallery:
        result = _ACTIONS[args.action](gallery, args)
    report(args, result)
    return 0


def _check(args: argparse.Namespace) -> int:
    """No embedder is needed to compare stored vectors: the gallery is opened on its own."""
    from faceid.gallery.gallery import Gallery

    with Gallery(args.gallery) as gallery:
        result = gallery.check()
    report(args, result)
    return 0 if result["consistent"] else 1


def _remove(gallery, args) -> dict:
    return {"removed": args.identity, "templates": gallery.remove(args.identity)}


def _rename(gallery, args) -> dict:
    gallery.rename(args.identity, args.new_name)
    return {"renamed": args.identity, "to": args.new_name}


def _calibrate(gallery, args) -> dict:
    from faceid.gallery.calibration import calibrate_from_folder

    return calibrate_from_folder(gallery, args.data, args.pairs, args.target_far)


def _set_threshold(gallery, args) -> dict:
    from faceid.gallery.threshold_policy import check_threshold, threshold_in_force

    gallery.set_threshold(check_threshold(args.threshold), {"source": "set by hand"})
    return threshold_in_force(gallery.setting("threshold"))


def _tune(gallery, args) -> dict:
    from faceid.gallery.index.probe_tuning import tune_with_probes

    return tune_with_probes(gallery, args.probes)


def _export(gallery, args) -> dict:
    from faceid.gallery.transfer import export_gallery

    return {"written": str(export_gallery(gallery, args.file))}


def _import(gallery, args) -> dict:
    from faceid.gallery.transfer import import_gallery

    return import_gallery(gallery, args.file)


def _keep_images(gallery, args) -> dict:
    from faceid.gallery.samples.kept_images import set_keep_images

    return set_keep_images(gallery, args.setting == "on")


_ACTIONS = {
    "list": lambda gallery, args: gallery.list(),
    "stats": lambda gallery, args: gallery.stats(),
    "audit": lambda gallery, args: gallery.audit_log(),
    "remove": _remove,
    "rename": _rename,
    "calibrate": _calibrate,
    "set-threshold": _set_threshold,
    "export": _export,
    "import": _import,
    "keep-images": _keep_images,
    "tune": _tune,
}
