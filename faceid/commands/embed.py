"""`faceid embed`: embed image files with a model."""

import argparse
from pathlib import Path

from faceid.commands.options import MODEL_HELP, add_device_option, add_select_option, positive_count
from faceid.commands.output import report

SUMMARY = "embed images with a model"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", type=Path, help="image files or folders")
    parser.add_argument("--model", required=True, help=MODEL_HELP)
    parser.add_argument("--out", type=Path, required=True,
                        help="embeddings.npy (rows in the order of <out>.paths.txt) or .npz (arrays paths, embeddings)")
    parser.add_argument("--aligned", action="store_true", help="inputs are aligned crops already: skip detection")
    add_select_option(parser)
    parser.add_argument("--preprocessing", type=Path, default=None, help="YAML for a third-party ONNX model")
    add_device_option(parser)
    parser.add_argument("--batch-size", type=positive_count, default=32, help="crops per embedder call")


def run(args: argparse.Namespace) -> int:
    from faceid.export.embed_files import embed_files

    summary = embed_files(args.images, args.model, args.out, aligned=args.aligned, select=args.select,
                          preprocessing=args.preprocessing, device=args.device, batch_size=args.batch_size)
    report(args, summary)
    return 0 if summary["embedded"] else 1
