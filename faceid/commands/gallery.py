"""`faceid gallery ACTION`: list, inspect, calibrate or edit a gallery."""

import argparse
from pathlib import Path

from faceid.commands.options import add_gallery_options, open_gallery_from, print_json

SUMMARY = "list, inspect, calibrate or edit a gallery"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    def action(name: str, text: str) -> argparse.ArgumentParser:
        sub = actions.add_parser(name, help=text)
        add_gallery_options(sub)
        return sub

    action("list", "enrolled identities")
    action("stats", "counts, sizes, threshold")
    action("audit", "the append-only audit log")
    action("remove", "remove an identity").add_argument("identity")
    rename = action("rename", "rename an identity")
    rename.add_argument("identity")
    rename.add_argument("new_name")
    calibrate = action("calibrate", "set the threshold from genuine/impostor pairs at a target FAR")
    calibrate.add_argument("--data", type=Path, required=True, help="identity-folder tree of calibration identities")
    calibrate.add_argument("--pairs", type=Path, default=None, help="LFW pairs.txt or CSV (default: built from --data)")
    calibrate.add_argument("--target-far", type=float, default=1e-3)
    action("export", "write the gallery to one .npz").add_argument("file", type=Path)
    action("import", "merge an exported .npz into the gallery").add_argument("file", type=Path)
    action("reembed", "migrate every template to the --model embedder (needs each template's image)")
    action("keep-images", "keep a copy of every enrolled image inside the gallery (so it can be re-embedded)"
           ).add_argument("setting", choices=["on", "off"])
    action("check", "verify the index and its snapshot against gallery.db vector by vector (exit 1 if not)")
    action("tune", "tune an approximate index (nprobe...) again with real probe faces to recall@1 0.99").add_argument(
        "--probes", type=Path, required=True,
        help="a folder of probe images (other photos of enrolled people; embedded with the gallery's model) "
             "or the .npz/.npy of `faceid embed`")


def run(args: argparse.Namespace) -> int:
    if args.action == "check":
        return _check(args.gallery)
    if args.action == "reembed":  # opened without its old model, which may be gone
        from faceid.gallery.session import reembed_to

        if not args.model:
            raise ValueError("name the model to migrate to with --model")
        print_json(reembed_to(args.gallery, args.model, args.device))
        return 0
    with open_gallery_from(args) as gallery:
        result = _ACTIONS[args.action](gallery, args)
    print_json(result, default=str)
    return 0


def _check(path: Path) -> int:
    """No embedder is needed to compare stored vectors: the gallery is opened on its own."""
    from faceid.gallery.gallery import Gallery

    with Gallery(path) as gallery:
        report = gallery.check()
    print_json(report, default=str)
    return 0 if report["consistent"] else 1


def _remove(gallery, args) -> dict:
    return {"removed": args.identity, "templates": gallery.remove(args.identity)}


def _rename(gallery, args) -> dict:
    gallery.rename(args.identity, args.new_name)
    return {"renamed": args.identity, "to": args.new_name}


def _calibrate(gallery, args) -> dict:
    from faceid.gallery.enrollment import calibrate_from_folder

    return calibrate_from_folder(gallery, args.data, args.pairs, args.target_far)


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
    "export": _export,
    "import": _import,
    "keep-images": _keep_images,
    "tune": _tune,
}
