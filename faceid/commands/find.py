"""`faceid find PROBE --in DIR`: the photos of a folder ranked by similarity to the probe's face, no gallery needed.
Each photo's embedding is cached by its content, so a second search of the same folder embeds nothing."""

import argparse
from pathlib import Path

from faceid.commands.options import MODEL_HELP, add_device_option, positive_count, threshold_value
from faceid.commands.output import report, table
from faceid.zoo.catalog import DEFAULT_MODEL

SUMMARY = "rank a folder's photos by similarity to a probe photo (embeddings cached by content)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("probe", type=Path, help="the photo of the person to look for")
    parser.add_argument("--in", dest="folder", type=Path, required=True, metavar="DIR",
                        help="the folder to search (every image beneath it)")
    parser.add_argument("--model", default=DEFAULT_MODEL, help=MODEL_HELP)
    parser.add_argument("-k", "--top", type=positive_count, default=10, help="how many photos to list")
    parser.add_argument("--threshold", type=threshold_value, default=None,
                        help="a cosine in [-1, 1] marking matches as the same person (default: the model's own)")
    parser.add_argument("--cache", type=Path, default=None,
                        help="the embedding cache file (default $FACEID_HOME/cache/faces.sqlite)")
    add_device_option(parser)


def run(args: argparse.Namespace) -> int:
    from faceid.api import find

    result = find(args.probe, args.folder, args.model, args.top, args.threshold, args.device, args.cache)
    report(args, result, _text)
    return 0


def _text(result: dict) -> str:
    from faceid.gallery.threshold_policy import describe_source

    rows = [{"rank": rank, "score": f"{row['score']:.3f}", "same person": row["same"], "photo": row["path"]}
            for rank, row in enumerate(result["matches"], 1)]
    lines = [f"{result['probe']}: {result['searched']} photo(s) searched ({result['embedded']} embedded now, "
             f"{result['from_cache']} from the cache); threshold {result['threshold']:.3f} "
             f"({describe_source(result['threshold_source'])})", table(rows) if rows else "no match"]
    lines += [f"skipped {path}: {reason}" for path, reason in result["skipped"].items()]
    return "\n".join(lines)
