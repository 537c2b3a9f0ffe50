"""`faceid prepare SRC OUT`: decode an aligned identity-folder tree once into a memory-mapped crop cache."""

import argparse
from pathlib import Path

from faceid.commands.options import add_workers_option
from faceid.commands.output import report

SUMMARY = "decode aligned crops once into a memory-mapped cache for training (data.cache: OUT)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", type=Path, help="identity-folder tree of aligned crops (e.g. from `faceid align`)")
    parser.add_argument("out", type=Path, help="cache directory (crops-*.u8 + index.json), replaced atomically")
    add_workers_option(parser, 1, help="decoding processes")


def run(args: argparse.Namespace) -> int:
    from faceid.data.crop_cache import prepare_cache

    summary = prepare_cache(args.source, args.out, workers=args.workers)
    for item in summary["skipped"]:
        print(f"skipped {item['reason']}")
    report(args, {**summary, "skipped": len(summary["skipped"])})
    return 0
