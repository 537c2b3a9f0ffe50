"""`faceid serve`: serve a gallery over HTTP."""

import argparse
import os

from faceid.commands.options import add_gallery_options, open_gallery_from

SUMMARY = "serve a gallery over HTTP"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_gallery_options(parser)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--api-key", default=None,
                        help="require this X-API-Key header (default: $FACEID_API_KEY if set)")
    parser.add_argument("--max-request-mb", type=float, default=20.0, help="largest accepted request body")


def run(args: argparse.Namespace) -> int:
    from gallery.service import serve

    serve(open_gallery_from(args), args.host, args.port, args.api_key or os.environ.get("FACEID_API_KEY"),
          int(args.max_request_mb * 1024 * 1024))
    return 0
