"""`faceid models ACTION`: list, inspect, pull, import or remove pretrained models (faceid.zoo)."""

import argparse
import sys
from pathlib import Path

SUMMARY = "list, inspect, download or import pretrained models (the model zoo)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("list", help="known models with their dimension, licence and cache status")
    actions.add_parser("info", help="everything about one model").add_argument("name")
    pull = actions.add_parser("pull", help="download, verify and convert a model into the cache")
    pull.add_argument("name")
    pull.add_argument("--timeout", type=float, default=None,
                      help="seconds without data before a download fails (default 30, or $FACEID_DOWNLOAD_TIMEOUT)")
    pull.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    imported = actions.add_parser("import", help="install a model file obtained another way (checked, converted)")
    imported.add_argument("file", type=Path)
    imported.add_argument("--as", dest="name", required=True, metavar="NAME", help="the catalog name it is")
    for sub in (pull, imported):
        sub.add_argument("--accept-licence", action="store_true",
                         help="confirm your use complies with a non-commercial licence (required for those)")
    actions.add_parser("remove", help="delete a model from the cache").add_argument("name")


def run(args: argparse.Namespace) -> int:
    from faceid.zoo import ZooError

    try:
        _ACTIONS[args.action](args)
    except ZooError as error:
        print(f"faceid models {args.action}: error: {error}", file=sys.stderr)
        return 1
    return 0


def _list(args) -> None:
    from faceid.zoo import known_models
    from faceid.zoo.store import faceid_home, status

    rows = [("NAME", "DIM", "INPUT", "ALIGNMENT", "LICENCE", "PUBLISHED", "STATUS")]
    rows += [(e.name, str(e.embedding_dim), f"{e.input_size} {e.channel_order}", e.alignment, e.licence, e.figure,
              status(e.name)) for e in known_models()]
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    print(f"\ncache: {faceid_home() / 'models'} (FACEID_HOME)")


def _info(args) -> None:
    from faceid.zoo import model_info
    from faceid.zoo.catalog import KINDS
    from faceid.zoo.store import model_path, status

    entry = model_info(args.name)
    path = model_path(entry.name)
    fields = [
        ("name", entry.name), ("model", entry.title),
        ("licence", entry.licence + ("" if entry.commercial_use else "  (pull/import need --accept-licence)")),
        ("embedding dim", str(entry.embedding_dim)), ("input", entry.input_description()),
        ("alignment", entry.alignment), ("published", entry.figure), ("source", entry.source),
        *[("url", url) for url in entry.urls],
        ("sha256", entry.sha256 or ("not needed: nothing is downloaded" if not entry.urls
                                    else "none published: the download cannot be verified")),
    ]
    if entry.member:
        fields += [("archive member", entry.member), ("member sha256", entry.member_sha256 or "none published")]
    fields += [("upstream file", entry.download_name), ("obtained as", KINDS[entry.kind]), ("notes", entry.notes),
               ("status", status(entry.name)), ("file", str(path))]
    if entry.suffix == ".onnx":
        fields.append(("preprocessing", str(path.with_suffix(".yaml"))))
    for key, value in fields:
        if value:
            print(f"{key + ':':<16}{value}")


def _pull(args) -> None:
    from faceid.zoo import cached_path, model_info, pull

    entry = model_info(args.name)
    accepted = " (accepted with --accept-licence)" if args.accept_licence and not entry.commercial_use else ""
    print(f"{entry.name}: licence: {entry.licence}{accepted}")
    if cached_path(entry.name) is None and entry.notes:
        print(f"{entry.name}: {entry.notes}")
    print(pull(entry.name, accept_licence=args.accept_licence, progress=args.progress, timeout=args.timeout))


def _import(args) -> None:
    from faceid.zoo import import_model, model_info

    print(f"{args.name}: licence: {model_info(args.name).licence}")
    print(import_model(args.file, args.name, accept_licence=args.accept_licence))


def _remove(args) -> None:
    from faceid.zoo import remove_model

    print(f"removed {args.name} ({remove_model(args.name)})")


_ACTIONS = {"list": _list, "info": _info, "pull": _pull, "import": _import, "remove": _remove}
